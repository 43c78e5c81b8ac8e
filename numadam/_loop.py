"""The iteration of minimize's numadam methods, written once.

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
or averaged run).

:func:`make_iterate` writes this sequence as one function, ``iterate``, over
three hooks (evaluate the objective, gather a minibatch, the step's learning
rate) and the shared kernels of :mod:`numadam._kernels`. Python runs it as it
is for any callables (:func:`python_loop`); :mod:`numadam._compiled` hands the
very same function to ``numba.njit`` with compiled hooks for Numba
objectives, so both drivers take the same steps, tests and rollbacks, and
give the same results bitwise. ``iterate`` returns to :func:`run` with an
event when Python has work to do: a callback or a progress update, a new
epoch's permutation (drawn from the run's NumPy generator), a bad return
value, or the end of the run. :func:`run` is the one driver of both.
"""

from __future__ import annotations

import inspect
import math
import time
from collections import namedtuple

import numpy as np
from numba.core.errors import TypingError
from scipy.optimize import OptimizeResult

from . import _stochastic as st
from . import _checkpoint
from ._checkpoint import Checkpointer
from ._engine import SparseSteps
from ._interrupt import INTERRUPTED, Guard
from ._kernels import cpu, preload, threads
from ._kernels import sparse as sk
from ._objective import first_evaluation_error, out_message, untouched_message
from ._options import check_rate, warn_user
from ._rules import get_rule
from .schedules import Schedule, observe_function, rate_function

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


def interrupted_message(k, evaluated):
    """The message of a run that Ctrl-C ended at the iterate of step ``k``,
    ``evaluated`` or not."""
    if evaluated:
        return (f"Interrupted (Ctrl-C) at step {k}: x is the iterate of step {k}, with "
                "its function value and gradient; res.state continues the run.")
    return (f"Interrupted (Ctrl-C) while evaluating the iterate of step {k}: x is that "
            "iterate, its function value and gradient are not known (NaN); "
            "res.state continues the run.")


def tolerances_set(control):
    """Whether the run was asked to stop at a tolerance (``gtol``, ``ftol``
    or ``xtol`` above 0): reaching ``maxiter`` then means it was not met."""
    return control.gtol > 0.0 or control.ftol > 0.0 or control.xtol > 0.0


def steps_done_message(maxiter):
    """The success message of a run that took the ``maxiter`` steps it was
    asked for, with no tolerance to meet."""
    steps = "step is" if maxiter == 1 else f"{maxiter} steps are"
    return (f"Optimization terminated successfully: the requested {steps} done "
            "(no tolerance was set).")


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

    def phase(self, text):
        """Show what the run does before its first step (compiling)."""
        if self.bar is not None:
            self.bar.set_description_str(f"{self.method}: {text}...")
        else:
            print(f"  {self.method}: {text}...", flush=True)

    def update(self, k, f):
        if self.bar is not None:
            if self.shown == 0:
                self.bar.set_description_str(self.method, refresh=False)
            if self.shown == 0 and k > 0:
                # the first steps carry the one-off compilation or cache
                # loads: the bar's clock, rate and ETA start after them
                self.bar.reset(total=self.total)
                self.bar.initial = self.bar.n = k
            else:
                self.bar.update(k - self.shown)
            self.bar.set_postfix(f=f"{f:.6g}", refresh=False)
        elif k >= self.next_line or k == self.total:
            print(f"  {self.method}: step {k:>9d}/{self.total}  f = {f:.6g}", flush=True)
            self.next_line = k + self.line_every
        self.shown = k

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------ iteration --

# the events ``iterate`` returns, besides the statuses above
CALLBACK_EVENT = -1
BAD_GRADIENT = -2
NEED_EPOCH = -3
BAD_INDEX = -4
BAD_ROWS = -5
BAD_OUT = -6
SLICE = -7
INTERRUPTED_EVALUATION = -8
GTOL, FTOL, XTOL = 10, 11, 12

#: What a run reads and does not rebind: the engine's arrays (``G`` holds
#: the current and the previous gradient, used in turn), the objective's
#: arguments and the minibatch buffers, the schedule's parameters ``SP``,
#: the smoothed tests' state ``TS`` and ``RB``, the history ``H``, the
#: iterate average ``A`` with its scalars ``AS``, the sparse coalescing
#: scratch ``mark``/``where``, catch-up's ``last``, the run's constants
#: (``aux_at``: where in ``P`` the rule keeps its step count), the step
#: count at which ``iterate`` returns the SLICE event (the compiled loop runs
#: in slices: :class:`numadam._compiled.Slices`), and the stop flag ``stop``
#: (one element, set by Ctrl-C: :class:`numadam._interrupt.Guard`), which
#: ends the iteration with the SLICE event at its next safe point.
Run = namedtuple("Run", (
    "x", "xv", "G", "W", "P", "args", "bufs", "perm", "SP", "TS", "RB", "H", "A", "AS",
    "mark", "where", "last", "gtol", "ftol", "xtol", "maxiter", "every", "smoothing",
    "patience", "aux_at", "slice_end", "stop"))

#: ``slice_end`` of a run that is not sliced.
NO_SLICES = 2 ** 62

#: Where a run stands between two calls of ``iterate``: the step count, the
#: row of ``G`` holding the current gradient, the evaluations made, the
#: position in the epoch's permutation, the next callback step, the
#: coalescing stamp, the current and previous ``f``, and the current and
#: previous sparse gradients ``(gi, gv)``, ``(pi, pv)`` and the touched
#: values of x before the last step, ``(bi, bx)``.
State = namedtuple("State", (
    "k", "cur", "evaluations", "pos", "next_callback", "stamp", "f", "fprev",
    "gi", "gv", "pi", "pv", "bi", "bx"))

