r"""Learning-rate schedules, for Python and compiled loops alike.

A schedule is data: a kind and a few numbers, evaluated by one function,
:func:`schedule_value`, that runs as plain Python and compiles with Numba, so
the Python-driven loop and the compiled loop give the same rates bitwise.
Pass one as the ``learning_rate`` option::

    from numadam import schedules
    lr = schedules.warmup(schedules.cosine(1e-2, decay_steps=10_000), steps=500)
    numadam.minimize(fun, x0, jac=grad, options={"learning_rate": lr})

``t`` is the step number, 1 for the first update (a continued run goes on
counting). With :math:`\gamma` the base rate:

``constant(lr)``
    :math:`\gamma`.
``inverse_sqrt(lr, offset=0)``
    :math:`\gamma / \sqrt{t + \text{offset}}`; the Adam paper's analysis
    uses :math:`\gamma/\sqrt{t}`.
``exponential(lr, rate, steps=1)``
    :math:`\gamma\,\text{rate}^{t / \text{steps}}`.
``step(lr, rate, steps)``
    :math:`\gamma\,\text{rate}^{\lfloor t / \text{steps}\rfloor}`.
``cosine(lr, decay_steps, final_lr=0)``
    :math:`m + (\gamma - m)\,(1 + \cos(\pi \min(t, T)/T))/2`, with :math:`m`
    the final rate and :math:`T` ``decay_steps``.
``warmup(schedule, steps, init=0)``
    a linear ramp from ``init`` for ``t < steps``, reaching the schedule's
    first rate at ``t = steps``; from there the schedule, shifted so that it
    starts at its own ``t = 1``.

``learning_rate`` may also be a Python callable of ``t``; it runs in the
Python-driven loop only (minimize then does not compile the loop).
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np
from numba.extending import register_jitable

__all__ = ["Schedule", "constant", "inverse_sqrt", "exponential", "step", "cosine",
           "warmup", "schedule_value"]

CONSTANT, INVERSE_SQRT, EXPONENTIAL, STEP, COSINE = 0, 1, 2, 3, 4
_NAMES = {CONSTANT: "constant", INVERSE_SQRT: "inverse_sqrt",
          EXPONENTIAL: "exponential", STEP: "step", COSINE: "cosine"}

# layout of the parameter array: kind, lr, a, b, c, warmup steps, warmup init
_SIZE = 7


@register_jitable
def _base(kind, lr, a, b, c, t):
    if kind == INVERSE_SQRT:
        return lr / math.sqrt(t + a)
    if kind == EXPONENTIAL:
        return lr * a ** (t / b)
    if kind == STEP:
        return lr * a ** math.floor(t / b)
    if kind == COSINE:
        tt = t if t < b else b
        return c + (lr - c) * (1.0 + math.cos(math.pi * tt / b)) / 2.0
    return lr


@register_jitable
def _value(kind, warm, p, t):
    if warm:
        w = p[5]
        if t < w:
            target = _base(kind, p[1], p[2], p[3], p[4], 1.0)
            return p[6] + (target - p[6]) * (t / w)
        t = t - w + 1.0
    return _base(kind, p[1], p[2], p[3], p[4], t)


@register_jitable
def schedule_value(p, t):
    """The rate at step ``t`` of the schedule with parameters ``p``."""
    return _value(int(p[0]), p[5] > 0.0, p, t)


@functools.cache
def rate_function(kind, warm):
    """``rate(p, t)``: :func:`schedule_value` for the schedules of one kind,
    with (``warm``) or without a warm-up, for compiled loops.

    The kind and the switch are compile-time constants there, so the code of
    the other kinds is left out; a loop that can reach every kind's
    arithmetic has the compiler evaluate some of it speculatively on every
    step. The rates are bitwise those of :func:`schedule_value`.
    """
    def rate(p, t):
        return _value(kind, warm, p, t)
    return register_jitable(rate)


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule (build one with the functions of this module).

    Calling it gives the rate at step ``t``: ``schedule(1)`` is the first.
    """

    kind: int
    lr: float
    a: float = 0.0
    b: float = 1.0
    c: float = 0.0
    warmup_steps: float = 0.0
    warmup_init: float = 0.0

    @property
    def params(self):
        """The float64 array the compiled loops evaluate."""
        return np.array([self.kind, self.lr, self.a, self.b, self.c,
                         self.warmup_steps, self.warmup_init], dtype=np.float64)

    def __call__(self, t):
        return schedule_value(self.params, float(t))

    def __repr__(self):
        args = {CONSTANT: f"{self.lr!r}",
                INVERSE_SQRT: f"{self.lr!r}, offset={self.a!r}",
                EXPONENTIAL: f"{self.lr!r}, rate={self.a!r}, steps={self.b!r}",
                STEP: f"{self.lr!r}, rate={self.a!r}, steps={self.b!r}",
                COSINE: f"{self.lr!r}, decay_steps={self.b!r}, final_lr={self.c!r}"}
        text = f"{_NAMES[self.kind]}({args[self.kind]})"
        if self.warmup_steps:
            text = (f"warmup({text}, steps={int(self.warmup_steps)}, "
                    f"init={self.warmup_init!r})")
        return text


def _real(name, value, low=0.0, low_open=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (v > low if low_open else v >= low)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>' if low_open else '>='} "
                         f"{low:g}, got {value!r}")
    return v


def constant(lr):
    """The constant rate ``lr``."""
    return Schedule(CONSTANT, _real("lr", lr))


def inverse_sqrt(lr, offset=0.0):
    """``lr / sqrt(t + offset)``: the rate of the Adam paper's analysis."""
    return Schedule(INVERSE_SQRT, _real("lr", lr), a=_real("offset", offset))


def exponential(lr, rate, steps=1):
    """``lr * rate ** (t / steps)``, a smooth decay by ``rate`` every ``steps``."""
    rate = _real("rate", rate, low=0.0, low_open=True)
    return Schedule(EXPONENTIAL, _real("lr", lr), a=rate,
                    b=_real("steps", steps, low=0.0, low_open=True))


def step(lr, rate, steps):
    """``lr * rate ** floor(t / steps)``: the rate multiplied by ``rate`` every
    ``steps`` steps."""
    rate = _real("rate", rate, low=0.0, low_open=True)
    return Schedule(STEP, _real("lr", lr), a=rate,
                    b=_real("steps", steps, low=0.0, low_open=True))


def cosine(lr, decay_steps, final_lr=0.0):
    """Cosine annealing from ``lr`` to ``final_lr`` over ``decay_steps`` steps,
    then ``final_lr``."""
    steps = _real("decay_steps", decay_steps, low=0.0, low_open=True)
    return Schedule(COSINE, _real("lr", lr), b=steps, c=_real("final_lr", final_lr))


def warmup(schedule, steps, init=0.0):
    """A linear warm-up over the first ``steps`` steps, from ``init`` to the
    schedule's first rate, joined to ``schedule`` (which then starts at its
    own ``t = 1``). ``schedule`` may be a Schedule or a float."""
    if not isinstance(schedule, Schedule):
        schedule = constant(schedule)
    if schedule.warmup_steps:
        raise ValueError("schedule already has a warm-up")
    n = _real("steps", steps, low=0.0, low_open=True)
    if not float(n).is_integer():
        raise ValueError(f"steps must be a whole number, got {steps!r}")
    return Schedule(schedule.kind, schedule.lr, schedule.a, schedule.b, schedule.c,
                    warmup_steps=n, warmup_init=_real("init", init))
