"""The Adam family: adam (with amsgrad and decoupled weight decay), adamax,
nadam and radam.  They share the moment updates and the weight-decay step.

Divisions of a per-element value by a per-step scalar (``sqrt(1 - beta2**t)``
in adam, ``1 - beta2**t`` in nadam, ``1 - beta1**t`` in radam) go through
:func:`numadam._rules._math.div_by`: bitwise the division, at the cost of a
multiply and two FMAs. The scalar is rounded to the element type before its
reciprocal is formed, so that the identity holds in float32 too.
"""

import math

from . import Rule, weight_decay_flag, zeros
from ._math import decay_pair, div_by, fma, geometric_sum, jitable


@jitable(inline=True)
def _coupled_decay(i, X, g, enabled, decoupled, wd):
    """The gradient with coupled weight decay, ``g + wd * x``."""
    if enabled and not decoupled:
        return g + wd * X[i]
    return g


@jitable(inline=True)
def _decoupled_x(i, X, enabled, decoupled, keep):
    """The parameter with decoupled weight decay, ``x * (1 - lr * wd)``.

    Read after the moments: the kernels run fastest when x is loaded late in
    the iteration (the values do not depend on when it is read)."""
    if enabled and decoupled:
        return X[i] * keep
    return X[i]


@jitable(inline=True)
def _moments(i, g, S, beta1, omb1, beta2, omb2):
    m = beta1 * S[0, i] + omb1 * g
    v = beta2 * S[1, i] + omb2 * (g * g)
    S[0, i] = m
    S[1, i] = v
    return m, v


@jitable(inline=True)
def _amsgrad_max(i, v, S, enabled):
    """With amsgrad, the running maximum of v (kept in ``S[2]``) stands for v."""
    if enabled:
        vmax = S[2, i]
        if v > vmax:
            vmax = v
        S[2, i] = vmax
        return vmax
    return v


@jitable
def _power_step(aux, j, beta):
    """Advance the running power ``beta**t`` kept in ``aux[j]`` (its value)
    and ``aux[j + 1]`` (its rounding error) by one factor ``beta``, and
    return it.

    The pair is a double-word number: the product's own rounding error,
    ``fma(hi, beta, -p)``, is carried along, so after ``t`` steps the pair is
    ``beta**t`` to within about ``t`` units of 1e-32, and ``aux[j]`` is
    ``beta**t`` correctly rounded, bitwise what ``beta ** t`` gives with a
    correctly rounded ``pow``. It costs five flops instead of a ``pow`` call,
    which takes longer than a whole adam step of a small problem.
    """
    hi = aux[j]
    p = hi * beta
    e = fma(hi, beta, -p) + aux[j + 1] * beta
    s = p + e
    aux[j] = s
    aux[j + 1] = e - (s - p)
    return s


@jitable
def _uncorrected(h, bc1, bc2):
    """The bias corrections as the step divides by them: ``(bc1, bc2)``, or
    ``(1, 1)`` when ``bias_correction`` (``h[4]``) is off, the Adam paper's
    ablation (Section 6.4): m and v used as they are."""
    if h[4] != 0.0:
        return bc1, bc2
    return 1.0, 1.0


@jitable
def _adam_scalars(h, aux, c):
    """Step count, ``beta ** t`` bias corrections and the shared scalars.

    ``aux`` holds ``t`` and the running powers of beta1 and beta2 (see
    :func:`_power_step`). Writes c[0..3] = beta1, 1 - beta1, beta2,
    1 - beta2 and returns (t, bc1, bc2, eps, weight_decay); the powers
    advance whether or not ``bias_correction`` is on (see
    :func:`_uncorrected`).
    """
    t = aux[0] + 1.0
    aux[0] = t
    beta1 = h[0]
    beta2 = h[1]
    decay_pair(c, 0, beta1)
    decay_pair(c, 2, beta2)
    return (t, 1.0 - _power_step(aux, 1, beta1), 1.0 - _power_step(aux, 3, beta2),
            h[2], h[3])


#: The running scalars of the Adam family: the step count and the running
#: powers of beta1 and beta2 with their rounding errors (:func:`_power_step`).
_AUX = (("t", 0.0), ("beta1_power", 1.0), ("beta1_power_error", 0.0),
        ("beta2_power", 1.0), ("beta2_power_error", 0.0))


# ----------------------------------------------------------------- adam ----

@jitable
def adam_coefficients(h, aux, lr, F, c, T):
    t, bc1, bc2, eps, wd = _adam_scalars(h, aux, c)
    bc1, bc2 = _uncorrected(h, bc1, bc2)
    c[4] = lr / bc1
    root = math.sqrt(bc2)
    sqrt_bc2 = T(root)
    c[5] = sqrt_bc2
    c[6] = eps
    c[7] = wd
    c[8] = 1.0 - lr * wd
    c[9] = T(1.0) / sqrt_bc2
    # for adam_sparse_coefficients
    c[10] = root
    c[11] = bc1


