"""Adagrad: per-coordinate steps scaled by the root of summed squared gradients."""

import math

from . import Rule, weight_decay_flag
from ._math import jitable


@jitable
def coefficients(h, aux, lr, F, c, T):
    t = aux[0] + 1.0
    aux[0] = t
    c[0] = lr / (1.0 + (t - 1.0) * h[0])   # lr_decay
    c[1] = h[1]                            # weight_decay
    c[2] = h[3]                            # eps


@jitable(inline=True)
def update(i, X, g, S, c, F):
    if F[0]:
        g = g + c[1] * X[i]
    s = S[0, i] + g * g
    S[0, i] = s
    return X[i] - c[0] * g / (math.sqrt(s) + c[2])


def slots(F):
    return ("s",)


def slot_init(options, F):
    return (options["initial_accumulator_value"],)


ADAGRAD = Rule(
    name="adagrad",
    nonnegative=("s",),
    state_names=(("s", "sum"),),
    hyper=("lr_decay", "weight_decay", "initial_accumulator_value", "eps"),
    flags=weight_decay_flag,
    flag_names=("weight_decay != 0",),
    slots=slots,
    slot_init=slot_init,
    coefficients=coefficients,
    update=update,
)