#: What ``iterate`` is specialised on besides the hooks: the rule and its
#: flags (read by :func:`rule_kernels` only), whether dense kernels run in
#: parallel (True, False, or None: as measured, in the Python loop), the
#: number of touched values from which sparse kernels do (-1: never), and the
#: run's switches.
Switches = namedtuple("Switches", (
    "rule_name", "F", "parallel", "sparse_from", "bounded", "batched", "sparse_mode",
    "plain", "history", "averaging"))


def parallel_from(n, parallel, rule_name, dtype):
    """From how many touched values the sparse kernels of a run of ``n``
    coordinates use their parallel form, for the engine's ``parallel``
    (:func:`numadam._kernels.cpu.parallel_mode`): 0 always (True), -1 never
    (False), else (None, measured) the rule's threshold
    (:func:`numadam._kernels.cpu.use_parallel`)."""
    if parallel is not None:
        return 0 if parallel else -1
    f64, f32 = get_rule(rule_name).parallel_threshold
    least = f32 if np.dtype(dtype) == np.float32 else f64
    return least if n >= least else -1


def rule_kernels(sw):
    """The rule's step kernels for ``sw``: ``(step,)`` for dense steps,
    ``(serial, parallel)`` lazy or catch-up ones for sparse runs (the
    parallel one from ``sw.sparse_from`` touched values; the serial one is
    parallel too when ``sw.sparse_from`` is 0)."""
    if sw.sparse_mode in ("lazy", "catchup"):
        make = sk.lazy_kernel if sw.sparse_mode == "lazy" else sk.catchup_kernel
        return tuple(make(sw.rule_name, sw.F, p, sw.bounded, True)
                     for p in (sw.sparse_from == 0, True))
    return (cpu.step_kernel(sw.rule_name, sw.F, sw.parallel),)


def fixed_passes(sw):
    """The ``passes`` hook of :func:`make_iterate` for ``sw``: dense passes
    parallel with ``sw.parallel``, sparse ones from ``sw.sparse_from``
    touched values (always with 0)."""
    def passes(make, large):
        if sw.sparse_mode in ("lazy", "catchup"):
            return make(large or sw.sparse_from == 0)
        return make(sw.parallel)
    return passes


def following_passes(kernels):
    """The ``passes`` hook of the Python loop: each pass runs as the step
    kernel it goes with runs (``kernels``: :func:`python_kernels`), serial,
    forced parallel, or following a measured choice
    (:mod:`numadam._kernels.threads`)."""
    def passes(make, large):
        return threads.choose_like(kernels[-1] if large else kernels[0], make)
    return passes


def python_kernels(sw, engine):
    """The rule's step kernels of the Python loop, as :func:`rule_kernels`
    gives them, run as ``engine.mode`` says
    (:func:`numadam._kernels.threads.choose`)."""
    if sw.sparse_mode in ("lazy", "catchup"):
        return engine.sparse_kernels(sw.sparse_mode, True)
    return (engine.dense_kernel(),)


def constant_kernels(kernels):
    """A ``kernels`` hook of :func:`make_iterate` that returns ``kernels``
    (:func:`rule_kernels`), closure constants."""
    if len(kernels) == 1:
        step = kernels[0]

        def dense(fns):
            return (step,)
        return dense
    serial, wide = kernels

    def sparse(fns):
        return (serial, wide)
    return sparse


