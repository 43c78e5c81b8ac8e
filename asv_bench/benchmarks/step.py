"""The dense update step alone: numadam.Optimizer.step."""

import numpy as np

import numadam

from .common import DTYPES, METHODS, SIZES, arrays, same_bytes


class DenseStep:
    """One update step of every method, by size and dtype."""

    params = (METHODS, SIZES, DTYPES)
    param_names = ["method", "n", "dtype"]
    timeout = 300

    def setup(self, method, n, dtype):
        self.x, self.g = arrays(n, dtype)
        self.opt = numadam.Optimizer(method, self.x, learning_rate=1e-9)
        self.opt.step(self.g)

    def time_step(self, method, n, dtype):
        self.opt.step(self.g)


class SameBytes:
    """The memory-traffic floor of an adam step (reads 4, writes 3 arrays)."""

    params = (SIZES, DTYPES)
    param_names = ["n", "dtype"]

    def setup(self, n, dtype):
        self.x, self.g = arrays(n, dtype)
        self.S = np.zeros((2, n), dtype)
        same_bytes(self.x, self.g, self.S)

    def time_same_bytes(self, n, dtype):
        same_bytes(self.x, self.g, self.S)


class ParallelKernels:
    """The serial and the parallel kernel around the size where numadam
    switches (see asv_bench/parallel_threshold.py)."""

    params = ([False, True], [2_048, 8_192, 32_768])
    param_names = ["parallel", "n"]

    def setup(self, parallel, n):
        self.x, self.g = arrays(n, "float64")
        self.opt = numadam.Optimizer("adam", self.x, parallel=parallel)
        self.opt.step(self.g)

    def time_adam_step(self, parallel, n):
        self.opt.step(self.g)


class PeakMemory:
    """Peak memory of an adam run on 1e7 float64 parameters: x, its
    gradient and the two moment arrays (320 MB), and nothing more."""

    def setup(self):
        self.x, self.g = arrays(10_000_000, "float64")

    def peakmem_adam_1e7(self):
        opt = numadam.Optimizer("adam", self.x)
        for _ in range(3):
            opt.step(self.g)

    def peakmem_amsgrad_1e7(self):
        opt = numadam.Optimizer("amsgrad", self.x)
        for _ in range(3):
            opt.step(self.g)
