"""Adadelta: steps scaled by the ratio of running root-mean-squares of the
past updates and of the gradients (torch.optim.Adadelta)."""

import math

from . import Rule, weight_decay_flag, zeros
from ._math import decay_pair, jitable


@jitable
def coefficients(h, aux, lr, F, c, T):
    aux[0] = aux[0] + 1.0
    decay_pair(c, 0, h[0])     # rho
    c[2] = h[1]          # eps
    c[3] = h[2]          # weight_decay
    c[4] = lr


@jitable(inline=True)
def update(i, X, g, S, c, F):
    """torch's order of operations: ``u = rho u + (1 - rho) g g``,
    ``d = sqrt(a + eps) / sqrt(u + eps) * g``, ``a = rho a + (1 - rho) d d``,
    ``x = x - lr d``."""
    if F[0]:
        g = g + c[3] * X[i]
    u = c[0] * S[0, i] + c[1] * g * g
    S[0, i] = u
    a = S[1, i]
    d = math.sqrt(a + c[2]) / math.sqrt(u + c[2]) * g
    S[1, i] = c[0] * a + c[1] * d * d
    return X[i] - c[4] * d


@jitable
def catchup_factors(k, cf, F):
    """``k`` zero-gradient steps: both running means decay by rho**k and x
    stays where it is (the update is a multiple of the gradient)."""
    return (cf[0] ** k,)


@jitable(inline=True)
def catchup(i, X, S, f, F):
    T = X.dtype.type
    S[0, i] = S[0, i] * T(f[0])
    S[1, i] = S[1, i] * T(f[0])
    return X[i]


ADADELTA = Rule(
    name="adadelta",
    nonnegative=("u", "a"),
    state_names=(("u", "square_avg"), ("a", "acc_delta")),
    hyper=("rho", "eps", "weight_decay"),
    flags=weight_decay_flag,
    flag_names=("weight_decay != 0",),
    slots=lambda F: ("u", "a"),
    slot_init=zeros,
    coefficients=coefficients,
    update=update,
    catchup_factors=catchup_factors,
    catchup=catchup,
)