def make_iterate(sw, evaluate, batch, rate, kernels, observe=None, passes=None,
                 polled=False):
    """``iterate(run, state, resume, fns) -> (event, state)``: steps from
    ``state`` until an event (a status of the run, or one of the events
    above).

    ``resume`` is 0 to draw and evaluate the next iterate first, 1 to go on
    with the iterate already evaluated, 2 to go on after its callback.
    ``fns`` is handed to ``evaluate`` and ``kernels`` as it is: in the
    shared compiled loop, the addresses of ``fun``, ``jac`` and the rule's
    step kernels, arguments rather than closure constants, so that one
    compiled loop serves every objective and every rule of the same
    signature; None in the Python loop. The hooks are

    - ``evaluate``: the objective at ``xv`` with the arguments ``call``,
      ``evaluate(fns, xv, call, G, nxt, mark, where, stamp) -> (event, f,
      stamp)`` with the gradient written into row ``nxt`` of ``G``, or in the
      lazy and catch-up sparse modes ``evaluate(fns, xv, call, mark, where,
      stamp) -> (event, f, indices, values, stamp)`` with the gradient
      coalesced (``mark``, ``where`` and ``stamp`` are the coalescing
      scratch); event 0, or one of the BAD_ events for a bad return value
      (with BAD_INDEX, the indices as returned);
    - ``batch(args, bufs, perm, pos, m)``: the next ``m`` rows of the sliced
      arguments gathered into their buffers, and the call's arguments;
    - ``rate(SP, k)``: the learning rate of the update after ``k`` updates;
    - ``observe(SP, loss)``: after each update, the loss at the iterate it
      started from (smoothed in minibatch runs), for a schedule that watches
      it (:func:`numadam.schedules.reduce_on_plateau`; None: nothing);
    - ``kernels(fns)``: the rule's step kernels, as :func:`rule_kernels`
      gives them (closure constants, or first-class functions found from
      ``fns``, so that one compiled loop serves every rule);
    - ``passes(make, large)``: the kernel ``make(parallel)`` builds for the
      loop's other passes over the arrays (gradient norm, change, restore,
      average), run as the dense step (or, ``large``, the sparse step of
      many touched values) runs: :func:`fixed_passes` (closure constants)
      by default, :func:`following_passes` in the Python loop.

    With ``polled`` the iteration reads the stop flag ``run.stop`` at each
    step (the Python loop, between whose steps Python runs the SIGINT
    handler that sets it) and returns the SLICE event when it is set; the
    compiled loop hears of it between slices.

    Written in the subset of Python that Numba compiles: plain Python runs
    it with Python hooks, ``numba.njit`` compiles it with compiled ones.
    """
    sparse_mode = sw.sparse_mode
    is_sparse = sparse_mode in ("lazy", "catchup")
    lazy = sparse_mode == "lazy"
    batched, plain, history, averaging = sw.batched, sw.plain, sw.history, sw.averaging
    smoothed_tests = st.smoothed_tests
    average_weight = st.average_weight
    isfinite = math.isfinite
    if passes is None:
        passes = fixed_passes(sw)
    gnorm = passes(cpu.grad_norm_kernel, True)
    # sparse kernels: serial, and parallel from sw.sparse_from touched values
    # (both compiled in only when the run can reach that size)
    sparse_from = sw.sparse_from
    both = sparse_from > 0
    if is_sparse:
        schange, schange_p = (passes(sk.change_kernel, p) for p in (False, True))
        srestore, srestore_p = (passes(sk.restore_kernel, p) for p in (False, True))
        snorm, snorm_p = (passes(cpu.grad_norm_kernel, p) for p in (False, True))
        change = None
    else:
        schange = schange_p = srestore = srestore_p = None
        snorm = snorm_p = None
        change = passes(cpu.change_kernel, True)
    average = passes(cpu.average_kernel, True) if averaging else None
    observing = observe is not None
    if not observing:
        observe = _no_observe

    def iterate(run, state, resume, fns):
        x = run.x
        xv = run.xv
        G = run.G
        W = run.W
        args = run.args
        bufs = run.bufs
        perm = run.perm
        SP = run.SP
        H = run.H
        A = run.A
        AS = run.AS
        mark = run.mark
        where = run.where
        last = run.last
        gtol = run.gtol
        ftol = run.ftol
        xtol = run.xtol
        P = run.P
        maxiter = run.maxiter
        slice_end = run.slice_end
        xprev = W[0]
        aux_at = run.aux_at
        steps = kernels(fns)
        step = steps[0]
        step_p = steps[-1]
        k = state.k
        cur = state.cur
        evaluations = state.evaluations
        pos = state.pos
        next_callback = state.next_callback
        stamp = state.stamp
        f = state.f
        fprev = state.fprev
        gi = state.gi
        gv = state.gv
        pi = state.pi
        pv = state.pv
        bi = state.bi
        bx = state.bx
        stop = run.stop
        event = 0
        while True:
            if resume == 0:
                # a slice ends here, and a stop asked for (Ctrl-C): x_k has
                # had its step, not yet its evaluation
                if k >= slice_end or (polled and stop[0] != 0):
                    event = SLICE
                    break
                if batched:
                    if pos >= perm.shape[0]:
                        event = NEED_EPOCH
                        break
                    m = min(perm.shape[0] - pos, bufs[0].shape[0])
                    call = batch(args, bufs, perm, pos, m)
                    pos += m
                else:
                    call = args
                nxt = 1 - cur
                if is_sparse:
                    bad, fn, ni, nv, stamp = evaluate(fns, xv, call, mark, where, stamp)
                    if bad != 0:
                        event = bad
                        gi = ni      # BAD_INDEX: the indices as returned
                        break
                    pi = gi
                    pv = gv
                    gi = ni
                    gv = nv
                else:
                    bad, fn, stamp = evaluate(fns, xv, call, G, nxt, mark, where, stamp)
                    if bad != 0:
                        event = bad
                        break
                evaluations += 1
                cur = nxt
                fprev = f
                f = fn
            if is_sparse:
                if both and gv.size >= sparse_from:
                    gmax = snorm_p(gv.reshape(-1))
                else:
                    gmax = snorm(gv.reshape(-1))
            else:
                g = G[cur]
                gmax = gnorm(g)
            if gmax != gmax or not isfinite(f):
                if is_sparse and k > 0:
                    if both and bx.size >= sparse_from:
                        srestore_p(x, bi, bx)
                    else:
                        srestore(x, bi, bx)
                event = NONFINITE
                break
            if resume < 2:
                if history:
                    H[0, k] = f
                    H[1, k] = gmax
                if k == next_callback:
                    event = CALLBACK_EVENT
                    next_callback += run.every
                    break
            resume = 0
            if plain:
                if gtol > 0.0 and gmax <= gtol:
                    event = GTOL
                    break
                if k > 0 and ftol > 0.0 and abs(fprev - f) <= ftol * max(
                        abs(fprev), abs(f), 1.0):
                    event = FTOL
                    break
            else:
                hit = smoothed_tests(run.TS, run.RB, k, f, gmax, run.smoothing,
                                     run.patience, gtol, ftol)
                if hit == st.GTOL_HIT:
                    event = GTOL
                    break
                if hit == st.FTOL_HIT:
                    event = FTOL
                    break
            if k > 0 and xtol > 0.0:
                if is_sparse:
                    if both and bx.size >= sparse_from:
                        d, sx = schange_p(x, bi, bx)
                    else:
                        d, sx = schange(x, bi, bx)
                else:
                    d, sx = change(x, xprev)
                if d <= xtol * max(1.0, sx):
                    event = XTOL
                    break
            if k >= maxiter:
                event = MAXITER
                break
            t = P[aux_at] + 1.0               # this update's number
            lr = rate(SP, t - 1.0)            # after t - 1 updates
            if history:
                H[2, k] = lr
            if is_sparse:
                bi = gi
                bx = np.empty_like(gv)
                if both and gv.size >= sparse_from:
                    if lazy:
                        step_p(x, gi, gv, W, P, lr, bx)
                    else:
                        step_p(x, gi, gv, W, P, lr, bx, last)
                elif lazy:
                    step(x, gi, gv, W, P, lr, bx)
                else:
                    step(x, gi, gv, W, P, lr, bx, last)
            else:
                step(x, g, W, P, lr)
            if averaging:
                w = average_weight(AS, t)
                if w != 0.0:
                    average(A, x, w)
            if observing:
                observe(SP, f if plain else run.RB[k % run.RB.shape[0]])
            k += 1
        return event, State(k, cur, evaluations, pos, next_callback, stamp, f, fprev,
                            gi, gv, pi, pv, bi, bx)

    return iterate


