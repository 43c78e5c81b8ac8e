"""Lion (EvoLved Sign Momentum, Chen et al. 2023), as optax.lion computes it.

The step is the sign of an interpolation between the gradient and the
momentum, plus decoupled weight decay, scaled by the learning rate; the
momentum is then updated with a second decay rate:
``c = (1 - beta1) g + beta1 m``, ``x = x + (-lr) (sign(c) + wd x)``,
``m = (1 - beta2) g + beta2 m``.
"""

from . import Rule, weight_decay_flag, zeros
from ._math import decay_pair, geometric_sum, jitable


@jitable
def coefficients(h, aux, lr, F, c, T):
    aux[0] = aux[0] + 1.0
    decay_pair(c, 0, h[0])     # beta1
    decay_pair(c, 2, h[1])     # beta2
    c[4] = -lr
    c[5] = h[2]          # weight_decay
    c[6] = 1.0           # the sign's unit, rounded to the element type
    c[7] = lr
    c[8] = 1.0 - lr * h[2]


@jitable(inline=True)
def _sign(v, one):
    """``sign(v)`` as jnp.sign gives it: +-1, a signed zero for a zero, NaN
    for NaN."""
    if v > 0.0:
        return one
    if v < 0.0:
        return -one
    return v


@jitable(inline=True)
def update(i, X, g, S, c, F):
    m = S[0, i]
    u = _sign(c[1] * g + c[0] * m, c[6])
    S[0, i] = c[3] * g + c[2] * m
    x = X[i]
    if F[0]:
        u = u + c[5] * x
    return x + c[4] * u


@jitable
def catchup_factors(k, cf, F):
    """``k`` zero-gradient steps: m decays by beta2**k and keeps its sign, so
    each step moves x by ``-lr sign(m)`` (nothing when beta1 is 0); with
    weight decay each step also multiplies x by ``q = 1 - lr wd``, so
    ``x_k = q**k x - lr sign(m) (1 + q + ... + q**(k-1))``. Returns
    (beta2**k, q**k, the move's coefficient)."""
    if cf[0] == 0.0:
        return cf[2] ** k, 1.0, 0.0
    q = cf[8] if F[0] else 1.0
    qk = q ** k
    return cf[2] ** k, qk, cf[7] * (1.0 + geometric_sum(q, qk, k) - qk)


@jitable(inline=True)
def catchup(i, X, S, f, F):
    T = X.dtype.type
    m = S[0, i]
    S[0, i] = m * T(f[0])
    x = X[i] * T(f[1])
    return x - T(f[2]) * _sign(m, T(1.0))


LION = Rule(
    name="lion",
    state_names=(("m", "exp_avg"),),
    hyper=("beta1", "beta2", "weight_decay"),
    flags=weight_decay_flag,
    flag_names=("weight_decay != 0",),
    slots=lambda F: ("m",),
    slot_init=zeros,
    coefficients=coefficients,
    update=update,
    catchup_factors=catchup_factors,
    catchup=catchup,
)
