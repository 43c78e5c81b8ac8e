"""The Python-driven loop: any callables, callbacks and termination tests.

One iteration, at the iterate ``x_k`` (``k`` steps taken):

1. evaluate ``f_k`` and ``g_k``; a non-finite value ends the run and puts
   back ``x_{k-1}``, the last iterate whose value and gradient were finite;
2. call the callback with ``x_k`` (not for ``x_0``, as in scipy);
   StopIteration ends the run with status 99;
3. the termination tests: ``gtol`` on ``g_k``, then ``ftol`` and ``xtol``
   on the change from ``x_{k-1}``;
4. ``k == maxiter`` ends the run with status 1;
5. one compiled update step gives ``x_{k+1}``.

So ``nit`` counts update steps, and ``nfev == njev == nit + 1`` with an
analytic gradient.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
from scipy.optimize import OptimizeResult

from ._kernels import cpu, preload

SUCCESS, MAXITER, NONFINITE, CALLBACK_STOP = 0, 1, 3, 99

MESSAGES = {
    "gtol": "Optimization terminated successfully: max(abs(g)) <= gtol.",
    "ftol": "Optimization terminated successfully: the relative change of f "
            "<= ftol.",
    "xtol": "Optimization terminated successfully: the step <= xtol.",
    MAXITER: "Maximum number of iterations has been exceeded.",
    CALLBACK_STOP: "`callback` raised `StopIteration`.",
}


def nonfinite_message(k, what):
    if k == 0:
        return f"Non-finite {what} at x0."
    return (f"Non-finite {what} after step {k}; x is the iterate of step {k - 1}, "
            "the last with a finite function value and gradient.")


def callback_kind(callback):
    """'new' for ``callback(intermediate_result)``, 'legacy' for ``callback(xk)``."""
    if callback is None:
        return None
    if not callable(callback):
        raise TypeError(f"callback must be callable or None, got "
                        f"{type(callback).__name__}")
    try:
        params = inspect.signature(callback).parameters
    except (TypeError, ValueError):
        return "legacy"
    return "new" if set(params) == {"intermediate_result"} else "legacy"


def call_callback(callback, kind, x, f, g, k):
    """Call the user's callback; True when it raised StopIteration."""
    try:
        if kind == "new":
            callback(intermediate_result=OptimizeResult(
                x=x.copy(), fun=f, jac=g.copy(), nit=k))
        else:
            callback(x.copy())
    except StopIteration:
        return True
    return False


def run(engine, objective, control, callback):
    """Drive ``engine`` from its current ``x`` until a test ends the run.

    Returns a dict with x, fun, jac, nit, status, message (x is the engine's
    own array, left at the returned iterate).
    """
    x = engine.x
    xprev = engine.xprev
    xv = x.view()
    xv.flags.writeable = False
    kernel = engine.kernel
    W, P = engine.W, engine.P
    lr = engine.learning_rate
    parallel = engine.parallel
    gnorm = cpu.grad_norm_kernel(parallel)
    change = cpu.change_kernel(parallel)
    preload.load(gnorm, x)

    maxiter = control["maxiter"]
    gtol = control["gtol"]
    ftol = control["ftol"]
    xtol = control["xtol"]
    kind = callback_kind(callback)
    jac_out = control["jac_out"]
    evaluate = objective.evaluator(jac_out)
    isfinite = math.isfinite

    # with jac_out, gradients alternate between two buffers, so that the
    # previous one survives the next evaluation
    spare = np.zeros_like(x) if jac_out else None
    k = 0
    evaluations = 1
    f, g = evaluate(xv, np.zeros_like(x) if jac_out else None)
    f_prev = g_prev = None
    status = message = None
    while True:
        gmax = gnorm(g)
        if not (isfinite(f) and gmax == gmax):
            what = ("function value" if not isfinite(f) else "gradient")
            status, message = NONFINITE, nonfinite_message(k, what)
            if k > 0:
                np.copyto(x, xprev)
                if not jac_out and (g is g_prev or np.may_share_memory(g, g_prev)):
                    f_prev, g_prev = evaluate(xv)
                    evaluations += 1
                f, g = f_prev, g_prev
            break
        if kind is not None and k > 0 and call_callback(callback, kind, x, f, g, k):
            status, message = CALLBACK_STOP, MESSAGES[CALLBACK_STOP]
            break
        if gtol > 0.0 and gmax <= gtol:
            status, message = SUCCESS, MESSAGES["gtol"]
            break
        if k > 0:
            if ftol > 0.0 and abs(f_prev - f) <= ftol * max(abs(f_prev), abs(f), 1.0):
                status, message = SUCCESS, MESSAGES["ftol"]
                break
            if xtol > 0.0:
                d, s = change(x, xprev)
                if d <= xtol * max(1.0, s):
                    status, message = SUCCESS, MESSAGES["xtol"]
                    break
        if k >= maxiter:
            status, message = MAXITER, MESSAGES[MAXITER]
            break
        kernel(x, g, W, P, lr)
        k += 1
        if jac_out:
            spare, g_prev = g_prev if g_prev is not None else spare, g
        else:
            g_prev = g
        f_prev = f
        f, g = evaluate(xv, spare)
        evaluations += 1

    objective.count(evaluations)
    return dict(x=x, fun=f, jac=np.array(g, copy=True), nit=k, status=status,
                message=message)
