"""numadam.Optimizer over the ten arrays of an MLP: one compiled call per
step (a parameter group), against one flat array of the same total size
and against a Python loop over one Optimizer per array."""

import time

import numpy as np

import numadam

from .common import mlp_arrays

#: 43,021 and 565,261 parameters in float64: below and above the size
#: where the adaptive methods' steps take the parallel kernel by default
WIDTHS = [128, 512]


class ManyArrays:
    """One step over the MLP's arrays: ``group`` (one Optimizer of the ten
    arrays), ``flat`` (one array of the same size), ``separate`` (ten
    Optimizers stepped in a Python loop)."""

    params = (["adam", "sgd"], WIDTHS, ["group", "flat", "separate"])
    param_names = ["method", "width", "layout"]

    def setup(self, method, width, layout):
        params, grads, (x, g) = mlp_arrays(width)
        if layout == "group":
            opt = numadam.Optimizer(method, params, learning_rate=1e-9)
            self.step = lambda: opt.step(grads)
        elif layout == "flat":
            opt = numadam.Optimizer(method, x, learning_rate=1e-9)
            self.step = lambda: opt.step(g)
        else:
            opts = [numadam.Optimizer(method, p, learning_rate=1e-9) for p in params]

            def step():
                for o, gi in zip(opts, grads):
                    o.step(gi)
            self.step = step
        self.step()

    def time_step(self, method, width, layout):
        self.step()


class GroupOverFlat:
    """The ratio of a step over the MLP's ten arrays to a step over one flat
    array of the same total size, timed side by side in one process
    (interleaved rounds, the median of their ratios). The target is 1.2."""

    params = (["adam", "sgd"], WIDTHS)
    param_names = ["method", "width"]
    timeout = 120

    def setup(self, method, width):
        params, grads, (x, g) = mlp_arrays(width)
        group = numadam.Optimizer(method, params, learning_rate=1e-9)
        flat = numadam.Optimizer(method, x, learning_rate=1e-9)
        self.steps = (lambda: group.step(grads), lambda: flat.step(g))
        self.repeat = 20 if width > 256 else 200
        for step in self.steps:
            step()

    def track_ratio(self, method, width):
        ratios = []
        for _ in range(15):
            times = []
            for step in self.steps:
                t = time.perf_counter()
                for _ in range(self.repeat):
                    step()
                times.append(time.perf_counter() - t)
            ratios.append(times[0] / times[1])
        return float(np.median(ratios))

    track_ratio.unit = "ratio"
