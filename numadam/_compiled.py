"""The whole loop compiled, for objectives that are Numba functions.

When ``fun`` and a callable ``jac`` are ``@njit`` dispatchers (or ``jac=True``
with an ``@njit`` ``fun`` returning ``(f, g)``), minimize runs the iteration
of :mod:`numadam._loop` compiled: :func:`compiled_loop` hands
:func:`numadam._loop.make_iterate` compiled hooks (the evaluation, the
minibatch gather, the schedule) and gives the function it returns to
``numba.njit``. It is the very function the Python-driven loop runs, calling
the same kernels (the step, the gradient norm, the xtol change, the iterate
average), so its results are bitwise those of the Python-driven loop, and a
step has no Python in it.

The compiled function returns to Python only when the run ends, when an
epoch's permutation is used up (the next one is drawn from the run's NumPy
generator, as in the Python loop), and, with a callback or a progress bar,
every ``callback_every`` steps: the callback sees the iterate after the
non-finite check and before the termination tests, as in the Python loop.

The first evaluation, at ``x0``, runs from Python with the Python loop's
checks, so a bad return value fails with the same clear error before any
step; later ones that return a gradient of the wrong length or bad sparse
indices end the run with the same errors. The user's functions receive the
same argument types as in the Python loop (a read-only view of x,
C-contiguous batch views), so the compiled loop reuses the specialisations
that evaluation compiled (or loaded from the user's own cache). Loops close
over the user's functions, so they are compiled once per process and per
(objective, method, switches) and kept in memory; Numba's disk cache cannot
key them. The kernels they call are compiled (or loaded from the disk cache)
once per method and switches, for every objective: a new objective compiles
only its own loop, which holds no element loop of its own.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, types
from numba.core.dispatcher import Dispatcher
from numba.core.errors import TypingError
from numba.extending import overload, register_jitable

from . import _loop
from ._kernels import sparse as sk
from ._loop import BAD_GRADIENT, BAD_INDEX, BAD_ROWS
from ._sparse import _coalesce
from .schedules import Schedule, constant, rate_function

SORTED_UNIQUE = -(2 ** 62)    # _sparse._coalesce: nothing to do


def is_numba_function(f):
    return isinstance(f, Dispatcher)


def eligible(objective, setup):
    """Whether the objective and the run can use the compiled loop."""
    if setup.schedule is not None and not isinstance(setup.schedule, Schedule):
        return False          # a Python callable learning rate
    if objective.mode == "callable":
        return is_numba_function(objective.fun) and is_numba_function(objective.jac)
    if objective.mode == "combined":
        return is_numba_function(objective.fun)
    return False


# --------------------------------------------------------------- helpers --

def _as_float(f):  # pragma: no cover - replaced by its overload
    raise NotImplementedError


@overload(_as_float)
def _as_float_impl(f):
    if isinstance(f, (types.Float, types.Integer, types.Boolean)):
        return lambda f: float(f)
    if isinstance(f, types.Array) and f.ndim == 0:
        return lambda f: float(f[()])
    raise TypingError(f"fun must return a real scalar, got {f}")


def _store(G, cur, g):  # pragma: no cover - replaced by its overload
    raise NotImplementedError


@overload(_store)
def _store_impl(G, cur, g):
    """Copy a returned gradient into row ``cur`` of the buffers ``G``,
    converting its dtype; False when its length is not that of x."""
    if not (isinstance(g, types.Array) and g.ndim == 1 and
            isinstance(g.dtype, (types.Float, types.Integer))):
        raise TypingError(f"jac must return a 1-D real array, got {g}")

    def impl(G, cur, g):
        n = G.shape[1]
        if g.shape[0] != n:
            return False
        for i in range(n):
            G[cur, i] = g[i]
        return True
    return impl


def _sparse_rows(sg, like):  # pragma: no cover - replaced by its overload
    raise NotImplementedError


@overload(_sparse_rows)
def _sparse_rows_impl(sg, like):
    """A Numba function's sparse gradient ``(indices, values)`` as int64
    indices and ``(k, r)`` values of x's dtype, copied only when needed."""
    if not (isinstance(sg, types.BaseTuple) and len(sg) == 2 and all(
            isinstance(a, types.Array) for a in sg)):
        raise TypeError(f"with option 'sparse', jac must return a tuple "
                        f"(indices, values) of arrays, got {sg}")
    it, vt = sg[0], sg[1]
    if it.ndim != 1 or not isinstance(it.dtype, types.Integer):
        raise TypingError(f"sparse gradient indices must be a 1-D integer array, got {it}")
    if vt.ndim not in (1, 2) or not isinstance(vt.dtype, (types.Float, types.Integer)):
        raise TypingError(f"sparse gradient values must be a 1-D or 2-D real array, "
                          f"got {vt}")
    same_idx = it.dtype == types.int64 and it.layout == "C"
    same_val = vt.dtype == like.dtype and vt.layout == "C"
    one_d = vt.ndim == 1

    def impl(sg, like):
        idx = sg[0]
        val = sg[1]
        k = idx.shape[0]
        if same_idx:
            out_idx = idx
        else:
            out_idx = np.empty(k, np.int64)
            for j in range(k):
                out_idx[j] = idx[j]
        if one_d:
            if same_val:
                return out_idx, val.reshape((k, 1))
            out_val = np.empty((k, 1), like.dtype)
            for j in range(k):
                out_val[j, 0] = val[j]
            return out_idx, out_val
        if same_val:
            return out_idx, val
        out_val = np.empty(val.shape, like.dtype)
        for j in range(k):
            for q in range(val.shape[1]):
                out_val[j, q] = val[j, q]
        return out_idx, out_val
    return impl


