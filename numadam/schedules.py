r"""Learning-rate schedules, for Python and compiled loops alike.

A schedule is data: segments of a few kinds, each a handful of numbers,
evaluated by one function, :func:`schedule_value`, that runs as plain
Python and compiles with Numba, so the Python-driven loop and the compiled
loop give the same rates bitwise. Pass one as the ``learning_rate`` option::

    from numadam import schedules
    lr = schedules.warmup(schedules.cosine(1e-2, decay_steps=10_000), steps=500)
    numadam.minimize(fun, x0, jac=grad, options={"learning_rate": lr})

A schedule is called with ``k``, **the number of updates done before the
one it gives the rate of**: 0 for the first update, so the first update uses
the base rate, as ``torch.optim.lr_scheduler`` (stepped once per update) and
optax's schedules (called with the update count) do, and their sequences
agree with numadam's. A continued run goes on counting. With :math:`\gamma`
the base rate and :math:`k` the count:

``constant(lr)``
    :math:`\gamma`.
``inverse_sqrt(lr, offset=0)``
    :math:`\gamma / \sqrt{k + 1 + \text{offset}}`: the Adam paper's
    :math:`\alpha/\sqrt{t}` for update :math:`t = k + 1`.
``exponential(lr, rate, steps=1)``
    :math:`\gamma\,\text{rate}^{k / \text{steps}}` (torch's ``ExponentialLR``
    with ``steps=1``; optax's ``exponential_decay``).
``step(lr, rate, steps)``
    :math:`\gamma\,\text{rate}^{\lfloor k / \text{steps}\rfloor}` (torch's
    ``StepLR``; optax's ``exponential_decay(staircase=True)``).
``multistep(lr, milestones, rate)``
    :math:`\gamma\,\text{rate}^{n}`, :math:`n` the number of milestones
    :math:`\le k` (torch's ``MultiStepLR``; optax's
    ``piecewise_constant_schedule`` with equal scales).
``cosine(lr, decay_steps, final_lr=0)``
    :math:`m + (\gamma - m)(1 + \cos(\pi \min(k, T)/T))/2`, :math:`m` the
    final rate and :math:`T` ``decay_steps`` (torch's ``CosineAnnealingLR``
    up to :math:`T`, after which torch rises again and numadam and optax's
    ``cosine_decay_schedule`` stay at :math:`m`).
``cosine_restarts(lr, period, mult=1, final_lr=0)``
    cosine annealing restarted after ``period`` updates, each period
    ``mult`` times the last (torch's ``CosineAnnealingWarmRestarts``).
``linear(init, end, steps)``
    from ``init`` to ``end`` over ``steps`` updates, then ``end`` (optax's
    ``linear_schedule``; torch's ``LinearLR`` as factors of the base rate).
``polynomial(init, end, power, steps)``
    :math:`(\text{init} - \text{end})(1 - \min(k, T)/T)^{\text{power}} +
    \text{end}` (optax's ``polynomial_schedule``; torch's ``PolynomialLR``
    with ``end=0``).
``one_cycle(max_lr, total_steps, pct_start=0.3, ...)``
    torch's ``OneCycleLR``: up from ``max_lr / div_factor`` to ``max_lr``,
    then down to ``max_lr / (div_factor * final_div_factor)``.
``cyclic(base_lr, max_lr, step_size_up, step_size_down=None, mode="triangular", gamma=1)``
    torch's ``CyclicLR`` (its modes ``"triangular"``, ``"triangular2"``,
    ``"exp_range"``), without its momentum cycling.
``join(schedules, boundaries)``
    ``schedules[i]`` from update ``boundaries[i - 1]`` on, counting from 0
    again there (optax's ``join_schedules``).
``warmup(schedule, steps, init=0)``
    a linear ramp from ``init`` to the schedule's first rate over ``steps``
    updates, joined to ``schedule`` (optax's warm-up schedules).
``reduce_on_plateau(lr, factor=0.1, patience=10, ...)``
    torch's ``ReduceLROnPlateau`` (mode ``"min"``), watching the loss of a
    :func:`numadam.minimize` run (the smoothed loss in minibatch runs).

``learning_rate`` may also be a Python callable of ``k`` (as torch's
``LambdaLR`` takes its ``lr_lambda``, though numadam's callable returns the
rate itself); it runs in the Python-driven loop only (minimize then does not
compile the loop).
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np
from numba.extending import register_jitable

__all__ = ["Schedule", "constant", "inverse_sqrt", "exponential", "step", "multistep",
           "cosine", "cosine_restarts", "linear", "polynomial", "one_cycle", "cyclic",
           "join", "warmup", "reduce_on_plateau", "schedule_value"]

(CONSTANT, INVERSE_SQRT, EXPONENTIAL, STEP, COSINE, MULTISTEP, LINEAR, POLYNOMIAL,
 RESTARTS, ONE_CYCLE, CYCLIC, PLATEAU) = range(12)

#: the floats of one segment in the parameter array: its kind, six numbers,
#: and the offset and count of its extra numbers (multistep's milestones)
_BLOCK = 9


# ------------------------------------------------------------ evaluation --

@register_jitable
def _anneal(start, end, pct, cos):
    if cos:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)
    return (end - start) * pct + start


@register_jitable
def _restarts(p, o, k):
    """torch's CosineAnnealingWarmRestarts at update count ``k``."""
    lr, period, mult, final = p[o + 1], p[o + 2], p[o + 3], p[o + 4]
    if mult == 1.0:
        cur = k - period * math.floor(k / period)
        size = period
    else:
        cur = k
        size = period
        while cur >= size:
            cur -= size
            size *= mult
    return final + (lr - final) * (1.0 + math.cos(math.pi * cur / size)) / 2.0


