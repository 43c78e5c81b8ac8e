"""The whole loop compiled, for objectives that are Numba functions.

When ``fun`` and a callable ``jac`` are ``@njit`` dispatchers (or ``jac=True``
with an ``@njit`` ``fun`` returning ``(f, g)``), :func:`run` drives one
compiled function that evaluates the objective, applies the termination tests
and updates, with no Python per step. It follows :mod:`numadam._loop`
statement for statement and calls the same rule functions, so its results are
bitwise those of the Python-driven loop.

The compiled function returns to Python only when the run ends or, with a
callback, every ``callback_every`` steps: the callback sees the iterate after
the non-finite check and before the termination tests, as in the Python loop.

The first evaluation, at ``x0``, runs from Python with the Python loop's
checks, so a bad return value fails with the same clear error before any
step. Loops close over the user's functions, so they are compiled once per
process and per (objective, method, flags) and kept in memory; Numba's disk
cache cannot key them.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange, types
from numba.core.dispatcher import Dispatcher
from numba.core.errors import TypingError
from numba.extending import overload

from . import _loop
from ._kernels import cpu
from ._rules import get_rule

# events returned by the compiled loop besides the statuses of _loop
CALLBACK_EVENT = -1
BAD_GRADIENT = -2
GTOL, FTOL, XTOL = 10, 11, 12


def is_numba_function(f):
    return isinstance(f, Dispatcher)


def eligible(objective):
    """Whether the objective can run in the compiled loop."""
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


# ------------------------------------------------------------- the loop --

@functools.lru_cache(maxsize=64)
def make_loop(fun, jac, mode, jac_out, rule_name, F, parallel, bounded):
    """Compile the loop for one objective and one method configuration.

    Gradients live in the rows of ``G`` (2, n), used in turn, so that the
    previous one survives the next evaluation; the current row is ``cur``.
    With ``jac_out`` the user's function writes into that row, otherwise the
    returned gradient is copied there. Keeping every array in place (no
    array is returned, swapped or re-bound per step) is what makes a step of a
    tiny problem cost tens of nanoseconds.
    """
    rule = get_rule(rule_name)
    coefficients = rule.coefficients
    update = rule.update
    loop = prange if parallel else range
    combined = mode == "combined"
    off, H, A = cpu.layout(rule_name, bounded, True)

    @njit(parallel=parallel, error_model="numpy", nogil=True)
    def run(x, G, W, P, args, lr, gtol, ftol, xtol, maxiter, every, k, f, fprev,
            cur, resume, evaluations):
        n = x.shape[0]
        xprev = W[0]
        S = W[off:]
        h = P[:H]
        aux = P[H:H + A]
        cf = P[H + A:]
        T = x.dtype.type
        # the next step after which the callback is due (-1: never)
        next_callback = (k // every + 1) * every if every > 0 else -1
        while True:
            if not resume:
                nxt = 1 - cur
                if combined:
                    if jac_out:
                        fn = fun(x, *(args + (G[nxt],)))
                    else:
                        fn, gn = fun(x, *args)
                        if not _store(G, nxt, gn):
                            return BAD_GRADIENT, k, f, fprev, cur, evaluations
                else:
                    fn = fun(x, *args)
                    if jac_out:
                        jac(x, *(args + (G[nxt],)))
                    elif not _store(G, nxt, jac(x, *args)):
                        return BAD_GRADIENT, k, f, fprev, cur, evaluations
                evaluations += 1
                cur = nxt
                fprev = f
                f = _as_float(fn)
            # cpu.grad_norm_kernel: the largest |g_i|, NaN if one is not finite
            gmax = 0.0
            bad = 0.0
            for i in loop(n):
                gi = G[cur, i]
                gmax = max(gmax, abs(gi))
                bad += gi - gi
            if bad != 0.0 or gmax != gmax or not math.isfinite(f):
                return _loop.NONFINITE, k, f, fprev, cur, evaluations
            if k == next_callback and not resume:
                return CALLBACK_EVENT, k, f, fprev, cur, evaluations
            resume = False
            if gtol > 0.0 and gmax <= gtol:
                return GTOL, k, f, fprev, cur, evaluations
            if k > 0:
                if ftol > 0.0 and abs(fprev - f) <= ftol * max(abs(fprev), abs(f), 1.0):
                    return FTOL, k, f, fprev, cur, evaluations
                if xtol > 0.0:
                    # cpu.change_kernel
                    d = 0.0
                    s = 0.0
                    for i in loop(n):
                        d = max(d, abs(x[i] - xprev[i]))
                        s = max(s, abs(x[i]))
                    if d <= xtol * max(1.0, s):
                        return XTOL, k, f, fprev, cur, evaluations
            if k >= maxiter:
                return _loop.MAXITER, k, f, fprev, cur, evaluations
            # cpu.step_kernel, with the backup of x
            coefficients(h, aux, lr, F, cf, T)
            c = (T(cf[0]), T(cf[1]), T(cf[2]), T(cf[3]), T(cf[4]), T(cf[5]),
                 T(cf[6]), T(cf[7]), T(cf[8]), T(cf[9]), T(cf[10]), T(cf[11]))
            for i in loop(n):
                xn = update(i, x, G[cur, i], S, c, F)
                xprev[i] = x[i]
                if bounded:
                    if xn < W[1, i]:
                        xn = W[1, i]
                    elif xn > W[2, i]:
                        xn = W[2, i]
                x[i] = xn
            k += 1

    return run


def run(engine, objective, control, callback):
    """The compiled counterpart of :func:`numadam._loop.run`."""
    x = engine.x
    n = x.shape[0]
    jac_out = control["jac_out"]
    loop_fn = make_loop(objective.fun, objective.jac if objective.mode == "callable" else None,
                        objective.mode, jac_out, engine.rule_name, engine.F,
                        engine.parallel, engine.bounded)
    kind = _loop.callback_kind(callback)
    every = control["callback_every"] if kind is not None else 0

    # the first evaluation from Python, with the Python loop's checks
    G = np.zeros((2, n), x.dtype)
    evaluate = objective.evaluator(jac_out)
    xv = x.view()
    xv.flags.writeable = False
    f, g = evaluate(xv, G[0])
    if not jac_out:
        G[0] = g
    args = tuple(objective.args)
    k = cur = 0
    fprev = math.nan
    evaluations = 1
    resume = True
    status = message = None
    while True:
        event, k, f, fprev, cur, evaluations = loop_fn(
            x, G, engine.W, engine.P, args, engine.learning_rate, control["gtol"],
            control["ftol"], control["xtol"], control["maxiter"], every, k, f,
            fprev, cur, resume, evaluations)
        if event == CALLBACK_EVENT:
            if _loop.call_callback(callback, kind, x, f, G[cur], k):
                status, message = _loop.CALLBACK_STOP, _loop.MESSAGES[_loop.CALLBACK_STOP]
                break
            resume = True
            continue
        if event == BAD_GRADIENT:
            objective.count(evaluations)
            raise ValueError(f"jac must return an array of shape {(n,)} (the shape "
                             f"of x0), got another length after step {k}")
        break
    if event == _loop.NONFINITE:
        what = "function value" if not math.isfinite(f) else "gradient"
        status, message = _loop.NONFINITE, _loop.nonfinite_message(k, what)
        if k > 0:
            np.copyto(x, engine.xprev)
            f, cur = fprev, 1 - cur
    elif status is None:
        status = _loop.MAXITER if event == _loop.MAXITER else _loop.SUCCESS
        message = {GTOL: _loop.MESSAGES["gtol"], FTOL: _loop.MESSAGES["ftol"],
                   XTOL: _loop.MESSAGES["xtol"]}.get(event, _loop.MESSAGES[_loop.MAXITER])
    objective.count(evaluations)
    return dict(x=x, fun=f, jac=G[cur].copy(), nit=k, status=status, message=message)
