"""RMSprop, optionally centred and with momentum."""

import math

from . import Rule, zeros
from ._math import decay_pair, geometric_sum, jitable


@jitable
def coefficients(h, aux, lr, F, c, T):
    aux[0] = aux[0] + 1.0
    decay_pair(c, 0, h[0])     # alpha
    c[2] = h[1]          # eps
    c[3] = h[2]          # weight_decay
    c[4] = h[3]          # momentum
    c[5] = lr


@jitable(inline=True)
def update(i, X, g, S, c, F):
    if F[2]:
        g = g + c[3] * X[i]
    v = c[0] * S[0, i] + c[1] * (g * g)
    S[0, i] = v
    if F[0]:
        a = c[0] * S[1, i] + c[1] * g
        S[1, i] = a
        den = math.sqrt(v - a * a) + c[2]
    else:
        den = math.sqrt(v) + c[2]
    if F[1]:
        k = 2 if F[0] else 1
        b = c[4] * S[k, i] + g / den
        S[k, i] = b
        return X[i] - c[5] * b
    return X[i] - c[5] * g / den


@jitable
def catchup_factors(k, cf, F):
    """``k`` zero-gradient steps: v (and a) decay by alpha**k; a momentum
    buffer decays by mu**k and moves x by -lr * b * sum_j mu**j (exact for a
    constant learning rate)."""
    ak = cf[0] ** k
    if not F[1]:
        return ak, 1.0, 0.0
    mu = cf[4]
    pk = mu ** k
    return ak, pk, cf[5] * geometric_sum(mu, pk, k)


@jitable(inline=True)
def catchup(i, X, S, f, F):
    T = X.dtype.type
    S[0, i] = S[0, i] * T(f[0])
    if F[0]:
        S[1, i] = S[1, i] * T(f[0])
    if F[1]:
        k = 2 if F[0] else 1
        b = S[k, i]
        S[k, i] = b * T(f[1])
        return X[i] - T(f[2]) * b
    return X[i]


def flags(options):
    return (bool(options["centered"]), options["momentum"] > 0.0,
            options["weight_decay"] != 0.0)


def slots(F):
    return ("v",) + (("a",) if F[0] else ()) + (("b",) if F[1] else ())


RMSPROP = Rule(
    name="rmsprop",
    nonnegative=("v",),
    state_names=(("v", "square_avg"), ("a", "grad_avg"), ("b", "momentum_buffer")),
    hyper=("alpha", "eps", "weight_decay", "momentum"),
    flags=flags,
    flag_names=("centered", "momentum_buffer", "weight_decay != 0"),
    slots=slots,
    slot_init=zeros,
    coefficients=coefficients,
    update=update,
    catchup_factors=catchup_factors,
    catchup=catchup,
)
