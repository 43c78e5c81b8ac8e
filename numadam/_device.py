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
step counts are rolled back, and ``nit`` is ``j``. After a non-finite value
at the iterate of step ``j > 0`` the run puts back the iterate of step
``j - 1``, as the host loops do: each step saves the iterate it replaces
(a row of ``W``, written in the same pass; the touched values for sparse
steps), and ``fun`` and ``jac`` are evaluated once more there.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import OptimizeResult

from . import _stochastic
from ._arrays import as_bounds, as_x0, device_copy, is_device_array
from ._device_engine import DeviceEngine, as_numba, load_cuda
from ._interrupt import INTERRUPTED, Guard
from ._loop import (CALLBACK_STOP, MAXITER, MESSAGES, NONFINITE, SUCCESS,
                    callback_kind, interrupted_message, nonfinite_message,
                    steps_done_message, tolerances_set)
from ._objective import jac_mode
from .schedules import watches_loss

#: Steps between two polls of the device's stop flag.
POLL = 64

_UNSUPPORTED = {
    "batch_size": None, "batch_args": None, "epochs": None, "average": None,
    "history": None, "jac_out": False, "parallel": None, "smoothing": None,
    "patience": None, "checkpoint": None,
}


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


def solve(spec, fun, x0, args, jac, bounds, callback, control, hyper, guard=None):
    """A device-resident minimize run of numadam method ``spec``; ``guard``
    (:class:`~numadam._interrupt.Guard`) stops it at a step on Ctrl-C."""
    guard = guard if guard is not None else Guard()
    on_device = is_device_array(x0)
    why = "x0 on the GPU" if on_device else "option device='cuda'"
    for name, default in _UNSUPPORTED.items():
        if getattr(control, name) != default:
            raise ValueError(f"option {name!r} is not supported by device runs "
                             f"({why}); see the GPU guide for what runs there")
    if control.compiled:
        raise ValueError(f"option 'compiled'=True is not supported by device runs "
                         f"({why}): fun and jac run as given, on device arrays")
    if watches_loss(control.learning_rate_schedule):
        raise ValueError(f"a reduce_on_plateau learning rate is not supported by device "
                         f"runs ({why}) yet")
    if not callable(fun):
        raise TypeError(f"fun must be callable, got {type(fun).__name__}")
    mode = jac_mode(jac)
    if mode not in ("callable", "combined"):
        raise ValueError(f"device runs ({why}) need a gradient function: jac must be a "
                         f"callable or True, got {jac!r}")
    if control.sparse == "dense":
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
    sparse = spec.sparse_mode(hyper, control.sparse)
    gtol, ftol, xtol = control.gtol, control.ftol, control.xtol
    if on_device:
        x = device_copy(src)
        view = viewer(x0)
    else:
        x = cuda.to_device(xh)
        view = viewer(x)
    engine = DeviceEngine(spec, x, hyper, lo, hi, control.state, ck, guarded=True,
                          track=xtol > 0.0, backup=True)
    engine.schedule = setup.schedule
    if on_device:
        # x0 must be finite: the probe tells, before any evaluation
        ck.probe_kernel()[ck.blocks(n, reduce=True), ck.THREADS](x, engine.B, 0)
        if engine.B.copy_to_host()[1] != 0.0:
            raise ValueError("x0 must be finite, but it holds a NaN or an infinity")
    engine.B.copy_to_device(_control_values(ck, gtol, xtol))
    if lo is not None:
        ck.clip_kernel()[ck.blocks(n), ck.THREADS](x, engine.W, engine.bounds_row)
    if sparse is not None:
        engine.use_sparse(sparse)

    every = control.callback_every
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
    evaluated = True
    while True:
        done, fg = guard.call(evaluate, need_f)
        if not done:
            # Ctrl-C while evaluating x_k: x_k and its state are kept
            status, evaluated = INTERRUPTED, False
            stopped = _poll(engine, ck, snapshots)
            break
        f, g_raw = fg
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
            done, stop = guard.call(_call, callback, kind, view, x, f, gv, k)
            if not done:
                # Ctrl-C in the callback: the run ends at x_k, evaluated
                status = INTERRUPTED
                stopped = _poll(engine, ck, snapshots, final_k=k)
                break
            if stop:
                status, message = CALLBACK_STOP, MESSAGES[CALLBACK_STOP]
                break
        if ftol > 0.0 and k > 0 and abs(f_prev - f) <= ftol * max(abs(f_prev), abs(f), 1.0):
            stopped = _poll(engine, ck, snapshots, final_k=k) or (SUCCESS, k, "ftol")
            break
        if k >= maxiter:
            break
        if guard.asked:
            # Ctrl-C: x_k was evaluated, its step not taken
            status = INTERRUPTED
            stopped = _poll(engine, ck, snapshots, final_k=k)
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
    rolled_back = False
    if stopped:
        # a device test (gtol, xtol, a non-finite gradient) ended the run
        # first, also when Ctrl-C came after it
        reason, k, what = stopped
        status, evaluated = reason, True
        if reason == SUCCESS:
            message = MESSAGES[what]
        else:
            message = nonfinite_message(k, what)
            if k > 0:
                # as on the host: back to the iterate of step k - 1, the last
                # with a finite value and gradient (the state keeps k steps)
                if engine.sparse is not None:
                    engine.sparse.restore(k - 1)
                else:
                    x.copy_to_device(engine.xprev)
                rolled_back = True
    elif status == INTERRUPTED:
        message = interrupted_message(k, evaluated)
    elif status is None and not tolerances_set(control):
        status, message = SUCCESS, steps_done_message(maxiter)
    elif status is None:
        status, message = MAXITER, MESSAGES[MAXITER]
    flushed = engine.sparse is not None and engine.sparse.flush()
    if not evaluated:
        f, jac_value = math.nan, _nan_like(x)
    else:
        if flushed or rolled_back:
            # f and g anew at the returned x: catch-up moved every row, or a
            # rollback put back the iterate before (after Ctrl-C, if that
            # ends within the grace the user's code has)
            done, fg = guard.call(evaluate, True)
            f, g_raw = fg if done else (math.nan, None)
            gd = as_gradient(g_raw) if done else None
        elif f is None:
            done, f = guard.call(fun, xv, *args)
            counts["nfev"] += done
            f = f if done else math.nan
        if gd is None:
            jac_value = _nan_like(x)
        else:
            jac_value = engine.sparse.dense(gd) if sparse is not None else device_copy(gd)
    return OptimizeResult(
        x=view(x), fun=_as_float(f), jac=view(jac_value), nit=k, nfev=counts["nfev"],
        njev=counts["njev"], status=status, success=status == SUCCESS,
        message=message, state=engine.state(copy=False))


def _nan_like(x):
    """A device array of NaN like ``x``."""
    out = device_copy(x)
    out[:] = math.nan
    return out


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
        if engine.sparse is not None:
            engine.sparse.forget()
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
