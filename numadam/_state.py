"""The optimiser state a result carries, so that a run can be continued."""

from __future__ import annotations

import copy

import numpy as np

from ._arrays import device_copy, host_array
from ._rules import get_rule

__all__ = ["OptimizerState", "check_state"]


class OptimizerState:
    """Everything a numadam method carries from one step to the next.

    A result holds it as ``res.state``. Passing it back with
    ``options={"state": res.state}`` (and usually ``x0=res.x``) continues the
    run exactly: the continued run gives bitwise the numbers one
    uninterrupted run would have given.

    Attributes
    ----------
    method : str
        The method that made the state.
    step : int
        The number of update steps applied so far (``t`` in the formulas).
    slots : dict of str to ndarray
        The per-coordinate state, by the names of the formulas (``m``, ``v``,
        ``vmax`` for adam with amsgrad, ``b`` for a momentum buffer, ...).
        Each slot is also an attribute: ``state.m``.
    scalars : dict of str to float
        Running scalars besides the step count (nadam's ``mu_product``).
    flags : dict
        The structural switches the state was made with (``amsgrad``,
        ``nesterov``, whether a momentum buffer is kept, ...). A continued run
        must keep the same state slots.
    on_device : bool
        True for the state of a device run: the slots are then Numba device
        arrays, and a run on the host that continues from it copies them.
    average : ndarray or None
        The running iterate average of a run with the ``average`` option
        (uncorrected for ``'ema'``), so that a continued run averages on.
    stream : dict or None
        Where a stochastic run's random streams stand (a minibatch run's
        epoch permutation, its position and the generators' states; the
        state of the generator passed for ``numadam.RNG``), so that a
        continued run draws what the uninterrupted one would have drawn
        (see :ref:`guide-stochastic`).

    Notes
    -----
    The arrays are owned by the state: a run that continues from it works on
    copies, so one state can seed several runs.
    """

    __slots__ = ("method", "rule", "F", "names", "S", "aux", "average",
                 "average_scalars", "stream")

    def __init__(self, method, rule, F, names, S, aux, average=None,
                 average_scalars=None, stream=None):
        self.method = method
        self.rule = rule
        self.F = tuple(F)
        self.names = tuple(names)
        self.S = S
        self.aux = aux
        self.average = average
        self.average_scalars = average_scalars
        self.stream = stream

    @property
    def flags(self):
        return dict(zip(get_rule(self.rule).flag_names, self.F))

    @property
    def step(self):
        return int(self.aux[0])

    @property
    def slots(self):
        return {name: self.S[k] for k, name in enumerate(self.names)}

    @property
    def scalars(self):
        pairs = get_rule(self.rule).aux
        return {name: float(self.aux[k]) for k, (name, _) in enumerate(pairs) if k > 0}

    @property
    def dtype(self):
        return self.S.dtype

    @property
    def size(self):
        return self.S.shape[1]

    def __getattr__(self, name):
        try:
            names = object.__getattribute__(self, "names")
        except AttributeError:  # during unpickling
            raise AttributeError(name) from None
        if name in names:
            return self.S[names.index(name)]
        raise AttributeError(f"{type(self).__name__} of method {self.method!r} "
                             f"has no slot {name!r}; its slots are {list(names)}")

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state):
        object.__setattr__(self, "stream", None)       # saved before it existed
        for k, v in state.items():
            object.__setattr__(self, k, v)

    @property
    def on_device(self):
        """Whether the slots live on a GPU (the state of a device run)."""
        return not isinstance(self.S, np.ndarray)

    def copy(self):
        avg = None if self.average is None else self.average.copy()
        avs = None if self.average_scalars is None else self.average_scalars.copy()
        if self.on_device:
            S = device_copy(self.S)
        else:
            S = self.S.copy()
        return OptimizerState(self.method, self.rule, self.F, self.names,
                              S, self.aux.copy(), avg, avs, copy.deepcopy(self.stream))

    def __repr__(self):
        slots = ", ".join(f"{n}: {self.S.dtype}[{self.size}]" for n in self.names)
        return (f"OptimizerState(method={self.method!r}, step={self.step}, "
                f"slots={{{slots}}}, flags={self.flags})")

    def __eq__(self, other):
        if not isinstance(other, OptimizerState):
            return NotImplemented
        same_avg = (self.average is None) == (other.average is None) and (
            self.average is None or (np.array_equal(self.average, other.average) and
                                     np.array_equal(self.average_scalars,
                                                    other.average_scalars)))
        return (self.rule == other.rule and self.F == other.F
                and self.names == other.names
                and np.array_equal(host_array(self.S), host_array(other.S))
                and np.array_equal(self.aux, other.aux) and same_avg)

    __hash__ = None