@jitable
def adam_sparse_coefficients(lr, c):
    """The lazy sparse rule's step size, as torch.optim.SparseAdam forms it:
    ``lr * sqrt(1 - beta2**t) / (1 - beta1**t)``."""
    c[10] = lr * c[10] / c[11]


@jitable(inline=True)
def adam_update(i, X, g, S, c, F):
    g = _coupled_decay(i, X, g, F[2], F[1], c[7])
    m, v = _moments(i, g, S, c[0], c[1], c[2], c[3])
    v = _amsgrad_max(i, v, S, F[0])
    x = _decoupled_x(i, X, F[2], F[1], c[8])
    return x - c[4] * m / (div_by(math.sqrt(v), c[5], c[9]) + c[6])


@jitable(inline=True)
def adam_lazy_update(i, X, g, S, c, F):
    """torch.optim.SparseAdam's rule for a touched coordinate: the moments
    as ``m + (1 - beta1) (g - m)`` and the "eps-hat" step
    ``lr sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + eps)``, with
    torch's order of operations; amsgrad and weight decay act on the touched
    coordinate only."""
    g = _coupled_decay(i, X, g, F[2], F[1], c[7])
    m0 = S[0, i]
    m = m0 + (g - m0) * c[1]
    v0 = S[1, i]
    v = v0 + (g * g - v0) * c[3]
    S[0, i] = m
    S[1, i] = v
    v = _amsgrad_max(i, v, S, F[0])
    x = _decoupled_x(i, X, F[2], F[1], c[8])
    return x - c[10] * (m / (math.sqrt(v) + c[6]))


@jitable
def adam_catchup_factors(k, cf, F):
    """``k`` zero-gradient steps: m decays by beta1**k and v by beta2**k
    (exactly), and x moves by the closed-form sum of the k steps computed with
    eps = 0 and with the learning rate and bias corrections of the current
    step: ``-a m sum_j r**j / sqrt(v)`` with ``a = lr sqrt(1 - beta2**t) /
    (1 - beta1**t)`` and ``r = beta1 / sqrt(beta2)`` (``r = beta1`` with
    amsgrad, whose maximum does not decay); with decoupled weight decay each
    step also multiplies x by ``q = 1 - lr wd``. Returns (beta1**k, beta2**k,
    q**k, the move's coefficient)."""
    b1 = cf[0]
    b2 = cf[2]
    d1 = b1 ** k
    d2 = b2 ** k
    a = cf[10]
    if F[0]:
        r = b1
        rk = d1
    else:
        r = b1 / math.sqrt(b2)
        rk = d1 / math.sqrt(d2) if d2 > 0.0 else 0.0
    q = cf[8] if (F[1] and F[2]) else 1.0
    qk = q ** k
    if q != 1.0:
        # x_k = q**k x - a (m / sqrt(v)) sum_j q**(k-j) r**j
        rho = r / q
        total = qk * geometric_sum(rho, rk / qk if qk > 0.0 else 0.0, k)
    else:
        total = geometric_sum(r, rk, k)
    return d1, d2, qk, a * total


@jitable(inline=True)
def adam_catchup(i, X, S, f, F):
    T = X.dtype.type
    m = S[0, i]
    v = S[1, i]
    den = math.sqrt(S[2, i]) if F[0] else math.sqrt(v)
    S[0, i] = m * T(f[0])
    S[1, i] = v * T(f[1])
    x = X[i] * T(f[2])
    if den > 0.0:
        x = x - T(f[3]) * (m / den)
    return x


def _decay_flags(options):
    """(decoupled, weight decay != 0): a zero weight decay is neither coupled
    nor decoupled, so both spellings share one kernel."""
    decay = options["weight_decay"] != 0.0
    return bool(options["decoupled_weight_decay"]) and decay, decay


def adam_flags(options):
    return (bool(options["amsgrad"]),) + _decay_flags(options)


def adam_slots(F):
    return ("m", "v", "vmax") if F[0] else ("m", "v")


ADAM = Rule(
    name="adam",
    nonnegative=("v", "vmax"),
    state_names=(("m", "exp_avg"), ("v", "exp_avg_sq"), ("vmax", "max_exp_avg_sq")),
    hyper=("beta1", "beta2", "eps", "weight_decay", "bias_correction"),
    flags=adam_flags,
    flag_names=("amsgrad", "decoupled_weight_decay", "weight_decay != 0"),
    slots=adam_slots,
    slot_init=zeros,
    coefficients=adam_coefficients,
    update=adam_update,
    aux=_AUX,
    lazy_update=adam_lazy_update,
    catchup_factors=adam_catchup_factors,
    catchup=adam_catchup,
    sparse_coefficients=adam_sparse_coefficients,
)


# --------------------------------------------------------------- adamax ----

@jitable
def adamax_coefficients(h, aux, lr, F, c, T):
    t, bc1, bc2, eps, wd = _adam_scalars(h, aux, c)
    bc1, bc2 = _uncorrected(h, bc1, bc2)
    c[4] = lr / bc1
    c[5] = eps
    c[6] = wd


