"""Engines whose arrays live on a GPU: x, the gradient and the state.

:class:`DeviceEngine` holds the arrays of :func:`numadam._engine.plan` with
``W`` in device memory and steps with the CUDA kernels of
:mod:`numadam._kernels.cuda`, built from the same rules as the CPU kernels.
The step count and the per-step scalars live on the host and go to the
kernel as arguments. With ``clip_norm``, the first pass of a step (the sum
of squares of the gradient and the clipping factor) runs on the device and
its factor stays there, in a one-element array the step kernel reads: no
value crosses to the host. :func:`load_cuda` imports CUDA only when a device
engine is asked for, so importing numadam never does.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from ._arrays import device_copy, is_device_array
from ._engine import Rates, plan
from ._kernels import cpu
from ._state import OptimizerState

__all__ = ["DeviceEngine", "DeviceSparse", "load_cuda", "as_numba"]


def load_cuda(why):
    """The CUDA kernels module, or a clear error when numba-cuda or a GPU is
    missing. ``why`` names what asked for CUDA."""
    if importlib.util.find_spec("numba_cuda") is None:
        raise ImportError(f"{why} needs numba-cuda, which is not installed: "
                          "pip install 'numadam[cuda]'")
    from numba import cuda

    if not cuda.is_available():
        raise RuntimeError(
            f"{why} needs an NVIDIA GPU, and numba.cuda finds none "
            "(numba.cuda.is_available() is False: no GPU or no driver). Set "
            "NUMBA_ENABLE_CUDASIM=1 before importing numba to run on the CUDA "
            "simulator instead (slow; meant for tests).")
    from ._kernels import cuda as ck

    return ck


def as_numba(a, what, ck=None):
    """A Numba device array viewing the device array ``a`` (no copy)."""
    if hasattr(a, "copy_to_host") and hasattr(a, "is_c_contiguous"):
        return a
    from numba import cuda

    if ck is not None and ck.SIMULATOR:
        raise TypeError(f"{what} must be a Numba device array on the CUDA "
                        f"simulator, got {type(a).__name__}")
    return cuda.as_cuda_array(a)


def _check_vector(a, n, dtype, what):
    shape = tuple(a.shape)
    if shape != (n,) or a.dtype != dtype:
        raise ValueError(f"{what} must be a {dtype} device array of shape ({n},), "
                         f"got {a.dtype} of shape {shape}")
    if not a.is_c_contiguous():
        raise ValueError(f"{what} must be C-contiguous")


class DeviceEngine(Rates):
    """A method's state on the device, bound to the device array ``x``."""

    def __init__(self, spec, x, values, lo, hi, state, ck, guarded, track=False,
                 backup=False):
        from numba import cuda

        n = x.shape[0]
        dtype = np.dtype(x.dtype)
        bounded = lo is not None
        p = plan(spec, values, n, dtype, state, bounded, backup)
        rule, F, names, off = p.rule, p.F, p.names, p.off
        H, A = len(rule.hyper), len(rule.aux)
        W = cuda.device_array((off + len(names), n), dtype)
        P = p.P
        aux = p.aux
        first = int(backup)
        if bounded:
            W[first].copy_to_device(np.ascontiguousarray(lo, dtype))
            W[first + 1].copy_to_device(np.ascontiguousarray(hi, dtype))
        if isinstance(p.init, tuple):
            fill = ck.fill_kernel()[ck.blocks(n), ck.THREADS]
            for k, v in enumerate(p.init):
                fill(W[off + k], dtype.type(v))
        else:
            for k in range(len(names)):
                W[off + k].copy_to_device(p.init[k])
        self.spec = spec
        self.method = spec.name
        self.rule = rule
        self.rule_name = rule.name
        self.F = F
        self.names = names
        self.x = x
        self.n = n
        self.dtype = dtype
        self.W = W
        self.S = W[off:]
        self.P = P
        self.aux = aux
        self.bounded = bounded
        self.ck = ck
        self.learning_rate = values["learning_rate"]
        self.schedule = values.get("learning_rate_schedule")
        self.scalars = cpu.scalars_kernel(rule.name, F, H, A)
        self.proto = np.empty(0, dtype)
        self.B = ck.control_array()
        self.guarded = guarded
        self.track = track
        #: with ``backup``, ``W[0]`` holds the iterate before the last step
        #: (and sparse steps keep the values they touched), for a run's
        #: non-finite rollback
        self.backup = backup
        self.xprev = W[0] if backup else None
        self.bounds_row = first
        kernel = ck.step_kernel(rule.name, F, bounded, guarded, track, backup)
        self.launch = kernel[ck.blocks(n, reduce=track), ck.THREADS]
        self.sparse = None
        # the first pass: the gradient's factor Sc (x's dtype) and the sum of
        # squares R[0], on the device (see numadam._kernels.cuda)
        self.clip_norm = values.get("clip_norm")
        self.grouped = False         # an Optimizer's arrays: it sets Sc itself
        self.rule_sums, _ = cpu.reduction_plan(rule)
        #: -1.0 to ascend (maximize): the sign of the gradient's factor Sc
        self.sign = -1.0 if values.get("maximize") else 1.0
        self.Sc = cuda.to_device(np.full(1, self.sign, dtype))
        self.R = cuda.to_device(np.zeros(1))
        if self.rule_sums:
            self.reduced = cpu.reduced_scalars_kernel(rule.name, F, H, A)

    def use_sparse(self, mode):
        self.sparse = DeviceSparse(self, mode)

    def gradient(self, g, wrong_kind, what):
        """``g`` ready for :meth:`step`: a sparse gradient checked and
        coalesced, a dense one viewed as a Numba device array and checked for
        shape, dtype and layout (``what`` names it in the message);
        ``wrong_kind`` is the message for a ``g`` that is no device array."""
        if self.sparse is not None:
            return self.sparse.parts(g)
        if not is_device_array(g):
            raise TypeError(f"{wrong_kind}, got {type(g).__name__}")
        gd = as_numba(g, what, self.ck)
        if gd.shape != (self.n,) or gd.dtype != self.dtype or not gd.is_c_contiguous():
            _check_vector(gd, self.n, self.dtype, what)
        return gd

    def step(self, g, lr, k=0):
        """One update with the device gradient ``g`` (dense, or the ``(idx,
        val)`` of a sparse one) at learning rate ``lr``."""
        c, cf = self.scalars(self.P, lr, self.proto)
        if self.clip_norm is not None or self.rule_sums:
            c, cf = self.first_pass(flat_values(g), c, cf)
        if self.sparse is not None:
            self.sparse.step(g, c, cf, k)
        else:
            self.launch(self.x, g, self.W, c, self.B, k, self.Sc)

    def add_sum_squares(self, flat, R, j=0):
        """Launch the sum of the squares of the 1-D device array ``flat`` into
        ``R[j]``."""
        ck = self.ck
        ck.sum_squares_kernel()[ck.blocks(flat.size, reduce=True), ck.THREADS](flat, R, j)

    def set_factor(self, R, j, reset):
        """Launch the clipping factor of the sum of squares ``R[j]`` into
        ``Sc``."""
        self.ck.scale_kernel()[1, 1](R, j, self.Sc, self.clip_norm, reset, self.sign)

    def first_pass(self, flat, c, cf):
        """The step's first pass over its gradient values ``flat``: the
        clipping factor into ``Sc`` (unless the engine is one of an
        Optimizer's arrays, whose factor the Optimizer sets) and the rule's
        reductions. Returns the step's scalars ``(c, cf)``, completed by the
        rule's ``reduced_coefficients`` when it has any: those are the host's,
        so they cost one copy of ``R`` (and of ``Sc``) to the host."""
        clipping = self.clip_norm is not None and not self.grouped
        if not (clipping or self.rule_sums):
            return c, cf
        self.add_sum_squares(flat, self.R)
        if clipping:
            self.set_factor(self.R, 0, reset=not self.rule_sums)
        if not self.rule_sums:
            return c, cf
        own = float(self.R.copy_to_host()[0])
        self.R.copy_to_device(np.zeros(1))
        s = float(self.Sc.copy_to_host()[0])
        R = np.zeros(len(self.rule.reductions))
        R[self.rule.reductions.index("gsq")] = own * (s * s)
        return self.reduced(self.P, R, self.proto)

    def set_maximize(self, maximize):
        """Ascend (True) or descend from the next step on."""
        self.sign = -1.0 if maximize else 1.0
        if self.clip_norm is None or self.grouped:
            self.Sc.copy_to_device(np.full(1, self.sign, self.dtype))

    def state(self, copy):
        S = device_copy(self.S) if copy else self.S
        return OptimizerState(self.method, self.rule_name, self.F, self.names, S,
                              self.aux.copy())