@register_jitable
def _one_cycle(p, o, k):
    """torch's OneCycleLR at update count ``k``: ``p[o + 1:]`` holds the
    initial, maximum and minimum rates, the total steps, pct_start and the
    flags (cos anneal, three phases)."""
    initial, peak, low, total, pct_start, flags = (p[o + 1], p[o + 2], p[o + 3],
                                                   p[o + 4], p[o + 5], p[o + 6])
    cos = (int(flags) & 1) != 0
    three = (int(flags) & 2) != 0
    if k > total - 1.0:
        k = total - 1.0             # the minimum from the last update on
    up_end = pct_start * total - 1.0
    if three:
        down_end = 2.0 * pct_start * total - 2.0
        last = total - 1.0
        if k <= up_end:
            return _anneal(initial, peak, k / up_end, cos)
        if k <= down_end:
            return _anneal(peak, initial, (k - up_end) / (down_end - up_end), cos)
        return _anneal(initial, low, (k - down_end) / (last - down_end), cos)
    last = total - 1.0
    if k <= up_end:
        return _anneal(initial, peak, k / up_end, cos)
    return _anneal(peak, low, (k - up_end) / (last - up_end), cos)


@register_jitable
def _cyclic(p, o, k):
    """torch's CyclicLR at update count ``k``."""
    base, peak, up, down, mode, gamma = (p[o + 1], p[o + 2], p[o + 3], p[o + 4],
                                         p[o + 5], p[o + 6])
    total = up + down
    ratio = up / total
    cycle = math.floor(1.0 + k / total)
    x = 1.0 + k / total - cycle
    if x <= ratio:
        scale = x / ratio
    else:
        scale = (x - 1.0) / (ratio - 1.0)
    height = (peak - base) * scale
    if mode == 1.0:                 # triangular2
        return base + height * (1.0 / (2.0 ** (cycle - 1.0)))
    if mode == 2.0:                 # exp_range
        return base + height * gamma ** k
    return base + height


