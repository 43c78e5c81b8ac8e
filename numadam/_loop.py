"""The Python-driven loop: any callables, callbacks and termination tests.

One iteration, at the iterate ``x_k`` (``k`` steps taken):

1. draw the next minibatch (with ``batch_size``) and evaluate ``f_k`` and
   ``g_k``; a non-finite value ends the run and puts back ``x_{k-1}``, the
   last iterate whose value and gradient were finite;
2. record the history row ``k``, then call the callback with ``x_k`` (not
   for ``x_0``, as in scipy); StopIteration ends the run with status 99;
3. the termination tests: ``gtol`` and ``ftol`` on the (smoothed) loss and
   gradient norm, then ``xtol`` on the change from ``x_{k-1}``;
4. ``k == maxiter`` ends the run with status 1;
5. one compiled update step with the step's learning rate gives
   ``x_{k+1}``; the iterate average takes it in.

So ``nit`` counts update steps, and ``nfev == njev == nit + 1`` with an
analytic gradient (plus one full-data evaluation at the end of a minibatch
or averaged run). :mod:`numadam._compiled` follows the same sequence.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
from scipy.optimize import OptimizeResult

from . import _stochastic as st
from ._engine import SparseSteps
from ._kernels import cpu, preload
from .schedules import Schedule, schedule_value

SUCCESS, MAXITER, NONFINITE, CALLBACK_STOP = 0, 1, 3, 99

MESSAGES = {
    "gtol": "Optimization terminated successfully: max(abs(g)) <= gtol.",
    "ftol": "Optimization terminated successfully: the relative change of f "
            "<= ftol.",
    "xtol": "Optimization terminated successfully: the step <= xtol.",
    MAXITER: "Maximum number of iterations has been exceeded.",
    CALLBACK_STOP: "`callback` raised `StopIteration`.",
}


def tolerance_message(which, setup):
    """The success message of a tolerance, naming the smoothing if any."""
    if which == "xtol" or (setup.smoothing == 0.0 and setup.patience == 1):
        return MESSAGES[which]
    if which == "gtol":
        return ("Optimization terminated successfully: the smoothed max(abs(g)) "
                f"stayed <= gtol for {setup.patience} steps.")
    return ("Optimization terminated successfully: the smoothed loss changed by "
            f"<= ftol (relative) over {setup.patience} steps.")


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


class Progress:
    """A progress bar for disp=True: tqdm when installed, else plain lines."""

    def __init__(self, total, method):
        self.total = total
        self.method = method
        self.every = max(1, total // 200)
        self.shown = 0
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.bar = None
            self.next_line = self.every
            self.line_every = max(1, total // 10)
        else:
            self.bar = tqdm(total=total, desc=method, unit="step", leave=True,
                            dynamic_ncols=True)

    def update(self, k, f):
        if self.bar is not None:
            self.bar.update(k - self.shown)
            self.bar.set_postfix(f=f"{f:.6g}", refresh=False)
        elif k >= self.next_line or k == self.total:
            print(f"  {self.method}: step {k:>9d}/{self.total}  f = {f:.6g}", flush=True)
            self.next_line = k + self.line_every
        self.shown = k

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run(engine, objective, control, callback, setup):
    """Drive ``engine`` from its current ``x`` until a test ends the run.

    Returns a dict with x, fun, jac, nit, status, message, and the history
    records; x is the engine's own array, left at the last iterate.
    """
    x = engine.x
    xprev = engine.xprev
    xv = x.view()
    xv.flags.writeable = False
    W, P = engine.W, engine.P
    aux = engine.aux
    parallel = engine.parallel
    gnorm = cpu.grad_norm_kernel(parallel)
    change = cpu.change_kernel(parallel)
    preload.load(gnorm, x)

    maxiter = control.maxiter
    gtol = control.gtol
    ftol = control.ftol
    xtol = control.xtol
    kind = callback_kind(callback)
    every = control.callback_every
    jac_out = control.jac_out
    evaluate = objective.evaluator(jac_out)
    isfinite = math.isfinite

    lr_const = engine.learning_rate
    schedule = setup.schedule
    sched_params = (tuple(schedule.params.tolist())
                    if isinstance(schedule, Schedule) else None)
    s, patience = setup.smoothing, setup.patience
    plain = s == 0.0 and patience == 1
    TS = np.zeros(st.TS_SIZE)
    TS[st.TS_PROD] = 1.0
    RB = np.zeros(patience + 1)
    batching = setup.batching
    A, AS = engine.A, engine.AS
    averaging = A is not None
    if averaging:
        average = cpu.average_kernel(parallel)
    H = np.zeros((3, maxiter + 1)) if setup.history else None
    progress = Progress(maxiter, engine.method) if control.disp else None

    # lazy and catch-up sparse steps: gradients are (idx, val) pairs, and
    # each step saves the touched values of x (xb) instead of all of x
    sparse = SparseSteps(engine, objective.sparse) if objective.sparse in (
        "lazy", "catchup") else None
    kernel = engine.dense_kernel() if sparse is None else None

    # with jac_out, gradients alternate between two buffers, so that the
    # previous one survives the next evaluation
    spare = np.zeros_like(x) if jac_out else None
    k = 0
    evaluations = 1
    call_args = batching.next_batch() if batching is not None else None
    f, g = evaluate(xv, np.zeros_like(x) if jac_out else None, call_args)
    f_prev = g_prev = prev_args = None
    status = message = None
    while True:
        gmax = gnorm(g) if sparse is None else sparse.norm(g)
        if not (isfinite(f) and gmax == gmax):
            what = ("function value" if not isfinite(f) else "gradient")
            status, message = NONFINITE, nonfinite_message(k, what)
            if k > 0:
                if sparse is None:
                    np.copyto(x, xprev)
                else:
                    sparse.undo()
                if not jac_out and sparse is None and (
                        g is g_prev or np.may_share_memory(g, g_prev)):
                    f_prev, g_prev = evaluate(xv, None, prev_args)
                    evaluations += 1
                f, g = f_prev, g_prev
            break
        if H is not None:
            H[0, k] = f
            H[1, k] = gmax
        if kind is not None and k > 0 and k % every == 0 and call_callback(
                callback, kind, x, f, g if sparse is None else sparse.dense(g), k):
            status, message = CALLBACK_STOP, MESSAGES[CALLBACK_STOP]
            break
        if plain:
            if gtol > 0.0 and gmax <= gtol:
                status, message = SUCCESS, MESSAGES["gtol"]
                break
            if k > 0 and ftol > 0.0 and abs(f_prev - f) <= ftol * max(
                    abs(f_prev), abs(f), 1.0):
                status, message = SUCCESS, MESSAGES["ftol"]
                break
        else:
            hit = st.smoothed_tests(TS, RB, k, f, gmax, s, patience, gtol, ftol)
            if hit:
                status = SUCCESS
                message = tolerance_message("gtol" if hit == st.GTOL_HIT else "ftol",
                                            setup)
                break
        if k > 0 and xtol > 0.0:
            d, s_ = change(x, xprev) if sparse is None else sparse.change()
            if d <= xtol * max(1.0, s_):
                status, message = SUCCESS, MESSAGES["xtol"]
                break
        if k >= maxiter:
            status, message = MAXITER, MESSAGES[MAXITER]
            break
        t = aux[0] + 1.0
        if schedule is None:
            lr = lr_const
        elif sched_params is not None:
            lr = schedule_value(sched_params, t)
        else:
            lr = st.check_rate(schedule(int(t)), int(t))
        if H is not None:
            H[2, k] = lr
        if sparse is None:
            kernel(x, g, W, P, lr)
        else:
            sparse.step(g, lr)
        if averaging:
            w = st.average_weight(AS, t)
            if w != 0.0:
                average(A, x, w)
        k += 1
        if progress is not None and k % progress.every == 0:
            progress.update(k, f)
        if jac_out:
            spare, g_prev = g_prev if g_prev is not None else spare, g
        else:
            g_prev = g
        f_prev = f
        prev_args = call_args
        if batching is not None:
            call_args = batching.next_batch()
        f, g = evaluate(xv, spare, call_args)
        evaluations += 1

    if progress is not None:
        progress.update(k, f)
        progress.close()
    objective.count(evaluations)
    rows = k + 1 if status != NONFINITE else k
    jac = np.array(g, copy=True) if sparse is None else sparse.dense(g)
    return dict(x=x, fun=f, jac=jac, nit=k, status=status, message=message, H=H,
                rows=rows, sparse=sparse)
