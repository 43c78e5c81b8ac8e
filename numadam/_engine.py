"""The engine: a method's state and kernels bound to one array, built once.

:func:`plan` turns a method's declaration, its validated options and an
optional state to continue from into the arrays every engine keeps:

``W`` (rows, n), in the parameters' dtype
    the previous iterate (with ``backup``), the lower and upper bounds (with
    bounds) and then the rule's state slots (see
    :func:`numadam._kernels.cpu.layout`);
``P`` (float64)
    the rule's hyperparameters, its running scalars ``aux`` (the step count
    first), room for the per-step scalars and the gradient block of the
    kernels' first pass: ``clip_norm`` (0.0: no clipping), the sum of squares
    over all arrays when a caller gives it (-1.0: each kernel sums its own
    gradient), the factor of the last gradient and the rule's reductions
    (see :func:`numadam._kernels.cpu.gradient_block`).

:class:`Engine` keeps them on the host and steps with the CPU kernels;
:class:`numadam._device_engine.DeviceEngine` builds the same plan with ``W``
on a GPU. The drivers (:mod:`numadam._loop`, :mod:`numadam._compiled`,
:mod:`numadam._device`) and :class:`numadam.Optimizer` step engines; they
never build the arrays themselves.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._arrays import host_array
from ._kernels import cpu, preload, threads
from ._kernels import group as gk
from ._kernels import sparse as sk
from ._options import check_rate
from ._state import OptimizerState, check_state

__all__ = ["Plan", "plan", "Rates", "Engine", "GroupEngine", "SparseSteps"]


class Plan(NamedTuple):
    """What an engine of a method holds, before its arrays are placed."""

    rule: object
    #: the rule's structural flags for these options
    F: tuple
    #: the names of the state slots
    names: tuple
    #: the first slot row of ``W``
    off: int
    #: the float64 scalars, hyperparameters and running scalars filled in
    P: np.ndarray
    #: the running scalars: a view of ``P`` (``aux[0]`` is the step count)
    aux: np.ndarray
    #: the slots' starting values: the state's array (host or device), or
    #: one float per slot
    init: object


def plan(spec, values, n, dtype, state=None, bounded=False, backup=False):
    """The engine arrays of method ``spec`` with validated options ``values``
    for ``n`` coordinates of ``dtype``, continuing ``state`` when given
    (checked here, before anything is built)."""
    rule = spec.rule_impl()
    F = rule.flags(values)
    names = tuple(rule.slots(F))
    if state is not None:
        check_state(state, spec, F, n, np.dtype(dtype), values)
    off, H, A = cpu.layout(rule.name, bounded, backup)
    K, NG = cpu.gradient_block(rule.name)
    P = np.zeros(K + NG, np.float64)
    P[:H] = [values[name] for name in rule.hyper]
    clip_norm = values.get("clip_norm")
    P[K + cpu.G_CLIP] = 0.0 if clip_norm is None else clip_norm
    P[K + cpu.G_TOTAL] = -1.0
    P[K + cpu.G_SCALE] = 1.0
    P[K + cpu.G_SIGN] = -1.0 if values.get("maximize") else 1.0
    if state is not None:
        P[H:H + A] = state.aux
        init = state.S
    else:
        P[H:H + A] = [v for _, v in rule.aux]
        init = rule.slot_init(values, F) or (0.0,) * len(names)
    return Plan(rule, F, names, off, P, P[H:H + A], init)


def fill_slots(S, init):
    """Start the host slot rows ``S`` at ``init``: a state's array, or one
    float per slot (the rows are zero already)."""
    if isinstance(init, tuple):
        for k, v in enumerate(init):
            if v != 0.0:
                S[k].fill(v)
    else:
        S[...] = host_array(init)


class Rates:
    """What every engine does with its learning rate, the sign of its steps
    and the norm of its gradients; an engine sets ``schedule``, ``aux``,
    ``learning_rate``, the gradient block ``G`` of its ``P``, its step
    ``kernel`` and the factory ``sum_squares_kernel(parallel)`` of its
    gradients' sum of squares."""

    _sum_squares = (None, None)

    def sum_squares(self, g):
        """``sum(g**2)`` in float64 with the function the step kernels'
        first pass uses, run as the steps run
        (:func:`numadam._kernels.threads.choose_like`)."""
        kernel, run = self._sum_squares
        if kernel is not self.kernel:
            run = threads.choose_like(self.kernel, self.sum_squares_kernel)
            self._sum_squares = (self.kernel, run)
        return run(g)

    def rate(self, lr=None):
        """The learning rate of the next step (:func:`next_rate`)."""
        return next_rate(lr, self.schedule, self.aux, self.learning_rate)

    def set_maximize(self, maximize):
        """Ascend (True) or descend from the next step on."""
        self.G[cpu.G_SIGN] = -1.0 if maximize else 1.0


