"""Stochastic gradient descent with optional (Nesterov) momentum."""

from . import Rule, zeros
from ._math import geometric_sum, jitable


@jitable
def coefficients(h, aux, lr, F, c, T):
    t = aux[0] + 1.0
    aux[0] = t
    momentum = h[0]
    dampening = h[1]
    c[0] = lr
    c[1] = h[2]                      # weight_decay
    c[2] = momentum                  # the Nesterov look-ahead factor
    if t == 1.0:
        # b = g on the first step, written as b = 0 * b + 1 * g.
        c[3] = 0.0
        c[4] = 1.0
    else:
        c[3] = momentum
        c[4] = 1.0 - dampening


@jitable(inline=True)
def update(i, X, g, S, c, F):
    if F[2]:
        g = g + c[1] * X[i]
    if F[0]:
        b = c[3] * S[0, i] + c[4] * g
        S[0, i] = b
        if F[1]:
            d = g + c[2] * b
        else:
            d = b
    else:
        d = g
    return X[i] - c[0] * d


@jitable
def catchup_factors(k, cf, F):
    """``k`` zero-gradient steps: the buffer decays by mu**k and x moves by
    -lr * b * sum_j mu**j (mu**(j+1) with Nesterov), in closed form; exact
    for a constant learning rate (the step's rate stands for the skipped
    ones)."""
    mu = cf[2]
    if not F[0] or mu == 0.0:
        return 1.0, 0.0
    pk = mu ** k
    total = geometric_sum(mu, pk, k)
    if F[1]:
        total *= mu
    return pk, cf[0] * total


@jitable(inline=True)
def catchup(i, X, S, f, F):
    if not F[0]:
        return X[i]
    T = X.dtype.type
    b = S[0, i]
    S[0, i] = b * T(f[0])
    return X[i] - T(f[1]) * b


def flags(options):
    return (options["momentum"] != 0.0, bool(options["nesterov"]),
            options["weight_decay"] != 0.0)


def slots(F):
    return ("b",) if F[0] else ()


SGD = Rule(
    name="sgd",
    state_names=(("b", "momentum_buffer"),),
    hyper=("momentum", "dampening", "weight_decay"),
    flags=flags,
    flag_names=("momentum_buffer", "nesterov", "weight_decay != 0"),
    slots=slots,
    slot_init=zeros,
    coefficients=coefficients,
    update=update,
    catchup_factors=catchup_factors,
    catchup=catchup,
    parallel_threshold=(1 << 14, 1 << 16),
)
