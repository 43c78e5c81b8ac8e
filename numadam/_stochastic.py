"""Stochastic runs: minibatches, randomness, smoothed termination, iterate
averaging and history.

Everything that both loops compute per step is written once here as a
``register_jitable`` function: Python calls it as plain Python, the compiled
loop compiles it, and the two give the same numbers bitwise.
"""

from __future__ import annotations

import copy

import numpy as np
from numba.extending import register_jitable

from . import schedules

__all__ = ["RNG", "Batching", "RunSetup", "setup_run"]


class _RNGSentinel:
    """Stands in ``args`` for the run's random generator.

    Put ``numadam.RNG`` where ``fun`` (and ``jac``) expect a
    :class:`numpy.random.Generator`; minimize passes a generator seeded from
    the run's ``seed`` option (independent of the stream that draws
    minibatches), so the same seed gives bitwise the same run. Numba
    functions receive it too: ``@njit`` code can call its methods
    (``rng.normal()``, ``rng.random()``, ...).
    """

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self):
        return "numadam.RNG"

    def __reduce__(self):
        return (_RNGSentinel, ())


RNG = _RNGSentinel()


def restore_streams(rs, stream):
    """Continue the random streams of a run where ``stream`` (an
    :attr:`OptimizerState.stream`) left them: the minibatch permutation, the
    position of the batch the last evaluation drew and the generators'
    states. A different number of rows or batch size cannot continue the
    permutation: ValueError."""
    b = rs.batching
    if b is not None and stream.get("perm") is not None:
        if (stream["n"], stream["batch_size"]) != (b.n, b.batch_size):
            raise ValueError(f"options['state'] continues a minibatch run over "
                             f"{stream['n']} rows in batches of {stream['batch_size']}, "
                             f"this run has {b.n} rows in batches of {b.batch_size}: "
                             "give the same data and batch_size, or a state without "
                             "its stream (state.stream = None) to draw afresh")
        b.rng.bit_generator.state = stream["batch_rng"]
        b.perm = np.array(stream["perm"], dtype=np.int64)
        b.pos = int(stream["pos"])
        b.restored = True
    if rs.objective_rng is not None and stream.get("objective_rng") is not None:
        rs.objective_rng.bit_generator.state = stream["objective_rng"]


def streams_at(rs, pos):
    """The :attr:`OptimizerState.stream` of a run whose loop ended at
    position ``pos`` of its permutation: where the batch of the last
    evaluation starts, so that a continued run evaluates its first iterate
    on that batch, as the uninterrupted run took its next step from it."""
    stream = {}
    b = rs.batching
    if b is not None:
        start = ((pos - 1) // b.batch_size) * b.batch_size if pos > 0 else 0
        stream.update(n=b.n, batch_size=b.batch_size, perm=b.perm.copy(), pos=start,
                      batch_rng=copy.deepcopy(b.rng.bit_generator.state))
    if rs.objective_rng is not None and rs.rng_snapshot is not None:
        stream["objective_rng"] = copy.deepcopy(rs.rng_snapshot[0])
    return stream


def seed_streams(seed):
    """(batch generator, objective generator), independent, from ``seed`` (an
    integer, a SeedSequence, which is left as it is, or None)."""
    if isinstance(seed, np.random.SeedSequence):
        ss = np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key,
                                    pool_size=seed.pool_size,
                                    n_children_spawned=seed.n_children_spawned)
    else:
        ss = np.random.SeedSequence(seed)
    a, b = ss.spawn(2)
    return np.random.default_rng(a), np.random.default_rng(b)


# ------------------------------------------------------------ minibatches --

