"""Device-resident runs: x, the gradient and the optimiser state on a GPU.

A run goes to the device when ``x0`` is a CUDA device array (anything with
``__cuda_array_interface__``: CuPy arrays, PyTorch CUDA tensors, Numba device
arrays) or when ``options={"device": "cuda"}``. The update steps are the
kernels of :mod:`numadam._kernels.cuda`, built from the same rules as the
CPU kernels.

What crosses to the host per step:

- nothing for the update itself: the step count and the per-step scalars
  live on the host and go to the kernel as arguments;
- nothing for ``gtol``, ``xtol`` and the non-finite check of the gradient:
  they run on the device (guarded kernels; the host polls the outcome every
  :data:`POLL` steps, at callbacks and at the end);
- the scalar ``f`` only when something needs it each step: ``ftol``, a
  callback, ``disp``. Otherwise, with a separate ``jac``, ``fun`` is not
  called during the run at all, only once at the end for ``res.fun``.

When a device test stops the run at step ``j``, the host learns it at its
next poll; the steps it issued meanwhile are no-ops on the device, their
step counts are rolled back, and ``nit`` is ``j``.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
from scipy.optimize import OptimizeResult

from ._loop import (CALLBACK_STOP, MAXITER, MESSAGES, NONFINITE, SUCCESS,
                    callback_kind)
from ._rules import NC
from ._state import OptimizerState

#: Steps between two polls of the device's stop flag.
POLL = 64

_UNSUPPORTED = {
    "batch_size": None, "batch_args": None, "epochs": None, "average": None,
    "history": None, "jac_out": False, "parallel": None, "smoothing": None,
    "patience": None,
}


def is_device_array(a):
    """Whether ``a`` is a CUDA device array (or the CUDA simulator's)."""
    return hasattr(a, "__cuda_array_interface__") or type(a).__name__ == "FakeCUDAArray"


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


def viewer(x0):
    """``view(a)``: a Numba device array presented as the kind of ``x0``
    (CuPy in, CuPy out; a torch tensor; else the Numba array itself)."""
    top = type(x0).__module__.split(".")[0]
    if top == "cupy":
        import cupy

        return cupy.asarray
    if top == "torch":
        import torch

        device = x0.device
        return lambda a: torch.as_tensor(a, device=device)
    return lambda a: a


def device_copy(a):
    """A new Numba device array with the values of device array ``a``."""
    from numba import cuda

    out = cuda.device_array(a.shape, a.dtype)
    out.copy_to_device(a)
    return out


def to_host(a):
    """``a`` as a NumPy array (copied from the device when it lives there)."""
    return a if isinstance(a, np.ndarray) else a.copy_to_host()


# ------------------------------------------------------------------ engine --

class DeviceEngine:
    """A method's state on the device, bound to the device array ``x``."""

    def __init__(self, spec, x, values, lo, hi, state, ck, guarded, track=False):
        from numba import cuda

        from ._kernels import cpu
        from ._optimizer import check_state

        rule = spec.rule_impl()
        F = rule.flags(values)
        names = rule.slots(F)
        n = x.shape[0]
        dtype = np.dtype(x.dtype)
        if state is not None:
            check_state(state, spec, F, n, dtype)
        bounded = lo is not None
        off = 2 * int(bounded)
        H, A = len(rule.hyper), len(rule.aux)
        W = cuda.device_array((off + len(names), n), dtype)
        P = np.zeros(H + A + NC, np.float64)
        P[:H] = [values[name] for name in rule.hyper]
        aux = P[H:H + A]
        fill = ck.fill_kernel()[ck.blocks(n), ck.THREADS]
        if bounded:
            W[0].copy_to_device(np.ascontiguousarray(lo, dtype))
            W[1].copy_to_device(np.ascontiguousarray(hi, dtype))
        if state is not None:
            for k in range(len(names)):
                W[off + k].copy_to_device(state.S[k])
            aux[...] = state.aux
        else:
            init = rule.slot_init(values, F) or (0.0,) * len(names)
            for k, v in enumerate(init):
                fill(W[off + k], dtype.type(v))
            aux[...] = [v for _, v in rule.aux]
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
        kernel = ck.step_kernel(rule.name, F, bounded, guarded, track)
        self.launch = kernel[ck.blocks(n, reduce=track), ck.THREADS]
        self.sparse = None

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

    def rate(self, lr=None):
        """The learning rate of the next step."""
        if lr is not None:
            return float(lr)
        if self.schedule is not None:
            return float(self.schedule(int(self.aux[0]) + 1))
        return self.learning_rate

    def step(self, g, lr, k=0):
        """One update with the device gradient ``g`` (dense, or the ``(idx,
        val)`` of a sparse one) at learning rate ``lr``."""
        c, cf = self.scalars(self.P, lr, self.proto)
        if self.sparse is not None:
            self.sparse.step(g, c, cf, k)
        else:
            self.launch(self.x, g, self.W, c, self.B, k)

    def state(self, copy):
        S = device_copy(self.S) if copy else self.S
        return OptimizerState(self.method, self.rule_name, self.F, self.names, S,
                              self.aux.copy())


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
        self.kernel = make(e.rule_name, e.F, e.bounded, e.guarded, e.track)
        self.r = None
        self.last = None

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
        idx = cuda.to_device(idx) if isinstance(idx, np.ndarray) else as_numba(idx, "indices", self.ck)
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
        if self.mode == "lazy":
            self.kernel[grid, ck.THREADS](e.x, idx, val, e.W, c, e.B, k)
            return
        t = int(e.aux[0])
        if self.last is None:
            from numba import cuda

            self.last = cuda.device_array(e.n // self.r, np.int64)
            ck.fill_kernel()[ck.blocks(self.last.size), ck.THREADS](self.last, t - 1)
        self.kernel[grid, ck.THREADS](e.x, idx, val, e.W, c, cf, e.B, k, self.last, t)
        ck.mark_kernel()[ck.blocks(idx.size), ck.THREADS](idx, self.last, t, e.B)
        self.cf = cf

    def flush(self):
        """Catch-up: bring every row up to the last step."""
        e = self.engine
        if self.mode != "catchup" or self.last is None:
            return False
        ck = self.ck
        t = int(e.aux[0])
        ck.flush_kernel(e.rule_name, e.F, e.bounded)[ck.blocks(e.n), ck.THREADS](
            e.x, e.W, self.cf, self.last, self.r, t)
        ck.fill_kernel()[ck.blocks(self.last.size), ck.THREADS](self.last, t)
        return True

    def dense(self, g):
        from numba import cuda

        e = self.engine
        ck = self.ck
        out = cuda.device_array(e.n, e.dtype)
        ck.fill_kernel()[ck.blocks(e.n), ck.THREADS](out, e.dtype.type(0))
        idx, val = g
        ck.densify_kernel()[ck.blocks(val.size), ck.THREADS](idx, val, out)
        return out


# -------------------------------------------------------------- minimize --

def wanted(x0, device):
    """Whether a minimize run goes to the device (validating ``device``)."""
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"option 'device' must be None, 'cpu' or 'cuda', got {device!r}")
    on_device = is_device_array(x0)
    if device == "cpu" and on_device:
        raise ValueError("option device='cpu' cannot take x0 that is a CUDA device "
                         "array; copy it to the host, or leave 'device' out")
    return device == "cuda" or on_device


def solve(spec, fun, x0, args, jac, bounds, callback, control, hyper):
    """A device-resident minimize run of numadam method ``spec``."""
    from . import _stochastic
    from ._minimize import as_bounds, as_x0
    from ._objective import jac_mode
    from ._sparse import check_mode

    on_device = is_device_array(x0)
    why = "x0 on the GPU" if on_device else "option device='cuda'"
    for name, default in _UNSUPPORTED.items():
        if control.get(name, default) != default:
            raise ValueError(f"option {name!r} is not supported by device runs "
                             f"({why}); see the GPU guide for what runs there")
    if control["compiled"]:
        raise ValueError(f"option 'compiled'=True is not supported by device runs "
                         f"({why}): fun and jac run as given, on device arrays")
    if not callable(fun):
        raise TypeError(f"fun must be callable, got {type(fun).__name__}")
    mode = jac_mode(jac)
    if mode not in ("callable", "combined"):
        raise ValueError(f"device runs ({why}) need a gradient function: jac must be a "
                         f"callable or True, got {jac!r}")
    if control["sparse"] == "dense":
        raise ValueError(f"option sparse='dense' is not supported by device runs ({why}); "
                         "use 'lazy' or 'catchup'")
    setup, args, maxiter = _stochastic.setup_run(control, args)
    kind = callback_kind(callback)
    ck = load_cuda(why)
    from numba import cuda

    if on_device:
        src = as_numba(x0, "x0", ck)
        if src.ndim != 1 or src.dtype not in (np.float32, np.float64) or src.size == 0:
            raise ValueError(f"x0 on the device must be a non-empty 1-D float32 or "
                             f"float64 array, got {src.dtype} of shape {tuple(src.shape)}")
        dtype = np.dtype(src.dtype)
    else:
        xh = as_x0(x0)
        dtype = xh.dtype
    n = src.shape[0] if on_device else xh.shape[0]
    lo, hi = as_bounds(bounds, np.empty(n, dtype))
    sparse = check_mode(spec, hyper, control["sparse"], lo is not None, False)
    gtol, ftol, xtol = control["gtol"], control["ftol"], control["xtol"]
    if on_device:
        x = device_copy(src)
        view = viewer(x0)
    else:
        x = cuda.to_device(xh)
        view = viewer(x)
    engine = DeviceEngine(spec, x, hyper, lo, hi, control["state"], ck, guarded=True,
                          track=xtol > 0.0)
    engine.schedule = setup.schedule
    if on_device:
        # x0 must be finite: the probe tells, before any evaluation
        ck.probe_kernel()[ck.blocks(n, reduce=True), ck.THREADS](x, engine.B, 0)
        if engine.B.copy_to_host()[1] != 0.0:
            raise ValueError("x0 must be finite, but it holds a NaN or an infinity")
    engine.B.copy_to_device(_control_values(ck, gtol, xtol))
    if lo is not None:
        ck.clip_kernel()[ck.blocks(n), ck.THREADS](x, engine.W)
    if sparse is not None:
        engine.use_sparse(sparse)

    every = control["callback_every"]
    need_f = ftol > 0.0 or kind is not None
    xv = view(x)
    counts = {"nfev": 0, "njev": 0}

    def evaluate(want_f):
        if mode == "combined":
            f, g = fun(xv, *args)
            counts["nfev"] += 1
            counts["njev"] += 1
            return f, g
        f = None
        if want_f:
            f = fun(xv, *args)
            counts["nfev"] += 1
        g = jac(xv, *args)
        counts["njev"] += 1
        return f, g

    def as_gradient(g):
        return engine.gradient(g, f"jac must return a device array in a device run "
                                  f"({why})", "the gradient jac returns")

    def probe_gradient(gd, k):
        vals = gd[1] if sparse is not None else gd
        flat = vals.reshape(vals.size) if vals.ndim > 1 else vals
        ck.probe_kernel()[ck.blocks(flat.size, reduce=True), ck.THREADS](flat, engine.B, k)

    snapshots = {}
    stopped = status = message = None
    f_prev = None
    k = 0
    while True:
        f, g_raw = evaluate(need_f)
        gd = as_gradient(g_raw)
        probe_gradient(gd, k)
        if need_f:
            f = _as_float(f)
            if not math.isfinite(f):
                stopped = (_poll(engine, ck, snapshots, final_k=k)
                           or (NONFINITE, k, "function value"))
                break
        if kind is not None and k > 0 and k % every == 0:
            stopped = _poll(engine, ck, snapshots)
            if stopped:
                break
            gv = engine.sparse.dense(gd) if sparse is not None else gd
            if _call(callback, kind, view, x, f, gv, k):
                status, message = CALLBACK_STOP, MESSAGES[CALLBACK_STOP]
                break
        if ftol > 0.0 and k > 0 and abs(f_prev - f) <= ftol * max(abs(f_prev), abs(f), 1.0):
            stopped = _poll(engine, ck, snapshots, final_k=k) or (SUCCESS, k, "ftol")
            break
        if k >= maxiter:
            break
        snapshots[k] = engine.P.copy()
        engine.step(gd, engine.rate(), k)
        k += 1
        f_prev = f
        if k % POLL == 0:
            stopped = _poll(engine, ck, snapshots)
            if stopped:
                break
    if stopped is None and status is None:
        # the tests of the last iterate: its gradient was probed
        stopped = _poll(engine, ck, snapshots, final_k=k)
    if stopped:
        reason, k, what = stopped
        status = reason
        message = (MESSAGES[what] if reason == SUCCESS else
                   f"Non-finite {what} at the iterate of step {k}; the run stopped "
                   "there without stepping from it (res.x is that iterate).")
    elif status is None:
        status, message = MAXITER, MESSAGES[MAXITER]
    if engine.sparse is not None and engine.sparse.flush():
        # catch-up moved every row: f and g anew at the returned x
        f, g_raw = evaluate(True)
        gd = as_gradient(g_raw)
    elif f is None:
        f = fun(xv, *args)
        counts["nfev"] += 1
    jac_value = engine.sparse.dense(gd) if sparse is not None else device_copy(gd)
    return OptimizeResult(
        x=view(x), fun=_as_float(f), jac=view(jac_value), nit=k, nfev=counts["nfev"],
        njev=counts["njev"], status=status, success=status == SUCCESS,
        message=message, state=engine.state(copy=False))


def _control_values(ck, gtol, xtol):
    B = np.zeros(ck.B_SIZE)
    B[ck.GTOL] = gtol if gtol > 0.0 else -1.0
    B[ck.XTOL] = xtol
    return B


def _poll(engine, ck, snapshots, final_k=None):
    """Read the device's stop flag; on a stop at step ``j``, roll the host's
    step count back to ``j`` and return ``(reason, j, what)``.

    With ``final_k`` (the run reached maxiter or ended on the host) the
    device's tests of that last iterate run first, as a guarded step would
    run them, without the step."""
    if final_k is not None:
        ck.test_kernel(engine.track)[1, 1](engine.B, final_k)
    B = engine.B.copy_to_host()
    reason = B[ck.STOP]
    if reason == 0.0:
        snapshots.clear()
        return None
    j = int(B[ck.STOP_STEP])
    if j in snapshots:
        engine.P[...] = snapshots[j]
    snapshots.clear()
    if reason == ck.STOP_NONFINITE:
        return NONFINITE, j, "gradient"
    return SUCCESS, j, "gtol" if reason == ck.STOP_GTOL else "xtol"


def _as_float(f):
    """The scalar ``f`` on the host (a device scalar is copied)."""
    if isinstance(f, (float, int, np.floating, np.integer)):
        return float(f)
    if hasattr(f, "copy_to_host"):
        a = f.copy_to_host()
        if a.size != 1:
            raise ValueError(f"fun must return a scalar, got an array of shape {a.shape}")
        return float(a.reshape(-1)[0])
    try:
        return float(f)
    except (TypeError, ValueError):
        raise TypeError(f"fun must return a real scalar, got {type(f).__name__}") from None


def _call(callback, kind, view, x, f, g, k):
    """The user's callback with copies of x and g; True on StopIteration."""
    try:
        if kind == "new":
            callback(intermediate_result=OptimizeResult(
                x=view(device_copy(x)), fun=f, jac=view(device_copy(g)), nit=k))
        else:
            callback(view(device_copy(x)))
    except StopIteration:
        return True
    return False