def flat_values(g):
    """The values of a device gradient as one 1-D device array: a dense
    gradient itself, the ``(k, r)`` values of a sparse one ``(idx, val)``."""
    if isinstance(g, tuple):
        val = g[1]
        return val.reshape(val.size) if val.ndim > 1 else val
    return g


class DeviceSparse:
    """Lazy and catch-up steps with device sparse gradients ``(idx, val)``.

    The indices are read on the host (one small copy per step) to check their
    range, before any state changes, and to sum repeated ones; indices that
    come sorted and unique, as ``torch.Tensor.coalesce`` gives them, are used
    as they are."""

    def __init__(self, engine, mode):
        e = engine
        ck = e.ck
        self.engine = e
        self.mode = mode
        self.ck = ck
        make = ck.lazy_kernel if mode == "lazy" else ck.catchup_kernel
        self.kernel = make(e.rule_name, e.F, e.bounded, e.guarded, e.track, e.backup)
        self.r = None
        self.last = None
        #: with the engine's ``backup``: ``{k: (idx, xb)}``, the touched
        #: values of x before step ``k``
        self.backups = {}

    def parts(self, g):
        """``(idx, val)`` on the device, checked and coalesced."""
        from numba import cuda

        from ._sparse import SparseGradient

        e = self.engine
        n = e.n
        if isinstance(g, SparseGradient):
            g = (g.indices, g.values)
        if not (isinstance(g, tuple) and len(g) == 2):
            raise TypeError("a sparse gradient on the device must be a pair (indices, "
                            "values) of device arrays, or a SparseGradient, got "
                            f"{type(g).__name__}")
        idx, val = g
        idx = (cuda.to_device(idx) if isinstance(idx, np.ndarray)
               else as_numba(idx, "indices", self.ck))
        val = (cuda.to_device(np.ascontiguousarray(val, e.dtype)) if isinstance(val, np.ndarray)
               else as_numba(val, "values", self.ck))
        if val.dtype != e.dtype:
            raise ValueError(f"the values of a sparse gradient must be {e.dtype}, "
                             f"got {val.dtype}")
        if val.ndim == 1:
            val = val.reshape(val.shape[0], 1)
        r = val.shape[1]
        if self.r is None:
            if r == 0 or n % r:
                raise ValueError(f"a sparse gradient with rows of {r} values needs x0's "
                                 f"size ({n}) to be a multiple of {r}")
            self.r = r
        elif r != self.r:
            raise ValueError(f"the sparse gradients of a run must keep their row "
                             f"length: {self.r} before, {r} now")
        ih = idx.copy_to_host()
        if ih.ndim != 1 or ih.dtype.kind not in "iu" or ih.shape[0] != val.shape[0]:
            raise ValueError(f"the indices of a sparse gradient must be a 1-D integer "
                             f"array with one entry per row of values ({val.shape[0]}), "
                             f"got {ih.dtype} of shape {ih.shape}")
        rows = n // r
        bad = np.flatnonzero((ih < 0) | (ih >= rows))
        if bad.size:
            i = int(ih[bad[0]])
            what = (f"row index {i} out of range for {rows} rows of {r}"
                    if r > 1 else f"index {i} out of range for x0 of size {n}")
            raise IndexError(f"the sparse gradient has {what}")
        if ih.size > 1 and not np.all(ih[1:] > ih[:-1]):
            uniq, inverse = np.unique(ih, return_inverse=True)
            out = cuda.device_array((uniq.size, r), e.dtype)
            ck = self.ck
            fill = ck.fill_kernel()[ck.blocks(out.size), ck.THREADS]
            fill(out.reshape(out.size), e.dtype.type(0))
            ck.scatter_kernel()[ck.blocks(val.size), ck.THREADS](
                cuda.to_device(inverse.astype(np.int64)), val, out)
            idx, val = cuda.to_device(uniq.astype(np.int64)), out
        return idx, val

    def step(self, g, c, cf, k):
        e = self.engine
        ck = self.ck
        idx, val = g
        grid = ck.blocks(val.size, reduce=e.track)
        if e.backup:
            from numba import cuda

            xb = cuda.device_array(val.shape, e.dtype)
            self.backups[k] = (idx, xb)
        else:
            xb = val                   # not written
        if self.mode == "lazy":
            self.kernel[grid, ck.THREADS](e.x, idx, val, e.W, c, e.B, k, xb, e.Sc)
            return
        t = int(e.aux[0])
        if self.last is None:
            from numba import cuda

            self.last = cuda.device_array(e.n // self.r, np.int64)
            ck.fill_kernel()[ck.blocks(self.last.size), ck.THREADS](self.last, t - 1)
        self.kernel[grid, ck.THREADS](e.x, idx, val, e.W, c, cf, e.B, k, self.last, t,
                                      xb, e.Sc)
        ck.mark_kernel()[ck.blocks(idx.size), ck.THREADS](idx, self.last, t, e.B)
        self.cf = cf

    def flush(self):
        """Catch-up: bring every row up to the last step."""
        e = self.engine
        if self.mode != "catchup" or self.last is None:
            return False
        ck = self.ck
        t = int(e.aux[0])
        flush = ck.flush_kernel(e.rule_name, e.F, e.bounded, e.backup)
        flush[ck.blocks(e.n), ck.THREADS](e.x, e.W, self.cf, self.last, self.r, t)
        ck.fill_kernel()[ck.blocks(self.last.size), ck.THREADS](self.last, t)
        return True

    def restore(self, k):
        """Put back the values of x that step ``k`` changed."""
        idx, xb = self.backups[k]
        ck = self.ck
        ck.densify_kernel()[ck.blocks(xb.size), ck.THREADS](idx, xb, self.engine.x)

    def forget(self):
        """Drop the saved values of every step but the last."""
        if len(self.backups) > 1:
            last = max(self.backups)
            self.backups = {last: self.backups[last]}

    def dense(self, g):
        from numba import cuda

        e = self.engine
        ck = self.ck
        out = cuda.device_array(e.n, e.dtype)
        ck.fill_kernel()[ck.blocks(e.n), ck.THREADS](out, e.dtype.type(0))
        idx, val = g
        ck.densify_kernel()[ck.blocks(val.size), ck.THREADS](idx, val, out)
        return out