class Batching:
    """Which arguments are sliced, the buffers, and the epoch permutations.

    Sampling is by shuffled epochs without replacement: each epoch is a
    permutation of ``range(N)`` from the run's generator, cut into
    consecutive batches of ``batch_size`` rows; when ``batch_size`` does not
    divide ``N`` the last batch of an epoch is smaller.
    """

    def __init__(self, args, positions, batch_size, rng, parallel=None):
        self.positions = tuple(positions)
        args = tuple(_rows_form(a) if p in self.positions else a
                     for p, a in enumerate(args))
        self.args = args
        self.n = args[self.positions[0]].shape[0]
        self.batch_size = batch_size
        self.rng = rng
        self.batches_per_epoch = -(-self.n // batch_size)
        #: NumPy arrays are gathered into buffers by compiled kernels; other
        #: row-indexable arguments (scipy.sparse matrices) are indexed by
        #: the batch's rows, the batch left in the first entry of an object
        #: array (of the batch size, as the loops read it from any buffer)
        self.is_array = tuple(isinstance(args[p], np.ndarray) for p in self.positions)
        # a batch is never longer than the data (batch_size > n: whole epochs)
        rows = min(batch_size, self.n)
        self.buffers = tuple(np.empty((rows,) + args[p].shape[1:], args[p].dtype)
                             if a else np.empty(rows, object)
                             for p, a in zip(self.positions, self.is_array))
        from ._kernels import cpu, threads

        #: how the gathers run, as the option ``parallel`` says (True, False,
        #: or None: measured from a batch's size on, else serial)
        if parallel is None:
            big = sum(b.nbytes for b, a in zip(self.buffers, self.is_array)
                      if a) >= cpu.GATHER_PARALLEL_BYTES
            parallel = None if big and threads.usable_cpus() > 1 else False
        self.mode = parallel
        self.ndims = tuple(args[p].ndim if a else 0
                           for p, a in zip(self.positions, self.is_array))
        self.gathers = tuple(threads.choose(lambda par, d=d: cpu.gather_kernel(d, par),
                                            parallel) if a else take_rows
                             for d, a in zip(self.ndims, self.is_array))
        self.perm = np.empty(0, np.int64)
        self.pos = 0
        #: the permutation and position come from a state to continue
        self.restored = False

    def gather_kernels(self, parallel):
        """The Numba gather kernels, serial or ``parallel`` (the compiled
        loop's, whose sliced arguments are NumPy arrays)."""
        from ._kernels import cpu

        return tuple(cpu.gather_kernel(d, parallel) for d in self.ndims)

    def new_epoch(self):
        self.perm = self.rng.permutation(self.n).astype(np.int64)
        self.pos = 0

    def next_batch(self):
        """Gather the next batch into the buffers; return the call arguments."""
        if self.pos >= self.perm.shape[0]:
            self.new_epoch()
        pos = self.pos
        m = min(self.batch_size, self.perm.shape[0] - pos)
        self.pos = pos + m
        call = list(self.args)
        for p, buf, gather, a in zip(self.positions, self.buffers, self.gathers,
                                     self.is_array):
            gather(self.args[p], buf, self.perm, pos, m)
            call[p] = buf[:m] if a else buf[0]
        return tuple(call)


def take_rows(a, holder, perm, pos, m):
    """The minibatch of a row-indexable argument that is not a NumPy array:
    ``a[perm[pos:pos + m]]`` into ``holder[0]`` (the gather of
    :func:`numadam._kernels.cpu.gather_kernel` for such arguments; Python
    loop only)."""
    holder[0] = a[perm[pos:pos + m]]


def _is_rows(a):
    """Whether ``a`` can be sliced into minibatches: a NumPy array with
    ndim >= 1, a 2-D scipy.sparse matrix or array, or an object with a
    ``shape`` and ``__getitem__`` taking an array of row numbers."""
    if isinstance(a, np.ndarray):
        return a.ndim >= 1
    shape = getattr(a, "shape", None)
    return (isinstance(shape, tuple) and len(shape) >= 1 and hasattr(a, "__getitem__")
            and not isinstance(a, (str, bytes)))


def _rows_form(a):
    """``a`` in the form its rows are taken from: a scipy.sparse matrix or
    array in CSR (COO cannot be indexed and CSC takes a column walk per
    row: they are converted once, a copy), anything else as it is."""
    fmt = getattr(a, "format", None)
    if fmt in ("coo", "csc", "dok", "lil", "bsr", "dia") and hasattr(a, "tocsr"):
        return a.tocsr()
    return a


def _is_sparse(a):
    """Whether ``a`` is a 2-D scipy.sparse matrix or array."""
    import scipy.sparse as sp

    return sp.issparse(a) and a.ndim == 2


def choose_batched(args, batch_args):
    """The positions of the args to slice, validated."""
    if batch_args is None:
        positions = [i for i, a in enumerate(args)
                     if (isinstance(a, np.ndarray) and a.ndim >= 1) or _is_sparse(a)]
        if not positions:
            raise ValueError("options['batch_size'] needs array arguments to slice: "
                             "args holds no NumPy array with ndim >= 1 and no "
                             "scipy.sparse matrix")
    else:
        positions = list(batch_args)
        for p in positions:
            if p >= len(args):
                raise ValueError(f"options['batch_args'] holds position {p}, but args "
                                 f"has {len(args)} element(s)")
            if not _is_rows(args[p]):
                raise ValueError(f"options['batch_args'] names args[{p}], which is not a "
                                 "NumPy array with ndim >= 1, a scipy.sparse matrix or "
                                 "an array-like with a shape and rows to index")
    lengths = {p: args[p].shape[0] for p in positions}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"args[{p}] has {n}" for p, n in lengths.items())
        raise ValueError("the arrays sliced into minibatches must have the same length "
                         f"along axis 0: {desc} (use options['batch_args'] to choose "
                         "which args are sliced)")
    if next(iter(lengths.values())) == 0:
        raise ValueError("the arrays sliced into minibatches are empty")
    return positions


