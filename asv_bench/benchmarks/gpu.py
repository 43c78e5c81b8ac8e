"""The dense adam step on an NVIDIA GPU, with torch fused and a device copy
for reference. Every benchmark here skips where there is no GPU (or only the
CUDA simulator) or numba-cuda is missing."""

import numpy as np

import numadam

SIZES = [1_000_000, 10_000_000, 100_000_000]


def _cuda():
    """numba.cuda when a real GPU is there; else skip the benchmark."""
    try:
        from numba import cuda
    except ImportError:
        raise NotImplementedError("numba-cuda is not installed")
    if cuda.jit.__module__.startswith("numba.cuda.simulator") or not cuda.is_available():
        raise NotImplementedError("no CUDA GPU")
    return cuda


class GPUAdamStep:
    """``Optimizer("adam", x).step(g)`` on float32 device arrays (one kernel
    launch), synchronised."""

    params = [SIZES]
    param_names = ["n"]
    timeout = 300

    def setup(self, n):
        cuda = _cuda()
        rng = np.random.default_rng(0)
        self.x = cuda.to_device(rng.standard_normal(n, dtype=np.float32))
        self.g = cuda.to_device(rng.standard_normal(n, dtype=np.float32))
        self.opt = numadam.Optimizer("adam", self.x, learning_rate=1e-6)
        self.sync = cuda.synchronize
        self.opt.step(self.g)
        self.sync()

    def time_step(self, n):
        self.opt.step(self.g)
        self.sync()

    def track_effective_bandwidth(self, n):
        """GB/s at 28 bytes per element, over 20 steps."""
        import time
        self.sync()
        t = time.perf_counter()
        for _ in range(20):
            self.opt.step(self.g)
        self.sync()
        return 28 * n * 20 / (time.perf_counter() - t) / 1e9

    track_effective_bandwidth.unit = "GB/s"


class GPUDeviceCopy:
    """A device-to-device copy of N float32 values: the bandwidth reference."""

    params = [SIZES]
    param_names = ["n"]

    def setup(self, n):
        cuda = _cuda()
        self.src = cuda.device_array(n, np.float32)
        self.dst = cuda.device_array(n, np.float32)
        self.sync = cuda.synchronize

    def time_copy(self, n):
        self.dst.copy_to_device(self.src)
        self.sync()


class GPUTorchFusedAdam:
    """``torch.optim.Adam(fused=True)`` on a CUDA tensor of the same size."""

    params = [SIZES]
    param_names = ["n"]

    def setup(self, n):
        _cuda()
        try:
            import torch
        except ImportError:
            raise NotImplementedError("torch is not installed")
        if not torch.cuda.is_available():
            raise NotImplementedError("torch has no CUDA")
        self.p = torch.zeros(n, dtype=torch.float32, device="cuda", requires_grad=True)
        self.p.grad = torch.ones_like(self.p) * 1e-3
        self.opt = torch.optim.Adam([self.p], lr=1e-6, fused=True)
        self.sync = torch.cuda.synchronize
        self.opt.step()
        self.sync()

    def time_step(self, n):
        self.opt.step()
        self.sync()