def check_state(state, spec, F, n, dtype, values=None):
    """Raise unless ``state`` can continue a run of ``spec`` with flags ``F``
    (and, when given, options ``values``: :func:`check_state_values`).

    The state must come from the same rule and hold the slots this run needs
    (switches that change no slot, such as nesterov, may differ)."""
    if not isinstance(state, OptimizerState):
        raise TypeError(f"options['state'] must be an OptimizerState (res.state), "
                        f"got {type(state).__name__}")
    if state.rule != spec.rule:
        raise ValueError(f"options['state'] comes from method {state.method!r} and "
                         f"cannot continue method {spec.name!r}")
    if state.names != tuple(spec.rule_impl().slots(F)):
        mine = dict(zip(spec.rule_impl().flag_names, F))
        raise ValueError(f"options['state'] was made with {state.flags}, which does "
                         f"not match this run's {mine}: it holds {list(state.names)}, "
                         f"this run needs {list(spec.rule_impl().slots(F))}")
    scalars = [name for name, _ in spec.rule_impl().aux]
    aux = state.aux
    if not (isinstance(aux, np.ndarray) and aux.ndim == 1
            and aux.shape[0] == len(scalars) and aux.dtype == np.float64):
        got = (f"shape {aux.shape} and dtype {aux.dtype}" if isinstance(aux, np.ndarray)
               else type(aux).__name__)
        raise ValueError(f"options['state'] must hold the {len(scalars)} float64 running "
                         f"scalars of method {spec.name!r} ({', '.join(scalars)}) in "
                         f"its aux, got {got}; a state saved by an earlier version of "
                         f"numadam cannot continue a run")
    if state.size != n:
        raise ValueError(f"options['state'] holds {state.size} coordinates, "
                         f"but x0 has {n}")
    if state.dtype != dtype:
        raise ValueError(f"options['state'] is {state.dtype}, but x0 is {dtype}")
    if values is not None:
        check_state_values(state, spec, values)


def running_powers(rule):
    """``(j, beta, err)`` for each running power ``beta**t`` among the rule's
    running scalars: its position in ``aux``, the option it is a power of,
    and the position of its rounding error (None when it keeps none)."""
    names = [name for name, _ in rule.aux]
    return [(j, name[:-len("_power")],
             j + 1 if names[j + 1:j + 2] == [name + "_error"] else None)
            for j, name in enumerate(names) if name.endswith("_power")]


def check_state_values(state, spec, values):
    """Raise unless the numbers of ``state`` can be those of a run of
    ``spec`` with options ``values``: a whole step count >= 0, finite
    slots, the slots of squares >= 0 (:attr:`numadam._rules.Rule.nonnegative`)
    and running powers of the betas equal to ``beta**t``."""
    rule = spec.rule_impl()
    aux = state.aux
    names = [name for name, _ in rule.aux]
    t = aux[0]
    if not (np.isfinite(aux).all() and t >= 0 and t == int(t)):
        bad = [f"{n}={float(v)!r}" for n, v in zip(names, aux) if not np.isfinite(v)]
        raise ValueError(f"options['state'] must have a whole step count >= 0 and finite "
                         f"running scalars, got step {float(t)!r}"
                         + (f" and {', '.join(bad)}" if bad else ""))
    S = host_array(state.S)
    for k, slot in enumerate(state.names):
        row = S[k]
        finite = np.isfinite(row)
        if not finite.all():
            i = int(np.argmin(finite))
            raise ValueError(f"options['state'] slot {slot!r} is not finite: "
                             f"{float(row[i])!r} at coordinate {i}")
        if slot in rule.nonnegative and (row < 0).any():
            i = int(np.argmax(row < 0))
            raise ValueError(f"options['state'] slot {slot!r} must be >= 0 (a running "
                             f"average of squares), got {float(row[i])!r} at coordinate "
                             f"{i}")
    for j, beta, err in running_powers(rule):
        if beta not in values:
            continue
        got = aux[j] + (aux[err] if err is not None else 0.0)
        want = values[beta] ** t
        if abs(got - want) > 1e-9 * want + 1e-300:
            raise ValueError(f"options['state'] holds {beta}**t = {float(aux[j])!r} at "
                             f"step {t:g}, but this run's {beta} = {values[beta]!r} gives "
                             f"{float(want)!r}: continue with the {beta} the state was "
                             "made with")