# ---------------------------------------- smoothed termination (shared) --

# layout of the termination state TS (float64)
TS_EMA_F, TS_EMA_G, TS_PROD, TS_GCOUNT, TS_SIZE = 0, 1, 2, 3, 4
GTOL_HIT, FTOL_HIT = 1, 2


@register_jitable
def smoothed_tests(TS, RB, k, f, gmax, s, patience, gtol, ftol):
    """Update the smoothed loss and gradient norm with iterate ``k``'s values
    and apply the gtol and ftol tests; return 0, GTOL_HIT or FTOL_HIT.

    The smoothed values are bias-corrected exponential moving averages with
    decay ``s`` (with ``s = 0`` they are ``f`` and ``gmax`` themselves).
    gtol holds when the smoothed gradient norm is <= gtol for ``patience``
    consecutive iterates; ftol when the smoothed loss changed by at most
    ``ftol * max(|old|, |new|, 1)`` over the last ``patience`` iterates. With
    ``s = 0`` and ``patience = 1`` these are the plain tests.
    """
    prod = TS[TS_PROD] * s
    if prod < 1e-300:
        prod = 0.0
    TS[TS_PROD] = prod
    ema_f = s * TS[TS_EMA_F] + (1.0 - s) * f
    ema_g = s * TS[TS_EMA_G] + (1.0 - s) * gmax
    TS[TS_EMA_F] = ema_f
    TS[TS_EMA_G] = ema_g
    corr = 1.0 - prod
    fs = ema_f / corr
    gs = ema_g / corr
    if gs <= gtol:
        TS[TS_GCOUNT] += 1.0
    else:
        TS[TS_GCOUNT] = 0.0
    L = RB.shape[0]
    RB[k % L] = fs
    if gtol > 0.0 and TS[TS_GCOUNT] >= patience:
        return GTOL_HIT
    if ftol > 0.0 and k >= patience:
        old = RB[(k - patience) % L]
        if abs(old - fs) <= ftol * max(abs(old), abs(fs), 1.0):
            return FTOL_HIT
    return 0


# ------------------------------------------------- averaging (shared) --

# layout of the averaging scalars AS (float64): kind, decay, start, count, prod
AVG_NONE, AVG_EMA, AVG_POLYAK = 0, 1, 2


@register_jitable
def average_weight(AS, t):
    """The weight of the new iterate in ``A += w * (x - A)`` after step ``t``,
    or 0 when the iterate is not averaged (before the start). Advances the
    count and the running power of the decay."""
    kind = int(AS[0])
    if kind == AVG_NONE or t <= AS[2]:
        return 0.0
    AS[3] += 1.0
    if kind == AVG_EMA:
        p = AS[4] * AS[1]
        if p < 1e-300:
            p = 0.0
        AS[4] = p
        return 1.0 - AS[1]
    return 1.0 / AS[3]


def averaged(A, AS, x):
    """The averaged iterate (bias-corrected for ema), or x when nothing was
    averaged yet."""
    if AS[3] == 0:
        return x.copy()
    if int(AS[0]) == AVG_EMA:
        corr = x.dtype.type(1.0 - AS[4])
        return A / corr
    return A.copy()


