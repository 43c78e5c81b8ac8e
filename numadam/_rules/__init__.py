"""Element-wise update rules, each written once.

A *rule* is the arithmetic of one optimiser family, split in two compiled
pieces that every kernel factory (serial and parallel CPU loops, the compiled
minimize loop, sparse and CUDA kernels) calls:

``coefficients(h, aux, lr, F, c, T)``
    Runs once per step, outside the element loop.  Advances the step count
    ``aux[0]`` and any running scalar kept in ``aux`` and writes the per-step
    scalars (bias corrections, the step size, ``1 - beta`` ...) into ``c``, a
    float64 array.  The kernels round each to the element type ``T``
    (``numpy.float32`` or ``numpy.float64``) once, so float32 runs do float32
    element arithmetic; a rule that forms a reciprocal of a scalar rounds the
    scalar with ``T`` first (see :mod:`numadam._rules._math`).

``update(i, X, g, S, c, F) -> new x``
    The update of element ``i``: ``X`` is the parameter array (the rule reads
    ``X[i]`` where it needs it, and returns the new value for the kernel to
    store), ``g`` that element's gradient, ``S`` the ``(n_slots, n)`` state
    array whose rows the rule reads and writes in place, ``c`` the tuple of
    per-step scalars and ``F`` the tuple of structural flags.  Streaming
    kernels run fastest when ``X[i]`` is read late in the iteration, after the
    state; rules read it early only for coupled weight decay.

Each rule lives in a module of its own in this package, which defines its
:class:`Rule` at module level; :func:`get_rule` finds every such module by
itself, so a new rule is a new module and nothing else here.
:mod:`numadam._registry` declares the methods that use the rules.

Sparse gradients use the same rules (see :mod:`numadam._kernels.sparse`): a
rule may add a ``lazy_update`` (a different rule for the lazy mode) and the
``catchup_factors``/``catchup`` pair that replays skipped zero-gradient steps
in closed form.

Reductions: a first pass before the element loop
------------------------------------------------

Some updates need a number computed over the whole gradient before any
element can be updated: a global norm for clipping, a trust ratio, a
normalisation.  A rule declares the reductions it reads in
:attr:`Rule.reductions`, by name from :data:`REDUCTIONS`; every kernel
(serial and parallel CPU loops, the compiled loop, which calls them, the lazy
and catch-up sparse kernels and the CUDA kernels) then computes them in a
first pass over the step's gradient, in float64, and hands them to

``reduced_coefficients(R, c, F)``
    Runs once per step, after ``coefficients`` (and, in the sparse modes,
    ``sparse_coefficients``), before the scalars are rounded: writes into the
    float64 per-step scalars ``c`` the ones that depend on the reductions.
    ``R`` holds one float64 per entry of :attr:`Rule.reductions`, in that
    order, of the gradient the update sees (after clipping).  It keeps no
    state (the step count and the running scalars are ``coefficients``'s),
    so that the kernels may run it wherever the reductions are.

The kernels run the same first pass for the ``clip_norm`` option that every
method takes (:data:`numadam._options.UPDATE_OPTIONS`): the gradient's
``"gsq"`` gives its global norm, and the gradient is scaled before
``update`` sees it, so rules know nothing of clipping.  A rule without
reductions, with clipping off, runs no first pass at all.

A reduction is over the whole array today.  One with a value per row of
``r`` coordinates (per-row norms of an embedding table, the factored second
moments of Adafactor) would add a kind to :data:`REDUCTIONS` whose values the
kernels write into a row of the work array ``W`` (one value per row, in the
parameters' dtype) and that ``update`` reads as it reads a state slot; the
names and the first pass are the same.

``F`` holds the structural flags (amsgrad, nesterov, centered, ...).  Kernels
are specialised on it, so a flag costs nothing in the element loop.  ``h`` is
the float64 array of the family's numeric hyperparameters, in the order of
:attr:`Rule.hyper`.  The learning rate is passed on its own, already evaluated
for this step, so that schedules need no recompilation.

Rules keep to what Numba compiles for the CPU and for CUDA alike: scalar
arithmetic, ``math.sqrt``, comparisons and indexing, no allocation and no
exceptions.  Maxima are written as comparisons rather than with ``max()`` so
that the loops they are inlined into vectorise.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Callable, NamedTuple

from ._math import jitable

#: Number of per-step scalars a rule may use; the kernels pass them as a tuple.
NC = 12


def _tuple_function(name, args, item):
    """A function ``name(args)`` returning the tuple of ``item.format(k)`` for
    k < NC, written out (Numba builds a tuple of fixed length only from an
    expression that names each element)."""
    items = ", ".join(item.format(k) for k in range(NC))
    namespace = {}
    exec(compile(f"def {name}({args}):\n    return ({items},)\n",
                 f"<numadam {name}>", "exec"), namespace)
    return namespace[name]


#: ``round_scalars(cf, T)``: the step's float64 scalars ``cf`` rounded once to
#: the element type ``T``, as the tuple the rules' ``update`` takes.
round_scalars = jitable(_tuple_function("round_scalars", "cf, T", "T(cf[{}])"),
                        inline=True)
#: ``scalar_tuple(cf)``: the step's float64 scalars as a tuple.
scalar_tuple = jitable(_tuple_function("scalar_tuple", "cf", "cf[{}]"))


#: The reductions a rule may declare (:attr:`Rule.reductions`), by name, with
#: what each is. Kernels compute them in float64, over the step's gradient as
#: the update sees it (after clipping): for a sparse gradient, over its
#: coalesced values (the coordinates without a gradient add zero).
REDUCTIONS = {
    "gsq": "the sum of the squared gradient, sum_i g_i**2",
}


@jitable
def no_reduced_coefficients(R, c, F):
    """The :attr:`Rule.reduced_coefficients` of rules without reductions."""


@jitable
def no_sparse_coefficients(lr, c):
    """The :attr:`Rule.sparse_coefficients` of rules whose sparse modes read
    no scalar beyond the dense ones."""


class Rule(NamedTuple):
    """The declaration of one element-wise rule."""

    #: Family name, unique among rules.
    name: str
    #: Names of the numeric hyperparameters read from ``h``, in order.
    hyper: tuple
    #: ``flags(options) -> tuple``: the structural flags for these options.
    flags: Callable
    #: A name for each entry of the flags tuple.
    flag_names: tuple
    #: ``slots(F) -> tuple of names``: the per-element state the rule keeps.
    slots: Callable
    #: ``slot_init(options, F)``: each slot's initial value as a tuple of
    #: floats, or None when every slot starts at zero.
    slot_init: Callable
    #: Compiled ``coefficients(h, aux, lr, F, c, T)``.
    coefficients: Callable
    #: Compiled, inlined ``update(i, X, g, S, c, F) -> new x``.
    update: Callable
    #: The running scalars kept in ``aux`` as (name, initial value) pairs;
    #: ``aux[0]`` is always the step count ``t``.
    aux: tuple = (("t", 0.0),)
    #: ``lazy_update(i, X, g, S, c, F)``, the rule of the lazy sparse mode when
    #: it is not :attr:`update` applied to the touched coordinates (adam:
    #: torch.optim.SparseAdam's rule).
    lazy_update: Callable | None = None
    #: ``catchup_factors(k, cf, F)``: float64 factors, per row, of ``k`` skipped
    #: zero-gradient steps (powers of the decays and the move's coefficient),
    #: from the step's float64 scalars ``cf``; with :attr:`catchup`, the
    #: catch-up sparse mode. None: catch-up leaves x and the state alone (the
    #: rule moves nothing on a zero gradient).
    catchup_factors: Callable | None = None
    #: ``catchup(i, X, S, f, F) -> new x``: apply those skipped steps to
    #: coordinate ``i`` (its state in ``S``, in place).
    catchup: Callable | None = None
    #: ``sparse_coefficients(lr, c)``: the per-step scalars that only the
    #: sparse modes read (adam: torch.optim.SparseAdam's step size), formed in
    #: the float64 scalars ``c`` from what :attr:`coefficients` left there;
    #: kept out of :attr:`coefficients` so that dense steps do not pay for
    #: them.
    sparse_coefficients: Callable = no_sparse_coefficients
    #: The per-step reductions over the gradient that the rule reads, by name
    #: from :data:`REDUCTIONS`: the kernels compute them in a first pass and
    #: hand them to :attr:`reduced_coefficients`.
    reductions: tuple = ()
    #: ``reduced_coefficients(R, c, F)``: write into the float64 per-step
    #: scalars ``c`` the ones computed from the reductions ``R`` (one float64
    #: per entry of :attr:`reductions`); stateless.
    reduced_coefficients: Callable = no_reduced_coefficients
    #: Arrays with at least this many elements use the parallel (``prange``)
    #: kernels, for (float64, float32). Measured with
    #: ``python asv_bench/parallel_threshold.py`` on the project's 2-core
    #: reference machine: starting the threads costs about 3.5 us, which pays
    #: off once a serial step takes about twice that. Rules with a square root
    #: and divisions per element get there at a few thousand elements; a
    #: multiply-add per element (sgd), and float32 (twice the elements per
    #: vector), later.
    parallel_threshold: tuple = (1 << 12, 1 << 14)
    #: ``(slot, name)`` pairs: torch.optim's name of each slot in its state
    #: dicts (``exp_avg``, ``momentum_buffer``, ...), for
    #: :meth:`numadam.Optimizer.state_dict`; a slot not named keeps its own.
    state_names: tuple = ()
    #: The slots that are never negative (running averages of squares and
    #: their maxima): a state to continue from is checked for them.
    nonnegative: tuple = ()


def zeros(options, F):
    """Every slot starts at zero."""
    return None


def weight_decay_flag(options):
    """The flags of a rule whose only switch is a weight decay that is not
    zero (``flag_names=("weight_decay != 0",)``)."""
    return (options["weight_decay"] != 0.0,)


@functools.cache
def rules():
    """Every rule, by name: the :class:`Rule` objects defined at module level
    in the modules of this package (imported here, once)."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, Rule):
                check_rule(value)
                if value.name in found and found[value.name] is not value:
                    raise RuntimeError(f"two rules are called {value.name!r}")
                found[value.name] = value
    return found


def check_rule(rule):
    """Raise for a declaration the kernels cannot build."""
    unknown = [r for r in rule.reductions if r not in REDUCTIONS]
    if unknown or len(set(rule.reductions)) != len(rule.reductions):
        raise ValueError(f"rule {rule.name!r}: reductions must be distinct names from "
                         f"{sorted(REDUCTIONS)}, got {rule.reductions!r}")


def get_rule(name):
    """Return the rule called ``name``."""
    return rules()[name]