# --------------------------------------------------------------- hooks --

@register_jitable
def _coalesced(ri, rv, xv, mark, where, stamp):
    """``(event, indices, values, stamp)``: a sparse gradient's rows checked
    and coalesced with the scratch ``mark``/``where`` (a new ``stamp``);
    with BAD_INDEX the indices as returned."""
    n_rows = mark.shape[0]
    if rv.shape[1] * n_rows != xv.shape[0]:
        return BAD_ROWS, ri, rv, stamp
    stamp += 1
    ci = np.empty(ri.shape[0], np.int64)
    cv = np.empty(rv.shape, xv.dtype)
    got = _coalesce(ri, rv, n_rows, mark, where, stamp, ci, cv)
    if got == SORTED_UNIQUE:
        return 0, ri, rv, stamp
    if got < 0:
        return BAD_INDEX, ri, rv, stamp
    return 0, ci[:got], cv[:got], stamp


def make_evaluate(fun, jac, mode, jac_out, sparse_mode, parallel):
    """The compiled ``evaluate`` hook of :func:`numadam._loop.make_iterate`
    for the user's ``fun`` and ``jac``.

    A dense gradient goes into row ``nxt`` of ``G``: written there by the
    user's function with ``jac_out``, copied there otherwise. A sparse one
    ``(indices, values)`` is coalesced with the scratch ``mark``/``where``
    and returned (lazy and catch-up modes) or scattered into ``G[nxt]``
    (``sparse='dense'``)."""
    combined = mode == "combined"
    reads_sparse = sparse_mode is not None
    is_sparse = sparse_mode in ("lazy", "catchup")
    densify = sk.densify_kernel(parallel) if sparse_mode == "dense" else None

    if is_sparse:
        @njit(error_model="numpy", nogil=True)
        def evaluate(xv, call, mark, where, stamp):
            if combined:
                fn, sg = fun(xv, *call)
            else:
                fn = fun(xv, *call)
                sg = jac(xv, *call)
            ri, rv = _sparse_rows(sg, xv)
            bad, ci, cv, stamp = _coalesced(ri, rv, xv, mark, where, stamp)
            return bad, _as_float(fn), ci, cv, stamp
        return evaluate

    @njit(error_model="numpy", nogil=True, inline="always")
    def evaluate(xv, call, G, nxt, mark, where, stamp):
        if reads_sparse:
            if combined:
                fn, sg = fun(xv, *call)
            else:
                fn = fun(xv, *call)
                sg = jac(xv, *call)
            ri, rv = _sparse_rows(sg, xv)
            bad, ci, cv, stamp = _coalesced(ri, rv, xv, mark, where, stamp)
            if bad != 0:
                return bad, 0.0, stamp
            densify(ci, cv, G[nxt])
        elif combined:
            if jac_out:
                fn = fun(xv, *(call + (G[nxt],)))
            else:
                fn, gn = fun(xv, *call)
                if not _store(G, nxt, gn):
                    return BAD_GRADIENT, 0.0, stamp
        else:
            fn = fun(xv, *call)
            if jac_out:
                jac(xv, *(call + (G[nxt],)))
            elif not _store(G, nxt, jac(xv, *call)):
                return BAD_GRADIENT, 0.0, stamp
        return 0, _as_float(fn), stamp

    return evaluate


@functools.lru_cache(maxsize=64)
def _batch_function(nargs, positions, gathers):
    """The compiled ``batch`` hook: :func:`numadam._loop.batch_function`'s
    source with the gather kernels the Python loop uses."""
    return njit(error_model="numpy", nogil=True)(
        _loop.batch_function(nargs, positions, gathers))


@functools.lru_cache(maxsize=64)
def make_loop(fun, jac, mode, jac_out, sw, batch_key, rate_key):
    """The iteration compiled for one objective and one run configuration
    (``sw``: :data:`numadam._loop.Switches`)."""
    evaluate = make_evaluate(fun, jac, mode, jac_out, sw.sparse_mode, sw.parallel)
    batch = _batch_function(*batch_key) if batch_key is not None else None
    rate = rate_function(*rate_key)
    return njit(error_model="numpy", nogil=True)(
        _loop.make_iterate(sw, evaluate, batch, rate))


def compiled_loop(sw, engine, objective, control, setup, args):
    """The ``loop`` of :func:`numadam._loop.run` for Numba objectives:
    ``iterate`` compiled, the gradient rows ``G`` as one ``(2, n)`` array,
    and the schedule's parameters."""
    batching = setup.batching
    batch_key = ((len(args), batching.positions, batching.gathers)
                 if batching is not None else None)
    schedule = setup.schedule if setup.schedule is not None else constant(
        engine.learning_rate)
    iterate = make_loop(objective.fun,
                        objective.jac if objective.mode == "callable" else None,
                        objective.mode, control.jac_out, sw, batch_key,
                        (schedule.kind, schedule.warmup_steps > 0.0))
    return iterate, np.zeros((2, engine.x.shape[0]), engine.x.dtype), schedule.params


def run(engine, objective, control, callback, setup):
    """:func:`numadam._loop.run` with the compiled iteration."""
    return _loop.run(engine, objective, control, callback, setup, loop=compiled_loop)