@register_jitable
def _segment(p, o, k, kinds):
    """The rate of the segment at ``p[o:]`` at its own update count ``k``.
    ``kinds`` says which kinds the schedule has (closure constants in the
    compiled loops, so the code of the others is left out)."""
    kind = int(p[o])
    lr = p[o + 1]
    if kinds[INVERSE_SQRT] and kind == INVERSE_SQRT:
        return lr / math.sqrt(k + 1.0 + p[o + 2])
    if kinds[EXPONENTIAL] and kind == EXPONENTIAL:
        return lr * p[o + 2] ** (k / p[o + 3])
    if kinds[STEP] and kind == STEP:
        return lr * p[o + 2] ** math.floor(k / p[o + 3])
    if kinds[COSINE] and kind == COSINE:
        T = p[o + 2]
        c = p[o + 3]
        kk = k if k < T else T
        return c + (lr - c) * (1.0 + math.cos(math.pi * kk / T)) / 2.0
    if kinds[MULTISTEP] and kind == MULTISTEP:
        n = 0
        start = int(p[o + 7])
        for j in range(int(p[o + 8])):
            if p[start + j] <= k:
                n += 1
        return lr * p[o + 2] ** n
    if kinds[LINEAR] and kind == LINEAR:
        T = p[o + 3]
        kk = k if k < T else T
        return lr + (p[o + 2] - lr) * (kk / T)
    if kinds[POLYNOMIAL] and kind == POLYNOMIAL:
        T = p[o + 4]
        kk = k if k < T else T
        return (lr - p[o + 2]) * (1.0 - kk / T) ** p[o + 3] + p[o + 2]
    if kinds[RESTARTS] and kind == RESTARTS:
        return _restarts(p, o, k)
    if kinds[ONE_CYCLE] and kind == ONE_CYCLE:
        return _one_cycle(p, o, k)
    if kinds[CYCLIC] and kind == CYCLIC:
        return _cyclic(p, o, k)
    if kinds[PLATEAU] and kind == PLATEAU:
        return p[int(p[o + 7])]         # the rate as the losses seen so far set it
    return lr


@register_jitable
def _value(p, k, kinds):
    n = int(p[0])
    seg = 0
    start = 0.0
    for i in range(n - 1):
        if k >= p[1 + i]:
            seg = i + 1
            start = p[1 + i]
        else:
            break
    return _segment(p, n + _BLOCK * seg, k - start, kinds)


#: every kind: what Python evaluates
_ALL = (True,) * 12


@register_jitable
def schedule_value(p, k):
    """The rate of the schedule with parameters ``p`` for the update after
    ``k`` updates."""
    return _value(p, k, _ALL)


@functools.cache
def rate_function(kinds):
    """``rate(p, k)``: :func:`schedule_value` for schedules of the kinds
    ``kinds`` (a tuple of kind numbers), for compiled loops.

    Which kinds are there is a compile-time constant, so the code of the
    others is left out; a loop that can reach every kind's arithmetic has
    the compiler evaluate some of it speculatively on every update. The
    rates are bitwise those of :func:`schedule_value`.
    """
    has = tuple(kind in kinds for kind in range(12))

    def rate(p, k):
        return _value(p, k, has)
    return register_jitable(rate)


@register_jitable
def _plateau_observe(p, metric):
    """torch's ReduceLROnPlateau.step(metric) (mode "min") on the state kept
    in the parameter array ``p`` of a :func:`reduce_on_plateau` schedule."""
    o = int(p[0])
    e = int(p[o + 7])
    factor, patience, threshold, cooldown, min_lr = (p[o + 2], p[o + 3], p[o + 4],
                                                     p[o + 5], p[o + 6])
    best = p[e + 1]
    if p[e + 4] != 0.0:
        better = metric < best * (1.0 - threshold)
    else:
        better = metric < best - threshold
    if better:
        p[e + 1] = metric
        p[e + 2] = 0.0
    else:
        p[e + 2] += 1.0
    if p[e + 3] > 0.0:
        p[e + 3] -= 1.0
        p[e + 2] = 0.0
    if p[e + 2] > patience:
        old = p[e]
        new = old * factor
        if new < min_lr:
            new = min_lr
        if old - new > p[e + 5]:
            p[e] = new
        p[e + 3] = cooldown
        p[e + 2] = 0.0


def observe_function(kinds):
    """``observe(p, metric)`` for a schedule of the kinds ``kinds``: what it
    does with the loss the run saw after each update (a
    :func:`reduce_on_plateau` schedule updates its state in ``p``); None for
    schedules that do not watch the loss."""
    return _plateau_observe if PLATEAU in kinds else None