# -------------------------------------------------------- Python hooks --

def _no_observe(SP, loss):  # pragma: no cover - never called
    return None


def batch_source(nargs, positions, arrays=None):
    """The source of ``batch(args, bufs, perm, pos, m)`` for ``nargs``
    arguments of which those at ``positions`` are sliced, with the gather
    kernels named ``gather0, gather1, ...``: a tuple of mixed types is built
    element by element, which Numba compiles and Python runs alike. Where
    ``arrays`` (one bool per position) is False, the argument is no NumPy
    array and its gather leaves the batch in ``bufs[j][0]`` (Python only)."""
    arrays = arrays or [True] * len(positions)
    lines = ["def batch(args, bufs, perm, pos, m):"]
    for j, p in enumerate(positions):
        lines.append(f"    gather{j}(args[{p}], bufs[{j}], perm, pos, m)")
    items = [(f"bufs[{positions.index(i)}][:m]" if arrays[positions.index(i)]
              else f"bufs[{positions.index(i)}][0]") if i in positions else f"args[{i}]"
             for i in range(nargs)]
    lines.append(f"    return ({', '.join(items)},)")
    return "\n".join(lines)


def batch_function(nargs, positions, gathers, arrays=None):
    """``batch`` of :func:`batch_source`, as a Python function."""
    namespace = {f"gather{j}": g for j, g in enumerate(gathers)}
    exec(compile(batch_source(nargs, positions, arrays), "<numadam minibatch>", "exec"),
         namespace)
    return namespace["batch"]


def python_evaluate(objective, jac_out, snapshot=None, rng=None, guard=None):
    """The ``evaluate`` hook over the objective's checked evaluator (which
    it closes over: ``fns`` is not used). With ``snapshot`` (a one-element
    list), the state of ``rng`` (the numadam.RNG generator) is kept there
    before each evaluation. With ``guard`` (a
    :class:`~numadam._interrupt.Guard` that holds SIGINT), the evaluation
    runs as the user's code: interrupted, it returns the
    INTERRUPTED_EVALUATION event."""
    ev = objective.evaluator(jac_out)
    if snapshot is not None:
        inner = ev

        def ev(x, out=None, call_args=None):
            snapshot[0] = rng.bit_generator.state
            return inner(x, out, call_args)
    if guard is not None:
        ev = guard.evaluator(ev)
    if objective.sparse in ("lazy", "catchup"):
        empty = (np.zeros(0, np.int64), np.zeros((0, 1)))

        def evaluate(fns, xv, call, mark, where, stamp):
            f, g = ev(xv, None, call)
            if f is None:
                return INTERRUPTED_EVALUATION, math.nan, empty[0], empty[1], stamp
            return 0, f, g[0], g[1], stamp
    elif jac_out:
        def evaluate(fns, xv, call, G, nxt, mark, where, stamp):
            f, _ = ev(xv, G[nxt], call)
            if f is None:
                return INTERRUPTED_EVALUATION, math.nan, stamp
            return 0, f, stamp
    else:
        def evaluate(fns, xv, call, G, nxt, mark, where, stamp):
            f, g = ev(xv, None, call)
            if f is None:
                return INTERRUPTED_EVALUATION, math.nan, stamp
            G[nxt] = g
            return 0, f, stamp
    return evaluate


def python_rate(schedule, learning_rate):
    """The ``rate`` hook: a constant, a numadam schedule (the function the
    compiled loop compiles), or a Python callable, validated."""
    if schedule is None:
        return lambda SP, k: learning_rate
    if isinstance(schedule, Schedule):
        return rate_function(schedule.kinds)

    def rate(SP, k):
        return check_rate(schedule(int(k)), "the learning_rate callable's value",
                          f" at update count {int(k)}")
    return rate


