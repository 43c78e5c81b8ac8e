"""The whole loop compiled, for objectives that are Numba functions.

When ``fun`` and a callable ``jac`` are ``@njit`` dispatchers (or ``jac=True``
with an ``@njit`` ``fun`` returning ``(f, g)``), :func:`run` drives one
compiled function that draws minibatches, evaluates the objective, applies
the termination tests and updates, with no Python per step. It follows
:mod:`numadam._loop` statement for statement and calls the very kernels the
Python-driven loop calls (the step, the gradient norm, the xtol change, the
iterate average: :mod:`numadam._kernels.cpu` and ``.sparse``) and the same
schedule and termination functions, so its results are bitwise those of the
Python-driven loop.

The compiled function returns to Python only when the run ends, when an
epoch's permutation is used up (the next one is drawn from the run's NumPy
generator, as in the Python loop), and, with a callback or a progress bar,
every ``callback_every`` steps: the callback sees the iterate after the
non-finite check and before the termination tests, as in the Python loop.

The first evaluation, at ``x0``, runs from Python with the Python loop's
checks, so a bad return value fails with the same clear error before any
step. The user's functions receive the same argument types as in the Python
loop (a read-only view of x, C-contiguous batch views), so the compiled loop
reuses the specialisations that evaluation compiled (or loaded from the
user's own cache). Loops close over the user's functions, so they are
compiled once per process and per (objective, method, switches) and kept in
memory; Numba's disk cache cannot key them. The kernels they call are
compiled (or loaded from the disk cache) once per method and switches, for
every objective: a new objective compiles only its own loop, which holds no
element loop of its own.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, types
from numba.core.dispatcher import Dispatcher
from numba.core.errors import TypingError
from numba.extending import overload

from . import _loop
from . import _stochastic as st
from ._engine import SparseSteps
from ._kernels import cpu
from .schedules import Schedule, constant, rate_function

# events returned by the compiled loop besides the statuses of _loop
CALLBACK_EVENT = -1
BAD_GRADIENT = -2
NEED_EPOCH = -3
BAD_INDEX = -4
BAD_ROWS = -5
GTOL, FTOL, XTOL = 10, 11, 12
SORTED_UNIQUE = -(2 ** 62)    # _sparse._coalesce: nothing to do

# the integer state IS: step, gradient row, evaluations, position in the
# epoch's permutation, next callback step, coalescing stamp, bad index
I_K, I_CUR, I_EVALS, I_POS, I_NEXT_CB, I_STAMP, I_BAD, I_SIZE = range(8)
# the float state FS: f, previous f
F_F, F_FPREV, F_SIZE = range(3)


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


@functools.lru_cache(maxsize=64)
def _batch_function(nargs, positions, gathers):
    """``batch(args, bufs, perm, pos, m)``: gather the next ``m`` rows of the
    sliced arguments into their buffers (with the kernels of
    :func:`numadam._kernels.cpu.gather_kernel` that the Python loop uses) and
    return the call's arguments. Generated per (number of args, sliced
    positions): a tuple of mixed types is built element by element."""
    lines = ["def batch(args, bufs, perm, pos, m):"]
    for j, p in enumerate(positions):
        lines.append(f"    gather{j}(args[{p}], bufs[{j}], perm, pos, m)")
    items = [f"bufs[{positions.index(i)}][:m]" if i in positions else f"args[{i}]"
             for i in range(nargs)]
    lines.append(f"    return ({', '.join(items)},)")
    namespace = {f"gather{j}": g for j, g in enumerate(gathers)}
    exec(compile("\n".join(lines), "<numadam minibatch>", "exec"), namespace)
    return njit(error_model="numpy", nogil=True)(namespace["batch"])


# ------------------------------------------------------------- the loop --

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


# ------------------------------------------------------------- the loop --

@functools.lru_cache(maxsize=64)
def make_loop(fun, jac, mode, jac_out, rule_name, F, parallel, bounded, plain,
              batch_key, history, averaging, sparse_mode, rate_key):
    """Compile the loop for one objective and one run configuration.

    Dense gradients live in the rows of ``G`` (2, n), used in turn, so that
    the previous one survives the next evaluation; the current row is
    ``IS[I_CUR]``. With ``jac_out`` the user's function writes into that row,
    otherwise the returned gradient is copied there. No array is returned,
    swapped or re-bound per step, which keeps a step of a tiny problem to
    tens of nanoseconds.

    With ``sparse_mode`` ('lazy' or 'catchup') the user's jac returns
    ``(indices, values)``; the loop coalesces them and calls the sparse step
    kernels of :mod:`numadam._kernels.sparse`. The current and previous
    sparse gradients, and the touched values of x before the last step, go in
    and out of the compiled function (``gi, gv, pi, pv, bi, bx``).
    """
    from ._kernels import sparse as sk
    from ._sparse import _coalesce

    rate = rate_function(*rate_key)
    combined = mode == "combined"
    _, H_, A_ = cpu.layout(rule_name, bounded, True)
    batched = batch_key is not None
    batch = _batch_function(*batch_key) if batched else None
    smoothed_tests = st.smoothed_tests
    average_weight = st.average_weight
    # sparse gradients: read as (indices, values) and coalesced; 'dense'
    # then scatters them into G and goes on as with a dense gradient
    reads_sparse = sparse_mode is not None
    is_sparse = sparse_mode in ("lazy", "catchup")
    lazy = sparse_mode == "lazy"
    densify = sk.densify_kernel(parallel) if sparse_mode == "dense" else None
    # the kernels of the Python-driven loop and numadam.Optimizer, called
    # from here: each compiled once (and cached on disk) whatever the
    # objective, the loop itself holds no element loop
    gnorm = cpu.grad_norm_kernel(parallel)
    if is_sparse:
        make = sk.lazy_kernel if lazy else sk.catchup_kernel
        sstep = make(rule_name, F, parallel, bounded, True)
        schange = sk.change_kernel(parallel)
        srestore = sk.restore_kernel(parallel)
        step = change = average = None
    else:
        sstep = schange = srestore = None
        step = cpu.step_kernel(rule_name, F, parallel)
        change = cpu.change_kernel(parallel)
        average = cpu.average_kernel(parallel) if averaging else None

    @njit(error_model="numpy", nogil=True)
    def run(x, xv, G, W, P, args, bufs, perm, SP, TS, RB, H, A, AS, IS, FS, tol,
            maxiter, every, s, patience, resume, mark, where, last, gi, gv, pi, pv,
            bi, bx):
        # resume: 0 draw and evaluate, 1 iterate k evaluated, 2 and called back
        n = x.shape[0]
        xprev = W[0]
        aux = P[H_:H_ + A_]
        gtol, ftol, xtol = tol[0], tol[1], tol[2]
        k = IS[I_K]
        cur = IS[I_CUR]
        evaluations = IS[I_EVALS]
        pos = IS[I_POS]
        next_callback = IS[I_NEXT_CB]
        stamp = IS[I_STAMP]
        f = FS[F_F]
        fprev = FS[F_FPREV]
        event = 0
        while True:
            if resume == 0:
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
                if reads_sparse:
                    if combined:
                        fn, sg = fun(xv, *call)
                    else:
                        fn = fun(xv, *call)
                        sg = jac(xv, *call)
                    ri, rv = _sparse_rows(sg, x)
                    n_rows = mark.shape[0]
                    if rv.shape[1] * n_rows != n:
                        event = BAD_ROWS
                        break
                    stamp += 1
                    ci = np.empty(ri.shape[0], np.int64)
                    cv = np.empty(rv.shape, x.dtype)
                    got = _coalesce(ri, rv, n_rows, mark, where, stamp, ci, cv)
                    if got == SORTED_UNIQUE:
                        ci = ri
                        cv = rv
                    elif got < 0:
                        IS[I_BAD] = ri[-1 - got]
                        event = BAD_INDEX
                        break
                    else:
                        ci = ci[:got]
                        cv = cv[:got]
                    if is_sparse:
                        pi = gi
                        pv = gv
                        gi = ci
                        gv = cv
                    else:
                        densify(ci, cv, G[nxt])
                elif combined:
                    if jac_out:
                        fn = fun(xv, *(call + (G[nxt],)))
                    else:
                        fn, gn = fun(xv, *call)
                        if not _store(G, nxt, gn):
                            event = BAD_GRADIENT
                            break
                else:
                    fn = fun(xv, *call)
                    if jac_out:
                        jac(xv, *(call + (G[nxt],)))
                    elif not _store(G, nxt, jac(xv, *call)):
                        event = BAD_GRADIENT
                        break
                evaluations += 1
                cur = nxt
                fprev = f
                f = _as_float(fn)
            if is_sparse:
                gmax = gnorm(gv.reshape(-1))
            else:
                g = G[cur]
                gmax = gnorm(g)
            if gmax != gmax or not math.isfinite(f):
                if is_sparse and k > 0:
                    srestore(x, bi, bx)
                event = _loop.NONFINITE
                break
            if resume < 2:
                if history:
                    H[0, k] = f
                    H[1, k] = gmax
                if k == next_callback:
                    event = CALLBACK_EVENT
                    next_callback += every
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
                hit = smoothed_tests(TS, RB, k, f, gmax, s, patience, gtol, ftol)
                if hit == st.GTOL_HIT:
                    event = GTOL
                    break
                if hit == st.FTOL_HIT:
                    event = FTOL
                    break
            if k > 0 and xtol > 0.0:
                if is_sparse:
                    d, sx = schange(x, bi, bx)
                else:
                    d, sx = change(x, xprev)
                if d <= xtol * max(1.0, sx):
                    event = XTOL
                    break
            if k >= maxiter:
                event = _loop.MAXITER
                break
            t = aux[0] + 1.0
            lr = rate(SP, t)
            if history:
                H[2, k] = lr
            if is_sparse:
                bi = gi
                bx = np.empty_like(gv)
                if lazy:
                    sstep(x, gi, gv, W, P, lr, bx)
                else:
                    sstep(x, gi, gv, W, P, lr, bx, last)
            else:
                step(x, g, W, P, lr)
            if averaging:
                w = average_weight(AS, t)
                if w != 0.0:
                    average(A, x, w)
            k += 1
        IS[I_K] = k
        IS[I_CUR] = cur
        IS[I_EVALS] = evaluations
        IS[I_POS] = pos
        IS[I_NEXT_CB] = next_callback
        IS[I_STAMP] = stamp
        FS[F_F] = f
        FS[F_FPREV] = fprev
        return event, gi, gv, pi, pv, bi, bx

    return run


def run(engine, objective, control, callback, setup):
    """The compiled counterpart of :func:`numadam._loop.run`."""
    x = engine.x
    n = x.shape[0]
    dtype = x.dtype
    jac_out = control.jac_out
    maxiter = control.maxiter
    batching = setup.batching
    args = tuple(objective.args)
    plain = setup.smoothing == 0.0 and setup.patience == 1
    batch_key = ((len(args), batching.positions, batching.gathers)
                 if batching is not None else None)
    sparse_mode = objective.sparse
    schedule = setup.schedule if setup.schedule is not None else constant(
        engine.learning_rate)
    loop_fn = make_loop(objective.fun,
                        objective.jac if objective.mode == "callable" else None,
                        objective.mode, jac_out, engine.rule_name, engine.F,
                        engine.parallel, engine.bounded, plain, batch_key,
                        setup.history is not None, engine.A is not None, sparse_mode,
                        (schedule.kind, schedule.warmup_steps > 0.0))
    kind = _loop.callback_kind(callback)
    progress = _loop.Progress(maxiter, engine.method) if control.disp else None
    if kind is not None:
        every = control.callback_every
    elif progress is not None:
        every = progress.every
    else:
        every = 0
    SP = schedule.params
    TS = np.zeros(st.TS_SIZE)
    TS[st.TS_PROD] = 1.0
    RB = np.zeros(setup.patience + 1)
    H = np.zeros((3, maxiter + 1)) if setup.history else np.zeros((3, 0))
    A = engine.A if engine.A is not None else np.zeros(0, dtype)
    AS = engine.AS
    if batching is not None:
        bufs = batching.buffers
        batching.new_epoch()
        perm = batching.perm
    else:
        bufs = (np.zeros(0),)
        perm = np.zeros(0, np.int64)

    # the first evaluation from Python, with the Python loop's checks
    G = np.zeros((2, n), dtype)
    evaluate = objective.evaluator(jac_out)
    xv = x.view()
    xv.flags.writeable = False
    first_args = batching.next_batch() if batching is not None else None
    f, g = evaluate(xv, G[0], first_args)
    empty_idx = np.zeros(0, np.int64)
    empty_val = np.zeros((0, 1), dtype)
    gi = pi = bi = empty_idx
    gv = pv = bx = empty_val
    sparse = None
    mark = where = last = empty_idx
    co = objective.coalescer
    if sparse_mode is not None and co.r is None:
        # the first gradient was dense: the sparse ones that follow must come
        # in rows of one value
        co.r = 1
        co.mark = np.zeros(n, np.int64)
        co.where = np.zeros(n, np.int64)
    if sparse_mode in ("lazy", "catchup"):
        gi, gv = g
        mark, where = co.mark, co.where
        sparse = SparseSteps(engine, sparse_mode)
        sparse.r = co.r
        if sparse_mode == "catchup":
            sparse.last = last = np.full(n // co.r, int(engine.aux[0]), np.int64)
    else:
        if sparse_mode == "dense":
            mark, where = co.mark, co.where
        if not jac_out:
            G[0] = g
    IS = np.zeros(I_SIZE, np.int64)
    IS[I_EVALS] = 1
    IS[I_POS] = batching.pos if batching is not None else 0
    IS[I_NEXT_CB] = every if every > 0 else -1
    IS[I_STAMP] = co.stamp if sparse_mode is not None else 0
    FS = np.array([f, math.nan])
    tol = np.array([control.gtol, control.ftol, control.xtol])
    # resume: 0 draws and evaluates the next iterate, 1 goes on with the
    # evaluated iterate k, 2 with iterate k after its callback
    resume = 1
    status = message = None
    while True:
        event, gi, gv, pi, pv, bi, bx = loop_fn(
            x, xv, G, engine.W, engine.P, args, bufs, perm, SP, TS, RB, H, A, AS, IS,
            FS, tol, maxiter, every, setup.smoothing, setup.patience, resume, mark,
            where, last, gi, gv, pi, pv, bi, bx)
        k = int(IS[I_K])
        if event == NEED_EPOCH:
            batching.new_epoch()
            perm = batching.perm
            IS[I_POS] = 0
            resume = 0
            continue
        if event == CALLBACK_EVENT:
            if progress is not None:
                progress.update(k, FS[F_F])
            grad = G[IS[I_CUR]] if sparse is None else sparse.dense((gi, gv))
            if kind is not None and k % control.callback_every == 0 and \
                    _loop.call_callback(callback, kind, x, FS[F_F], grad, k):
                status, message = _loop.CALLBACK_STOP, _loop.MESSAGES[_loop.CALLBACK_STOP]
                break
            resume = 2
            continue
        if event in (BAD_GRADIENT, BAD_INDEX, BAD_ROWS):
            objective.count(int(IS[I_EVALS]))
            if event == BAD_INDEX:
                r = objective.coalescer.r
                bad = int(IS[I_BAD])
                what = (f"row index {bad} out of range for {n // r} rows of {r}"
                        if r > 1 else f"index {bad} out of range for x0 of size {n}")
                raise IndexError(f"jac returned a sparse gradient with {what}")
            if event == BAD_ROWS:
                raise ValueError("the sparse gradients of a run must keep their row "
                                 f"length: {objective.coalescer.r} before, another now")
            raise ValueError(f"jac must return an array of shape {(n,)} (the shape "
                             f"of x0), got another length after step {k}")
        break
    if progress is not None:
        progress.update(k, FS[F_F])
        progress.close()
    if sparse_mode is not None:
        co.stamp = int(IS[I_STAMP])      # the stamps the loop used are taken
    evaluations = int(IS[I_EVALS])
    cur = int(IS[I_CUR])
    f = float(FS[F_F])
    if sparse is not None:
        sparse.prev = (bi, bx)
    if event == _loop.NONFINITE:
        what = "function value" if not math.isfinite(f) else "gradient"
        status, message = _loop.NONFINITE, _loop.nonfinite_message(k, what)
        if k > 0:
            if sparse is None:
                np.copyto(x, engine.xprev)
            f, cur = float(FS[F_FPREV]), 1 - cur
            gi, gv = pi, pv
    elif status is None:
        if event == _loop.MAXITER:
            status, message = _loop.MAXITER, _loop.MESSAGES[_loop.MAXITER]
        else:
            status = _loop.SUCCESS
            which = {GTOL: "gtol", FTOL: "ftol", XTOL: "xtol"}[event]
            message = _loop.tolerance_message(which, setup)
    objective.count(evaluations)
    rows = k + 1 if status != _loop.NONFINITE else k
    jac = G[cur].copy() if sparse is None else sparse.dense((gi, gv))
    return dict(x=x, fun=f, jac=jac, nit=k, status=status, message=message,
                H=H if setup.history else None, rows=rows, sparse=sparse)