# ------------------------------------------------------------- the data --

@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule (build one with the functions of this module).

    Calling it with ``k``, the number of updates done so far, gives the rate
    of the next update: ``schedule(0)`` is the first.
    """

    #: each segment: (kind, six numbers, extra numbers)
    segments: tuple
    #: the update counts where the second, third, ... segments start
    boundaries: tuple = ()
    #: how the schedule was made, for its repr
    text: str = ""

    @property
    def kinds(self):
        """The kinds of the segments, sorted (:func:`rate_function`'s key)."""
        return tuple(sorted({seg[0] for seg in self.segments}))

    @property
    def params(self):
        """The float64 array the compiled loops evaluate."""
        n = len(self.segments)
        extras = n + _BLOCK * n
        p = [float(n), *map(float, self.boundaries)]
        tail = []
        for kind, numbers_, extra in self.segments:
            p += [float(kind), *map(float, numbers_), float(extras + len(tail)),
                  float(len(extra))]
            tail += list(map(float, extra))
        return np.array(p + tail, dtype=np.float64)

    def __call__(self, k):
        return schedule_value(self.params, float(k))

    def __repr__(self):
        return self.text


def _real(name, value, low=0.0, low_open=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (v > low if low_open else v >= low)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>' if low_open else '>='} "
                         f"{low:g}, got {value!r}")
    return v


def _count(name, value, least=1):
    v = _real(name, value, low=least)
    if not v.is_integer():
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return v


def _one(kind, numbers_, text, extra=()):
    numbers_ = tuple(numbers_) + (0.0,) * (6 - len(numbers_))
    return Schedule(((kind, numbers_, tuple(extra)),), (), text)


def constant(lr):
    """The constant rate ``lr``."""
    return _one(CONSTANT, (_real("lr", lr),), f"constant({lr!r})")


def inverse_sqrt(lr, offset=0.0):
    """``lr / sqrt(k + 1 + offset)``: the Adam paper's ``alpha / sqrt(t)``."""
    return _one(INVERSE_SQRT, (_real("lr", lr), _real("offset", offset)),
                f"inverse_sqrt({lr!r}, offset={offset!r})")


def exponential(lr, rate, steps=1):
    """``lr * rate ** (k / steps)``, a smooth decay by ``rate`` every ``steps``."""
    return _one(EXPONENTIAL, (_real("lr", lr), _real("rate", rate, low_open=True),
                              _real("steps", steps, low_open=True)),
                f"exponential({lr!r}, rate={rate!r}, steps={steps!r})")


def step(lr, rate, steps):
    """``lr * rate ** floor(k / steps)``: the rate multiplied by ``rate`` every
    ``steps`` updates."""
    return _one(STEP, (_real("lr", lr), _real("rate", rate, low_open=True),
                       _real("steps", steps, low_open=True)),
                f"step({lr!r}, rate={rate!r}, steps={steps!r})")


def multistep(lr, milestones, rate):
    """``lr`` multiplied by ``rate`` at each of the update counts
    ``milestones`` (increasing)."""
    try:
        marks = [_count("milestones", m, 0) for m in milestones]
    except TypeError:
        raise TypeError(f"milestones must be a sequence of whole numbers, got "
                        f"{milestones!r}") from None
    if any(b <= a for a, b in zip(marks, marks[1:])):
        raise ValueError(f"milestones must increase, got {list(milestones)!r}")
    return _one(MULTISTEP, (_real("lr", lr), _real("rate", rate, low_open=True)),
                f"multistep({lr!r}, milestones={list(milestones)!r}, rate={rate!r})",
                extra=marks)


def cosine(lr, decay_steps, final_lr=0.0):
    """Cosine annealing from ``lr`` to ``final_lr`` over ``decay_steps``
    updates, then ``final_lr``."""
    return _one(COSINE, (_real("lr", lr), _real("decay_steps", decay_steps, low_open=True),
                         _real("final_lr", final_lr)),
                f"cosine({lr!r}, decay_steps={decay_steps!r}, final_lr={final_lr!r})")


def cosine_restarts(lr, period, mult=1, final_lr=0.0):
    """Cosine annealing from ``lr`` to ``final_lr``, restarted every
    ``period`` updates, each period ``mult`` (a whole number >= 1) times
    the last: torch's CosineAnnealingWarmRestarts(T_0=period,
    T_mult=mult, eta_min=final_lr)."""
    return _one(RESTARTS, (_real("lr", lr), _count("period", period),
                           _count("mult", mult), _real("final_lr", final_lr)),
                f"cosine_restarts({lr!r}, period={period!r}, mult={mult!r}, "
                f"final_lr={final_lr!r})")


def linear(init, end, steps):
    """From ``init`` to ``end`` linearly over ``steps`` updates, then
    ``end``."""
    return _one(LINEAR, (_real("init", init), _real("end", end),
                         _real("steps", steps, low_open=True)),
                f"linear({init!r}, {end!r}, steps={steps!r})")


def polynomial(init, end, power, steps):
    """``(init - end) * (1 - min(k, steps) / steps) ** power + end``."""
    return _one(POLYNOMIAL, (_real("init", init), _real("end", end),
                             _real("power", power, low_open=True),
                             _real("steps", steps, low_open=True)),
                f"polynomial({init!r}, {end!r}, power={power!r}, steps={steps!r})")


def one_cycle(max_lr, total_steps, pct_start=0.3, div_factor=25.0,
              final_div_factor=1e4, anneal="cos", three_phase=False):
    """torch's OneCycleLR (without momentum cycling): from ``max_lr /
    div_factor`` up to ``max_lr`` over the first ``pct_start`` of
    ``total_steps`` updates, then down to ``max_lr / (div_factor *
    final_div_factor)`` (with ``three_phase``, back to the start first),
    ``anneal`` ``"cos"`` or ``"linear"``; after ``total_steps`` updates the
    rate stays at the minimum (torch refuses to step further)."""
    if anneal not in ("cos", "linear"):
        raise ValueError(f"anneal must be 'cos' or 'linear', got {anneal!r}")
    peak = _real("max_lr", max_lr)
    total = _count("total_steps", total_steps, 2)
    pct = _real("pct_start", pct_start, low_open=True)
    if not pct < 1.0:
        raise ValueError(f"pct_start must be < 1, got {pct_start!r}")
    initial = peak / _real("div_factor", div_factor, low_open=True)
    low = initial / _real("final_div_factor", final_div_factor, low_open=True)
    flags = (1 if anneal == "cos" else 0) | (2 if three_phase else 0)
    return _one(ONE_CYCLE, (initial, peak, low, total, pct, float(flags)),
                f"one_cycle({max_lr!r}, {total_steps!r}, pct_start={pct_start!r}, "
                f"div_factor={div_factor!r}, final_div_factor={final_div_factor!r}, "
                f"anneal={anneal!r}, three_phase={bool(three_phase)!r})")


def cyclic(base_lr, max_lr, step_size_up, step_size_down=None, mode="triangular",
           gamma=1.0):
    """torch's CyclicLR (without momentum cycling): between ``base_lr`` and
    ``max_lr``, up over ``step_size_up`` updates and down over
    ``step_size_down`` (the same by default); ``mode`` ``"triangular"``,
    ``"triangular2"`` (the height halved every cycle) or ``"exp_range"``
    (scaled by ``gamma ** k``)."""
    modes = {"triangular": 0.0, "triangular2": 1.0, "exp_range": 2.0}
    if mode not in modes:
        raise ValueError(f"mode must be one of {', '.join(map(repr, modes))}, got "
                         f"{mode!r}")
    up = _real("step_size_up", step_size_up, low_open=True)
    down = up if step_size_down is None else _real("step_size_down", step_size_down,
                                                   low_open=True)
    return _one(CYCLIC, (_real("base_lr", base_lr), _real("max_lr", max_lr), up, down,
                         modes[mode], _real("gamma", gamma, low_open=True)),
                f"cyclic({base_lr!r}, {max_lr!r}, step_size_up={step_size_up!r}, "
                f"step_size_down={step_size_down!r}, mode={mode!r}, gamma={gamma!r})")


def reduce_on_plateau(lr, factor=0.1, patience=10, threshold=1e-4,
                      threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
    """torch's ReduceLROnPlateau (mode ``"min"``), watching the loss of a
    :func:`numadam.minimize` run: after each update the loss at the iterate
    that update started from (in minibatch runs, the smoothed loss the
    termination tests see) is compared with the best so far; after more than
    ``patience`` updates without an improvement (below ``best * (1 -
    threshold)``, or ``best - threshold`` with ``threshold_mode="abs"``) the
    rate is multiplied by ``factor``, not below ``min_lr`` (a change smaller
    than ``eps`` is not made), and ``cooldown`` updates pass before the count
    starts again. It needs the run's losses: :class:`numadam.Optimizer`
    refuses it (set ``opt.param_groups[i]["lr"]`` from your own loop), and it
    cannot be joined to other schedules."""
    if threshold_mode not in ("rel", "abs"):
        raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
    rate0 = _real("lr", lr)
    f = _real("factor", factor, low_open=True)
    if not f < 1.0:
        raise ValueError(f"factor must be < 1, got {factor!r}")
    state = (rate0, math.inf, 0.0, 0.0, 1.0 if threshold_mode == "rel" else 0.0,
             _real("eps", eps))
    return _one(PLATEAU, (rate0, f, _count("patience", patience, 0),
                          _real("threshold", threshold), _count("cooldown", cooldown, 0),
                          _real("min_lr", min_lr)),
                f"reduce_on_plateau({lr!r}, factor={factor!r}, patience={patience!r}, "
                f"threshold={threshold!r}, threshold_mode={threshold_mode!r}, "
                f"cooldown={cooldown!r}, min_lr={min_lr!r}, eps={eps!r})",
                extra=state)


def watches_loss(schedule):
    """Whether ``schedule`` is a :func:`reduce_on_plateau`, which needs the
    losses of a run."""
    return isinstance(schedule, Schedule) and PLATEAU in schedule.kinds


def _as_schedule(value, name):
    if isinstance(value, Schedule):
        return value
    return constant(_real(name, value))


def join(schedules, boundaries):
    """``schedules[0]`` until update count ``boundaries[0]``, then
    ``schedules[1]`` counting from 0 again, and so on (optax's
    ``join_schedules``). Floats stand for constant schedules."""
    schedules = [_as_schedule(s, "a schedule") for s in schedules]
    if any(watches_loss(s) for s in schedules):
        raise ValueError("reduce_on_plateau cannot be joined to other schedules")
    marks = [_count("boundaries", b, 1) for b in boundaries]
    if len(marks) != len(schedules) - 1:
        raise ValueError(f"join needs one boundary fewer than schedules: got "
                         f"{len(schedules)} schedules and {len(marks)} boundaries")
    segments, starts = [], []
    offset = 0.0
    for s, b in zip(schedules, [0.0] + marks):
        offset = b
        for j, seg in enumerate(s.segments):
            if segments:
                starts.append(offset + (s.boundaries[j - 1] if j else 0.0))
            segments.append(seg)
    if any(b <= a for a, b in zip(starts, starts[1:])):
        raise ValueError(f"boundaries must increase, got {list(boundaries)!r}")
    text = f"join([{', '.join(map(repr, schedules))}], {list(boundaries)!r})"
    return Schedule(tuple(segments), tuple(starts), text)


def warmup(schedule, steps, init=0.0):
    """A linear warm-up over the first ``steps`` updates, from ``init`` to
    the schedule's first rate, joined to ``schedule`` (which then counts
    from 0). ``schedule`` may be a Schedule or a float."""
    schedule = _as_schedule(schedule, "schedule")
    if watches_loss(schedule):
        raise ValueError("reduce_on_plateau cannot be joined to a warm-up")
    n = _count("steps", steps)
    ramp = linear(_real("init", init), schedule(0), n)
    out = join([ramp, schedule], [n])
    return Schedule(out.segments, out.boundaries,
                    f"warmup({schedule!r}, steps={steps!r}, init={init!r})")