def python_loop(sw, engine, objective, control, setup, args):
    """``iterate`` run by Python, the gradient rows ``G``, the schedule
    parameters and ``fns`` (None: the hooks close over the objective), for
    :func:`run`.

    ``G`` is a list: a returned gradient is kept as it is, not copied (with
    ``jac_out``, two buffers the objective writes into in turn)."""
    batch = None
    if setup.batching is not None:
        b = setup.batching
        batch = batch_function(len(args), b.positions, b.gathers, b.is_array)
    rng = setup.objective_rng
    if rng is not None:
        # the generator's state before each evaluation, for the state's
        # stream (a continued run evaluates its first iterate again)
        setup.rng_snapshot = [rng.bit_generator.state]
    schedule = setup.schedule
    kernels = python_kernels(sw, engine)
    iterate = make_iterate(sw, python_evaluate(objective, control.jac_out,
                                               setup.rng_snapshot, rng, setup.guard),
                           batch,
                           python_rate(setup.schedule, engine.learning_rate),
                           constant_kernels(kernels),
                           observe_function(schedule.kinds)
                           if isinstance(schedule, Schedule) else None,
                           following_passes(kernels), polled=True)
    x = engine.x
    G = ([np.zeros_like(x), np.zeros_like(x)] if control.jac_out else [None, None])
    # the schedule's parameters, a fresh array: reduce_on_plateau keeps its
    # state there
    SP = (setup.schedule.params if isinstance(setup.schedule, Schedule)
          else np.zeros(0))

    def prepare(rs, state, resume):
        # the dense step and gradient norm kernels in the forms the run may
        # take, for their first arguments
        if objective.sparse in ("lazy", "catchup"):
            return []
        return ([(d, (x, x, engine.W, engine.P, 1.0))
                 for d in threads.dispatchers(kernels[0])] +
                [(cpu.grad_norm_kernel(par), (x,)) for par in {False, engine.mode is not False}])
    return iterate, G, SP, None, prepare


# ---------------------------------------------------------------- driver --