class Engine(Rates):
    """A method's state and compiled kernels, bound to the host array ``x``.

    ``backup`` keeps the previous iterate in ``W[0]`` (written by the step
    kernel in the same pass), for the loops' non-finite rollback and xtol.
    ``AS`` (the averaging scalars of :mod:`numadam._stochastic`) asks for an
    iterate average, kept with the state.
    """

    def __init__(self, spec, x, values, lo=None, hi=None, state=None, parallel=None,
                 backup=False, AS=None):
        n = x.shape[0]
        dtype = x.dtype
        bounded = lo is not None
        p = plan(spec, values, n, dtype, state, bounded, backup)
        rule = p.rule
        W = np.zeros((p.off + len(p.names), n), dtype)
        S = W[p.off:]
        fill_slots(S, p.init)
        if bounded:
            W[int(backup)] = lo
            W[int(backup) + 1] = hi
        self.spec = spec
        self.method = spec.name
        self.options = values
        self.x = x
        self.W = W
        self.P = p.P
        self.S = S
        self.aux = p.aux
        self.learning_rate = values["learning_rate"]
        self.schedule = values.get("learning_rate_schedule")
        self.bounded = bounded
        self.xprev = W[0] if backup else None
        self.rule = rule
        self.rule_name = rule.name
        K, NG = cpu.gradient_block(rule.name)
        #: the gradient block of P (a view): see cpu.gradient_block
        self.G = p.P[K:K + NG]
        self.names = p.names
        self.F = p.F
        self.mode = cpu.parallel_mode(n, parallel, rule.name, dtype)
        self.kernel = self._step_kernel(p.F)
        self._kernel_ready = False
        self.A = None
        self.AS = None
        if AS is not None:
            if state is not None and state.average is not None:
                if int(state.average_scalars[0]) != int(AS[0]):
                    raise ValueError("options['state'] holds an iterate average of "
                                     "another kind than option 'average' asks for")
                self.A = state.average.copy()
                self.AS = state.average_scalars.copy()
                self.AS[1:3] = AS[1:3]
            else:
                self.A = np.zeros_like(x)
                self.AS = np.array(AS, dtype=np.float64)

    def set_flags(self, F):
        """Step with the kernel of flags ``F`` from now on (a hyperparameter
        changed mid-run; the state slots stay the same)."""
        self.F = F
        self.kernel = self._step_kernel(F)
        self._kernel_ready = False

    def _step_kernel(self, F):
        return threads.choose(lambda par: cpu.step_kernel(self.rule_name, F, par),
                              self.mode)

    @staticmethod
    def sum_squares_kernel(parallel):
        return cpu.sum_squares_kernel(parallel)

    @property
    def parallel(self):
        """Whether the steps run the parallel kernel now."""
        return threads.runs_parallel(self.kernel)

    _sparse_kernels = (None, None)

    def sparse_kernels(self, mode, backup):
        """``(small, wide)``: the lazy or catch-up (``mode``) step kernels for
        few and for many touched values (:func:`numadam._kernels.cpu.use_parallel`
        of their number): the wide one as the dense steps run (measured,
        forced or serial), the small one serial unless parallel is forced.
        Made once for the engine's flags, so that whoever steps and flushes
        follows one measured choice."""
        key = (mode, backup, self.F)
        if self._sparse_kernels[0] != key:
            make = sk.lazy_kernel if mode == "lazy" else sk.catchup_kernel
            args = (self.rule_name, self.F)
            wide = threads.choose(lambda par: make(*args, par, self.bounded, backup),
                                  self.mode)
            small = wide if self.mode else make(*args, False, self.bounded, backup)
            self._sparse_kernels = (key, (small, wide))
        return self._sparse_kernels[1]

    def dense_kernel(self):
        """The dense step kernel, made ready from Numba's on-disk cache on
        first use (:mod:`numadam._kernels.preload`). Runs that never take a
        dense step from Python (the compiled loop, sparse steps) skip the
        cache look-up, which costs more than a small compiled run."""
        if not self._kernel_ready:
            for kernel in threads.dispatchers(self.kernel):
                preload.load(kernel, self.x, self.x, self.W, self.P, 1.0)
            self._kernel_ready = True
        return self.kernel

    def state(self, copy):
        """The :class:`OptimizerState` (sharing the arrays unless ``copy``)."""
        S, aux = (self.S.copy(), self.aux.copy()) if copy else (self.S, self.aux)
        A = self.A
        AS = self.AS if A is not None else None
        if copy and A is not None:
            A, AS = A.copy(), AS.copy()
        return OptimizerState(self.method, self.rule_name, self.F, self.names, S, aux,
                              A, AS)