# -------------------------------------------------------------- set-up --

class RunSetup:
    """Everything about a run beyond the method: filled by :func:`setup_run`."""

    def __init__(self):
        self.batching = None
        self.objective_rng = None
        #: with numadam.RNG in args, the Python loop keeps here the state of
        #: that generator before each evaluation (None: not kept)
        self.rng_snapshot = None
        self.schedule = None        # Schedule, or a Python callable, or None
        self.smoothing = 0.0
        self.patience = 1
        self.average = None         # ("ema", decay, start) / ("polyak", start)
        self.AS = np.zeros(5)
        self.history = None
        self.progress = False
        #: the run's SIGINT handling (numadam._interrupt.Guard), or None
        self.guard = None
        #: the run's options as a checkpoint stores them, and the names of
        #: those it cannot store (numadam._checkpoint.encode_options)
        self.options_given = ({}, [])
        #: a checkpoint's (arrays, meta) to resume the run from, or None
        self.restore = None

    @property
    def stochastic(self):
        return self.batching is not None


def setup_run(control, args):
    """Build the run's set-up from its validated options (a
    :class:`~numadam._options.RunOptions`).

    Returns ``(setup, args, maxiter)``: ``args`` with ``numadam.RNG``
    replaced, and ``maxiter`` from ``epochs`` when that was given. Only what
    depends on ``args`` is checked here (the arrays to slice); the options
    themselves were checked at the door.
    """
    rs = RunSetup()
    batch_size = control.batch_size
    draws = any(a is RNG for a in args)
    # the generators are made only for runs that draw: seeding costs more
    # than a small compiled run
    batch_rng, fun_rng = (seed_streams(control.seed) if draws or batch_size is not None
                          else (None, None))

    if draws:
        rs.objective_rng = fun_rng
        args = tuple(fun_rng if a is RNG else a for a in args)

    maxiter = control.maxiter
    if batch_size is not None:
        positions = choose_batched(args, control.batch_args)
        rs.batching = Batching(args, positions, batch_size, batch_rng, control.parallel)
        args = rs.batching.args            # scipy.sparse ones in CSR form
        if control.epochs is not None:
            maxiter = control.epochs * rs.batching.batches_per_epoch
    stream = getattr(control.state, "stream", None)
    if stream is not None and (draws or batch_size is not None):
        restore_streams(rs, stream)

    # smoothing and patience: plain tests for full-batch runs, about one
    # epoch of averaging and patience for minibatch runs
    s = control.smoothing
    p = control.patience
    if rs.batching is not None:
        nb = rs.batching.batches_per_epoch
        rs.smoothing = 1.0 - 1.0 / nb if s is None else s
        rs.patience = nb if p is None else p
    else:
        rs.smoothing = 0.0 if s is None else s
        rs.patience = 1 if p is None else p

    lr = control.learning_rate_schedule
    if isinstance(lr, schedules.Schedule) or callable(lr):
        rs.schedule = lr

    avg = control.average
    if avg is not None:
        rs.average = avg
        rs.AS = np.array([AVG_EMA if avg == "ema" else AVG_POLYAK, control.average_decay,
                          control.average_start, 0.0, 1.0])
    rs.history = control.history
    return rs, args, maxiter


def history_result(H, rows, setup):
    """The history dict of the result from the per-iterate records ``H``."""
    loss, gnorm, lr = H[0, :rows].copy(), H[1, :rows].copy(), H[2, :rows].copy()
    if setup.history == "step":
        return {"loss": loss, "grad_norm": gnorm, "learning_rate": lr}
    nb = setup.batching.batches_per_epoch
    steps = max(rows - 1, 0)
    epochs = -(-steps // nb)
    out = {"loss": np.empty(epochs), "grad_norm": np.empty(epochs),
           "learning_rate": np.empty(epochs)}
    for e in range(epochs):
        sl = slice(e * nb, min((e + 1) * nb, steps))
        out["loss"][e] = loss[sl].mean()
        out["grad_norm"][e] = gnorm[sl].mean()
        out["learning_rate"][e] = lr[sl.stop - 1]
    return out