def run(engine, objective, control, callback, setup, loop=python_loop):
    """Drive ``engine`` from its current ``x`` until a test ends the run.

    ``loop(switches, engine, objective, control, setup, args) -> (iterate, G,
    SP, fns, prepare)`` gives the iteration: :func:`python_loop`, or the
    compiled one of :mod:`numadam._compiled`; ``prepare(run, state, resume)``
    lists the Numba functions the run calls first, with their arguments, to be
    loaded or compiled before the first step (a phase of its own in the
    progress bar). Returns a dict with x, fun, jac, nit, status,
    message, and the history records; x is the engine's own array, left at
    the last iterate.
    """
    x = engine.x
    n = x.shape[0]
    dtype = x.dtype
    maxiter = control.maxiter
    if isinstance(setup.schedule, Schedule) and maxiter > 0:
        # a schedule that grows without bound (an exponential with a rate
        # above 1) does so at its last update: one that overflows is refused
        # here (a Python callable is checked at every update)
        last = int(engine.aux[0]) + maxiter - 1
        with np.errstate(all="ignore"):
            value = setup.schedule(last)
        check_rate(value, "the learning_rate schedule's value",
                   f" at update count {last}")
    batching = setup.batching
    args = tuple(objective.args)
    sparse_mode = objective.sparse
    sw = Switches(engine.rule_name, engine.F, engine.mode,
                  parallel_from(n, engine.mode, engine.rule_name, dtype),
                  engine.bounded,
                  batching is not None, sparse_mode,
                  setup.smoothing == 0.0 and setup.patience == 1,
                  setup.history is not None, engine.A is not None)
    iterate, G, SP, fns, prepare = loop(sw, engine, objective, control, setup, args)
    RB = _buffer((setup.patience + 1,), "patience", setup.patience,
                 "the smoothed tests' window")
    by_epochs = control.epochs is not None
    H = (_buffer((3, maxiter + 1), "epochs" if by_epochs else "maxiter",
                 control.epochs if by_epochs else maxiter, "a history of every step")
         if setup.history else np.zeros((3, 0)))
    kind = callback_kind(callback)
    progress = Progress(maxiter, engine.method) if control.disp else None
    if kind is not None:
        every = control.callback_every
    elif progress is not None:
        every = progress.every
    else:
        every = 0
    TS = np.zeros(st.TS_SIZE)
    TS[st.TS_PROD] = 1.0
    A = engine.A if engine.A is not None else np.zeros(0, dtype)
    restore = setup.restore
    if batching is not None:
        bufs = batching.buffers
        if not batching.restored and restore is None:
            batching.new_epoch()
    else:
        bufs = (np.zeros(0),)
    guard = setup.guard if setup.guard is not None else Guard()
    jac_out = control.jac_out
    evaluate = objective.evaluator(jac_out)
    xv = x.view()
    xv.flags.writeable = False
    co = objective.coalescer
    if restore is not None:
        # a checkpoint's run, resumed where it was written
        rs, state, sparse = _checkpoint_run(
            restore, engine, objective, control, setup, G, SP, TS, RB, H, A, every,
            guard, maxiter, xv, args, bufs)
        return _drive(iterate, rs, state, 0, fns, prepare, engine, objective, control,
                      callback, setup, G, sparse, progress, kind, guard, evaluate, xv)

    # the first evaluation, with Python's checks whatever the loop, so that
    # a bad return value fails with a clear error before any step
    first_args = batching.next_batch() if batching is not None else None
    if jac_out:
        # NaN where the gradient goes: a function that writes nothing there
        # is caught here, not taken for a zero gradient (a "converged" x0)
        G[0].fill(np.nan)
    if setup.rng_snapshot is not None:
        setup.rng_snapshot[0] = setup.objective_rng.bit_generator.state
    try:
        done, fg = guard.call(evaluate, xv, G[0] if jac_out else None, first_args)
    except TypingError as exc:
        # a Numba objective that does not compile: named as the user's error
        raise first_evaluation_error(objective, first_args, exc) from exc
    if not done:
        # Ctrl-C before x0 was evaluated: nothing was done
        if progress is not None:
            progress.close()
        return dict(x=x, fun=math.nan, jac=np.full_like(x, np.nan), nit=0,
                    status=INTERRUPTED, message=interrupted_message(0, False),
                    H=H if setup.history else None, rows=0, sparse=None,
                    pos=batching.pos if batching is not None else 0, evaluated=False)
    f, g = fg
    if jac_out and G[0].size and np.isnan(G[0]).all():
        raise TypeError(untouched_message(objective.mode == "combined"))
    empty_idx = np.zeros(0, np.int64)
    empty_val = np.zeros((0, 1), dtype)
    gi = empty_idx
    gv = empty_val
    sparse = None
    mark = where = last = empty_idx
    if sparse_mode is not None:
        if co.r is None:
            # the first gradient was dense: the sparse ones that follow must
            # come in rows of one value
            co.r = 1
            co.mark = np.zeros(n, np.int64)
            co.where = np.zeros(n, np.int64)
        mark, where = co.mark, co.where
    if sparse_mode in ("lazy", "catchup"):
        gi, gv = g
        sparse = SparseSteps(engine, sparse_mode)
        sparse.r = co.r
        if sparse_mode == "catchup":
            sparse.last = last = np.full(n // co.r, int(engine.aux[0]), np.int64)
    elif not jac_out:
        G[0] = g
    rs = Run(x, xv, G, engine.W, engine.P, args, bufs,
             batching.perm if batching is not None else np.zeros(0, np.int64), SP, TS,
             RB, H, A, engine.AS, mark, where, last, control.gtol, control.ftol,
             control.xtol, maxiter, every, setup.smoothing, setup.patience,
             cpu.layout(engine.rule_name, engine.bounded, True)[1], NO_SLICES,
             guard.stop)
    state = State(0, 0, 1, batching.pos if batching is not None else 0,
                  every if every > 0 else -1, co.stamp if sparse_mode is not None else 0,
                  f, math.nan, gi, gv, empty_idx, empty_val, empty_idx, empty_val)
    # resume: 0 draws and evaluates the next iterate, 1 goes on with the
    # evaluated iterate k, 2 with iterate k after its callback
    return _drive(iterate, rs, state, 1, fns, prepare, engine, objective, control,
                  callback, setup, G, sparse, progress, kind, guard, evaluate, xv)


def _drive(iterate, rs, state, resume, fns, prepare, engine, objective, control,
           callback, setup, G, sparse, progress, kind, guard, evaluate, xv):
    """The loop of :func:`run` from ``state`` on: events served, Ctrl-C,
    checkpoints, and the result."""
    x = engine.x
    n = x.shape[0]
    maxiter = rs.maxiter
    batching = setup.batching
    sparse_mode = objective.sparse
    co = objective.coalescer
    k = state.k
    writer = None
    if control.checkpoint is not None:
        writer = Checkpointer(control.checkpoint, control.checkpoint_every, k)
        look_k, look_t = k, time.monotonic()
        rs = rs._replace(slice_end=writer.limit(k, 0.0))
    # compilation is a phase of its own, before the first step
    status = message = None
    missing = [(d, a) for d, a in prepare(rs, state, resume) if not preload.load(d, *a)]
    if missing:
        if progress is not None:
            progress.phase("compiling kernels")
        # Ctrl-C may end a long compilation: the run stops at x0, evaluated
        if not guard.call(_compile_all, missing)[0]:
            status = INTERRUPTED
    evaluated = True          # whether the iterate x_k was evaluated
    stopping = False          # Ctrl-C: the run ends at the iterate at hand
    event = None
    while status is None:
        if guard.stop[0]:
            # Ctrl-C: the iterate at hand, x_k, is evaluated and tested, and
            # the run ends there, as one given maxiter=k ends
            guard.stop[0] = 0
            if stopping:             # again, before that ended
                status, evaluated = INTERRUPTED, resume != 0
                break
            stopping = True
            rs = rs._replace(maxiter=k, slice_end=NO_SLICES)
        elif writer is not None and resume == 0 and not stopping:
            # the top of an iteration: x_k stepped, not yet evaluated
            now = time.monotonic()
            rate = (k - look_k) / (now - look_t) if now > look_t else 0.0
            look_k, look_t = k, now
            if writer.due(k):
                try:
                    write_checkpoint(writer.path, rs, state, engine, G, setup,
                                     objective, control, sparse)
                except OSError as exc:
                    # a full disk or a lost mount does not end the run
                    if not writer.failed:
                        warn_user(f"numadam could not write the checkpoint "
                                  f"{writer.path!r} at step {k} ({exc}); the run goes "
                                  "on and tries again at the next checkpoint",
                                  RuntimeWarning)
                    writer.failed = True
                writer.written(k)
            rs = rs._replace(slice_end=writer.limit(k, rate))
        event, state = iterate(rs, state, resume, fns)
        k = state.k
        if event == SLICE:
            # a checkpoint's look, or Ctrl-C: before x_k's evaluation
            resume = 0
            continue
        if event == INTERRUPTED_EVALUATION:
            status, evaluated = INTERRUPTED, False
            break
        if event == NEED_EPOCH:
            batching.new_epoch()
            rs = rs._replace(perm=batching.perm)
            state = state._replace(pos=0)
            resume = 0
            continue
        if event == CALLBACK_EVENT:
            if progress is not None:
                progress.update(k, state.f)
            grad = G[state.cur] if sparse is None else sparse.dense((state.gi, state.gv))
            if kind is not None and k % control.callback_every == 0:
                done, stopped = guard.call(call_callback, callback, kind, x, state.f,
                                           grad, k)
                if not done:
                    status = INTERRUPTED
                    break
                if stopped:
                    status, message = CALLBACK_STOP, MESSAGES[CALLBACK_STOP]
                    break
            resume = 2
            continue
        if event in (BAD_GRADIENT, BAD_INDEX, BAD_ROWS, BAD_OUT):
            objective.count(state.evaluations)
            _raise_bad_return(event, objective, n, k, state.gi)
        break
    if progress is not None:
        progress.update(k, state.f)
        progress.close()
    if sparse_mode is not None:
        co.stamp = state.stamp      # the stamps the loop used are taken
    evaluations = state.evaluations
    cur = state.cur
    f = state.f
    gi, gv = state.gi, state.gv
    if event == NONFINITE:
        what = "function value" if not math.isfinite(f) else "gradient"
        status, message = NONFINITE, nonfinite_message(k, what)
        if k > 0:
            if sparse is None:
                np.copyto(x, engine.xprev)
            f, cur = state.fprev, 1 - cur
            gi, gv = state.pi, state.pv
            if sparse is None and _aliased(G):
                # the objective returned one array, written anew each call:
                # the gradient at the restored x is evaluated again
                done, fg = guard.call(evaluate, xv, None, None)
                if done:
                    f, G[cur] = fg
                    evaluations += 1
                evaluated = done
    elif status == INTERRUPTED or (event == MAXITER and stopping and k < maxiter):
        status, message = INTERRUPTED, interrupted_message(k, evaluated)
    elif status is None:
        if event == MAXITER and control.epochs is not None:
            # the run was asked for a number of epochs, and did them
            n = control.epochs
            status = SUCCESS
            message = ("Optimization terminated successfully: the requested "
                       + ("epoch is done." if n == 1 else f"{n} epochs are done."))
        elif event == MAXITER and not tolerances_set(control):
            status, message = SUCCESS, steps_done_message(maxiter)
        elif event == MAXITER:
            status, message = MAXITER, MESSAGES[MAXITER]
        else:
            status = SUCCESS
            which = {GTOL: "gtol", FTOL: "ftol", XTOL: "xtol"}[event]
            message = tolerance_message(which, setup)
    objective.count(evaluations)
    rows = k + 1 if status != NONFINITE and evaluated else k
    if not evaluated:
        f, jac = math.nan, np.full_like(x, np.nan)
    elif sparse is None:
        jac = np.array(G[cur], copy=True)
    else:
        jac = sparse.dense((gi, gv))
    return dict(x=x, fun=f, jac=jac, nit=k, status=status, message=message,
                H=rs.H if setup.history else None, rows=rows, sparse=sparse,
                pos=state.pos, evaluated=evaluated)


# ---------------------------------------------------------- checkpoints --

def _describe_run(engine, objective, control, setup):
    """What a checkpoint's run must share with the run that resumes it."""
    b = setup.batching
    return dict(method=engine.method, rule=engine.rule_name, F=list(engine.F),
                n=int(engine.x.shape[0]), dtype=str(engine.x.dtype),
                bounded=bool(engine.bounded), sparse=objective.sparse,
                jac_out=bool(control.jac_out), average=engine.A is not None,
                history=setup.history is not None,
                rows=None if b is None else [int(b.n), int(b.batch_size)],
                draws=setup.objective_rng is not None)


def write_checkpoint(path, rs, state, engine, G, setup, objective, control, sparse):
    """Write the run at the top of an iteration (:mod:`numadam._checkpoint`)."""
    k = state.k
    arrays = dict(x=rs.x, W=rs.W, P=rs.P, SP=rs.SP, TS=rs.TS, RB=rs.RB)
    for i in (0, 1):
        if G[i] is not None:
            arrays[f"G{i}"] = np.asarray(G[i])
    if setup.history is not None:
        arrays["H"] = rs.H[:, :k]
    if engine.A is not None:
        arrays["A"], arrays["AS"] = rs.A, rs.AS
    if sparse is not None:
        arrays.update(gi=state.gi, gv=state.gv, pi=state.pi, pv=state.pv, bi=state.bi,
                      bx=state.bx)
        if objective.sparse == "catchup":
            arrays["last"] = rs.last
    meta = dict(format=_checkpoint.FORMAT, run=_describe_run(engine, objective, control,
                                                             setup),
                k=k, cur=state.cur, evaluations=state.evaluations, pos=state.pos,
                next_callback=state.next_callback, stamp=state.stamp, f=state.f,
                fprev=state.fprev, maxiter=rs.maxiter, options=setup.options_given[0],
                missing=setup.options_given[1])
    if setup.batching is not None:
        arrays["perm"] = rs.perm
        meta["batch_rng"] = setup.batching.rng.bit_generator.state
    if setup.objective_rng is not None:
        meta["objective_rng"] = setup.objective_rng.bit_generator.state
        meta["rng_snapshot"] = setup.rng_snapshot[0] if setup.rng_snapshot else None
    if objective.sparse is not None:
        meta["r"] = objective.coalescer.r
    _checkpoint.write(path, arrays, meta)


def _checkpoint_run(restore, engine, objective, control, setup, G, SP, TS, RB, H, A,
                    every, guard, maxiter, xv, args, bufs):
    """``(run, state, sparse)``: the run a checkpoint holds, in this
    run's arrays, after checking that it is the same kind of run."""
    arrays, meta = restore
    here = _describe_run(engine, objective, control, setup)
    there = meta["run"]
    differ = [key for key in here if here[key] != there.get(key)]
    if differ:
        key = differ[0]
        raise ValueError(f"the checkpoint holds a run with {key}={there.get(key)!r}, "
                         f"this run has {key}={here[key]!r}: resume it with the same "
                         "method, options, x0 size and dtype, data and bounds")
    k = int(meta["k"])
    if k > maxiter:
        raise ValueError(f"the checkpoint's run took {k} steps, more than this run's "
                         f"maxiter={maxiter}")
    # what this run's options set must be what the checkpoint's run had: the
    # hyperparameters (with clip_norm and maximize) and the bounds
    first, h, _ = cpu.layout(engine.rule_name, engine.bounded, True)
    at = cpu.gradient_block(engine.rule_name)[0]
    mine = np.r_[engine.P[:h], engine.P[at + cpu.G_CLIP], engine.P[at + cpu.G_SIGN]]
    theirs = arrays["P"]
    if theirs.shape != engine.P.shape or not np.array_equal(
            mine, np.r_[theirs[:h], theirs[at + cpu.G_CLIP], theirs[at + cpu.G_SIGN]]):
        raise ValueError("the checkpoint's run had other hyperparameters (betas, "
                         "eps, weight decay, clip_norm, maximize, ...): a resume "
                         "continues that run with its own (only the learning rate "
                         "may change)")
    if arrays["W"].shape != engine.W.shape or not np.array_equal(
            arrays["W"][1:first], engine.W[1:first]):
        raise ValueError("the checkpoint's run had other bounds: resume it with the "
                         "bounds it was given")
    for name, target in (("x", engine.x), ("W", engine.W), ("P", engine.P), ("SP", SP),
                         ("TS", TS), ("RB", RB)):
        if arrays[name].shape != target.shape:
            raise ValueError(f"the checkpoint's {name} has the shape "
                             f"{arrays[name].shape}, this run's {target.shape}")
        np.copyto(target, arrays[name])
    if "H" in arrays:
        H[:, :k] = arrays["H"]
    if engine.A is not None:
        np.copyto(A, arrays["A"])
        np.copyto(engine.AS, arrays["AS"])
    for i in (0, 1):
        if f"G{i}" not in arrays:
            continue
        if isinstance(G, list) and not control.jac_out:
            G[i] = arrays[f"G{i}"]
        else:
            G[i][...] = arrays[f"G{i}"]
    b = setup.batching
    perm = np.zeros(0, np.int64)
    if b is not None:
        b.perm = perm = arrays["perm"].astype(np.int64)
        b.pos = int(meta["pos"])
        b.rng.bit_generator.state = meta["batch_rng"]
    if setup.objective_rng is not None:
        setup.objective_rng.bit_generator.state = meta["objective_rng"]
        if setup.rng_snapshot is not None:
            setup.rng_snapshot[0] = meta["rng_snapshot"]
    empty_idx = np.zeros(0, np.int64)
    empty_val = np.zeros((0, 1), engine.x.dtype)
    mark = where = last = empty_idx
    sparse = None
    co = objective.coalescer
    if objective.sparse is not None:
        co.r = int(meta["r"])
        co.stamp = int(meta["stamp"])
        co.mark = np.zeros(engine.x.shape[0] // co.r, np.int64)
        co.where = np.zeros(engine.x.shape[0] // co.r, np.int64)
        mark, where = co.mark, co.where
    sp = {}
    if objective.sparse in ("lazy", "catchup"):
        sparse = SparseSteps(engine, objective.sparse)
        sparse.r = co.r
        sp = {name: arrays[name] for name in ("gi", "gv", "pi", "pv", "bi", "bx")}
        if objective.sparse == "catchup":
            sparse.last = last = arrays["last"].astype(np.int64)
    rs = Run(engine.x, xv, G, engine.W, engine.P, args, bufs, perm, SP,
             TS, RB, H, A, engine.AS, mark, where, last, control.gtol, control.ftol,
             control.xtol, maxiter, every, setup.smoothing, setup.patience,
             cpu.layout(engine.rule_name, engine.bounded, True)[1], NO_SLICES,
             guard.stop)
    state = State(k, int(meta["cur"]), int(meta["evaluations"]), int(meta["pos"]),
                  int(meta["next_callback"]), int(meta["stamp"]), float(meta["f"]),
                  float(meta["fprev"]), sp.get("gi", empty_idx), sp.get("gv", empty_val),
                  sp.get("pi", empty_idx), sp.get("pv", empty_val),
                  sp.get("bi", empty_idx), sp.get("bx", empty_val))
    return rs, state, sparse


def _compile_all(missing):
    for d, a in missing:
        preload.compile_for(d, *a)


def _buffer(shape, option, value, what):
    """A float64 buffer of ``shape`` for a run, or a MemoryError that names
    the option that asked for it (before anything has moved)."""
    try:
        return np.zeros(shape)
    except (MemoryError, ValueError):
        gib = math.prod(shape) * 8 / 2 ** 30
        raise MemoryError(f"option {option}={value!r} needs {what}: {gib:.3g} GiB of "
                          "float64, more than can be allocated; give a smaller "
                          f"{option}") from None


def _aliased(G):
    """Whether the two gradient rows share memory (a Python objective that
    returns one buffer, written anew each call)."""
    a, b = G[0], G[1]
    return a is b or (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and
                      np.may_share_memory(a, b))


def _raise_bad_return(event, objective, n, k, idx):
    """The error of a bad return value the compiled evaluation found."""
    if event == BAD_INDEX:
        r = objective.coalescer.r
        bad = int(idx[(idx < 0) | (idx >= n // r)][0])
        what = (f"row index {bad} out of range for {n // r} rows of {r}"
                if r > 1 else f"index {bad} out of range for x0 of size {n}")
        raise IndexError(f"jac returned a sparse gradient with {what}")
    if event == BAD_ROWS:
        raise ValueError("the sparse gradients of a run must keep their row "
                         f"length: {objective.coalescer.r} before, another now")
    if event == BAD_OUT:
        raise TypeError(out_message("jac", f"another array (after step {k})"))
    raise ValueError(f"jac must return an array of shape {(n,)} (the shape "
                     f"of x0), got another length after step {k}")