def next_rate(lr, schedule, aux, constant):
    """The learning rate of the next step: ``lr`` when given (one step's
    override), else ``schedule``'s value after the steps done so far
    (``aux[0]``, 0 for the first), else ``constant``; a given or scheduled
    rate is checked
    (:func:`numadam._options.check_rate`) before any array changes."""
    if lr is not None:
        return check_rate(lr)
    if schedule is not None:
        k = int(aux[0])
        return check_rate(schedule(k), "the learning_rate schedule's value",
                          f" at update count {k}")
    return constant


class SparseSteps:
    """The lazy or catch-up steps of an engine with sparse gradients.

    ``backup`` matches an engine built with a backup row (the loops', which
    step with :mod:`numadam._loop`'s iteration and use this object for the
    final catch-up flush and dense gradients); :class:`numadam.Optimizer`
    steps here, without one.
    """

    def __init__(self, engine, mode, backup=True):
        self.engine = engine
        self.mode = mode
        self.x = engine.x
        self.backup = backup
        args = (engine.rule_name, engine.F)
        small, wide = engine.sparse_kernels(mode, backup)
        self.kernels = {False: small, True: wide}
        self.flush_kernel = threads.choose_like(
            wide, lambda par: sk.flush_kernel(*args, par, engine.bounded, backup))
        self.densify = threads.choose_like(wide, sk.densify_kernel)
        self.use_parallel = lambda size: cpu.use_parallel(size, None, engine.rule_name,
                                                          engine.x.dtype)
        self.last = None
        self.r = 1

    def step(self, g, lr):
        idx, val = g
        par = self.use_parallel(val.size)
        xb = np.empty_like(val) if self.backup else val
        if self.mode == "lazy":
            self.kernels[par](self.x, idx, val, self.engine.W, self.engine.P, lr, xb)
        else:
            if self.last is None:
                self.r = val.shape[1]
                t0 = int(self.engine.aux[0])
                self.last = np.full(self.x.shape[0] // self.r, t0, np.int64)
            self.kernels[par](self.x, idx, val, self.engine.W, self.engine.P, lr, xb,
                              self.last)

    def flush(self):
        """Catch-up: bring every row up to the last step (at the end)."""
        if self.mode == "catchup" and self.last is not None:
            self.flush_kernel(self.x, self.engine.W, self.engine.P, self.last, self.r)
            return True
        return False

    def dense(self, g):
        out = np.empty_like(self.x)
        self.densify(g[0], g[1], out)
        return out


class GroupEngine(Rates):
    """A method's state and one compiled step over several host arrays of
    one dtype (a parameter group; see :mod:`numadam._kernels.group`).

    ``xs`` are the arrays, C-contiguous, of any shapes (their memory is
    stepped in place; the gradients come in the same shapes), ``bounds`` a
    ``(lo, hi)`` pair of 1-D arrays of their sizes or None for each,
    ``states`` an :class:`OptimizerState` or None for each (those given must
    agree on the step count and running scalars: the group keeps one),
    ``labels`` the arrays' names in messages. Each array's state is a block of one buffer,
    a view of which :meth:`state` hands out.
    """

    def __init__(self, spec, xs, values, bounds=None, states=None, parallel=None,
                 labels=None):
        k = len(xs)
        labels = labels or [f"x[{j}]" for j in range(k)]
        dtype = xs[0].dtype
        sizes = [x.size for x in xs]
        n = sum(sizes)
        bounds = [None] * k if bounds is None else list(bounds)
        states = [None] * k if states is None else list(states)
        bounded = any(b is not None for b in bounds)
        p = plan(spec, values, n, dtype, None, bounded, False)
        F = p.F
        rows = p.off + len(p.names)
        given = [(j, s) for j, s in enumerate(states) if s is not None]
        for j, s in given:
            try:
                check_state(s, spec, F, sizes[j], dtype, values)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"the state of {labels[j]}: {exc}") from None
        if given:
            j0, s0 = given[0]
            for j, s in given[1:]:
                if not np.array_equal(s.aux, s0.aux):
                    raise ValueError(f"the state of {labels[j]} is at step {s.step} "
                                     f"with running scalars {list(s.aux)}, that of "
                                     f"{labels[j0]} at step {s0.step} with "
                                     f"{list(s0.aux)}: the arrays of a parameter group "
                                     "share one step count")
            missing = [j for j in range(k) if states[j] is None]
            if missing and s0.aux[0] != 0:
                raise ValueError(f"the state of {labels[missing[0]]} is missing, that of "
                                 f"{labels[j0]} is at step {s0.step}: the arrays of a "
                                 "parameter group share one step count")
            p.aux[:] = s0.aux
        self.buffer = np.zeros(rows * n, dtype)
        blocks = []
        start = 0
        for j, m in enumerate(sizes):
            W = self.buffer[rows * start:rows * (start + m)].reshape(rows, m)
            fill_slots(W[p.off:], p.init if states[j] is None else states[j].S)
            if bounded:
                lo, hi = bounds[j] if bounds[j] is not None else (-np.inf, np.inf)
                W[0] = lo
                W[1] = hi
            blocks.append(W)
            start += m
        T = np.zeros((gk.ROWS, k), np.int64)
        for j, (x, W) in enumerate(zip(xs, blocks)):
            T[gk.ROW_X, j] = x.ctypes.data
            T[gk.ROW_W, j] = W.ctypes.data
            T[gk.ROW_N, j] = sizes[j]
            T[gk.ROW_R, j] = rows
        self.spec = spec
        self.method = spec.name
        self.options = values
        self.xs = list(xs)              # kept alive: T holds their addresses
        self.blocks = blocks
        self.T = T
        self.G_ADDR = T[gk.ROW_G]
        self.C, self.B = gk.chunks(sizes)
        self.P = p.P
        self.aux = p.aux
        self.F = F
        self.names = p.names
        self.off = p.off
        self.rule = p.rule
        self.rule_name = p.rule.name
        self.sizes = sizes
        self.dtype = dtype
        self.learning_rate = values["learning_rate"]
        self.schedule = values.get("learning_rate_schedule")
        K, NG = cpu.gradient_block(p.rule.name)
        self.G = p.P[K:K + NG]
        self.mode = cpu.parallel_mode(n, parallel, p.rule.name, dtype)
        self.kernel = self._step_kernel(F)
        ndims = [x.ndim for x in xs]
        self.shapes = np.zeros((k, max(ndims, default=0) + 1), np.int64)
        for j, x in enumerate(xs):
            self.shapes[j, :x.ndim] = x.shape
        self._addresses = gk.addresses_kernel(dtype.name, tuple(ndims))

    def set_flags(self, F):
        """:meth:`Engine.set_flags` for the group's kernel."""
        self.F = F
        self.kernel = self._step_kernel(F)

    def _step_kernel(self, F):
        return threads.choose(lambda par: gk.group_step_kernel(self.rule_name, F, par,
                                                               self.dtype.name),
                              self.mode)

    def sum_squares_kernel(self, parallel):
        return gk.group_sum_squares(self.dtype.name, parallel)

    @property
    def parallel(self):
        """Whether the steps run the parallel kernel now."""
        return threads.runs_parallel(self.kernel)

    def point(self, grads):
        """Put the addresses of the tuple ``grads`` in the table, when they
        are C-contiguous, writable arrays of the arrays' dtype and shapes
        (True); False otherwise, for the caller's checks and
        :meth:`point_copies`."""
        try:
            return self._addresses(grads, self.G_ADDR, self.shapes)
        except TypeError:                 # other dtypes, layouts, dimensions
            return False

    def point_copies(self, grads):
        """:meth:`point` for gradients of the arrays' dtype and shapes in
        any layout: C-contiguous copies where needed, whose addresses go in
        the table. Returns the arrays pointed to, to be kept alive until the
        step has run."""
        grads = tuple(np.ascontiguousarray(g) for g in grads)
        for j, g in enumerate(grads):
            self.G_ADDR[j] = g.__array_interface__["data"][0]
        return grads

    def step(self, lr):
        """One update with the gradients :meth:`point` placed."""
        self.kernel(self.T, self.C, self.B, self.P, lr)

    def state(self, j, copy):
        """The :class:`OptimizerState` of array ``j``."""
        S = self.blocks[j][self.off:]
        aux = self.aux
        if copy:
            S, aux = S.copy(), aux.copy()
        return OptimizerState(self.method, self.rule_name, self.F, self.names, S, aux)