@jitable(inline=True)
def adamax_update(i, X, g, S, c, F):
    if F[0]:
        g = g + c[6] * X[i]
    m = c[0] * S[0, i] + c[1] * g
    u = c[2] * S[1, i]
    a = abs(g) + c[5]
    if a > u:
        u = a
    S[0, i] = m
    S[1, i] = u
    return X[i] - c[4] * m / u


ADAMAX = Rule(
    name="adamax",
    nonnegative=("u",),
    state_names=(("m", "exp_avg"), ("u", "exp_inf")),
    hyper=("beta1", "beta2", "eps", "weight_decay", "bias_correction"),
    flags=weight_decay_flag,
    flag_names=("weight_decay != 0",),
    slots=lambda F: ("m", "u"),
    slot_init=zeros,
    coefficients=adamax_coefficients,
    update=adamax_update,
    aux=_AUX,
)


# ---------------------------------------------------------------- nadam ----

@jitable
def nadam_coefficients(h, aux, lr, F, c, T):
    t, bc1, bc2, eps, wd = _adam_scalars(h, aux, c)
    beta1 = h[0]
    momentum_decay = h[5]
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1.0) * momentum_decay))
    prod = aux[5] * mu
    aux[5] = prod
    # without bias correction, 1 - P_t and 1 - P_t mu_{t+1} (m's) and
    # 1 - beta2**t (v's) are 1
    corrected = h[4] != 0.0
    bc1, bc2 = _uncorrected(h, bc1, bc2)
    bc2 = T(bc2)
    c[4] = bc2
    c[5] = eps
    c[6] = wd
    c[7] = 1.0 - lr * wd
    c[8] = lr * (1.0 - mu) / (1.0 - prod) if corrected else lr * (1.0 - mu)
    c[9] = lr * mu_next / (1.0 - prod * mu_next) if corrected else lr * mu_next
    c[10] = T(1.0) / bc2


@jitable(inline=True)
def nadam_update(i, X, g, S, c, F):
    g = _coupled_decay(i, X, g, F[1], F[0], c[6])
    m, v = _moments(i, g, S, c[0], c[1], c[2], c[3])
    den = math.sqrt(div_by(v, c[4], c[10])) + c[5]
    x = _decoupled_x(i, X, F[1], F[0], c[7])
    return x - c[8] * g / den - c[9] * m / den


NADAM = Rule(
    name="nadam",
    nonnegative=("v",),
    state_names=(("m", "exp_avg"), ("v", "exp_avg_sq")),
    hyper=("beta1", "beta2", "eps", "weight_decay", "bias_correction",
           "momentum_decay"),
    flags=_decay_flags,
    flag_names=("decoupled_weight_decay", "weight_decay != 0"),
    slots=lambda F: ("m", "v"),
    slot_init=zeros,
    coefficients=nadam_coefficients,
    update=nadam_update,
    aux=_AUX + (("mu_product", 1.0),),
)


# ---------------------------------------------------------------- radam ----

@jitable
def radam_coefficients(h, aux, lr, F, c, T):
    t, bc1, bc2, eps, wd = _adam_scalars(h, aux, c)
    beta2 = h[1]
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * t * aux[3] / bc2   # aux[3]: beta2 ** t
    # the rectification keeps its schedule; without bias correction only m
    # and v are used as they are
    bc1, bc2 = _uncorrected(h, bc1, bc2)
    bc1 = T(bc1)
    c[4] = lr
    c[5] = bc1
    c[7] = math.sqrt(bc2)
    c[8] = eps
    c[9] = wd
    c[10] = 1.0 - lr * wd
    c[11] = T(1.0) / bc1
    if rho_t > 5.0:   # rectified: r > 0, which the update reads as the switch
        c[6] = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                         / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
    else:
        c[6] = 0.0


@jitable(inline=True)
def radam_update(i, X, g, S, c, F):
    g = _coupled_decay(i, X, g, F[1], F[0], c[9])
    m, v = _moments(i, g, S, c[0], c[1], c[2], c[3])
    x = _decoupled_x(i, X, F[1], F[0], c[10])
    if c[6] > 0.0:
        return x - c[4] * div_by(m, c[5], c[11]) * c[6] * c[7] / (math.sqrt(v) + c[8])
    return x - div_by(c[4] * m, c[5], c[11])


RADAM = Rule(
    name="radam",
    nonnegative=("v",),
    state_names=(("m", "exp_avg"), ("v", "exp_avg_sq")),
    hyper=("beta1", "beta2", "eps", "weight_decay", "bias_correction"),
    flags=_decay_flags,
    flag_names=("decoupled_weight_decay", "weight_decay != 0"),
    slots=lambda F: ("m", "v"),
    slot_init=zeros,
    coefficients=radam_coefficients,
    update=radam_update,
    aux=_AUX,
)
