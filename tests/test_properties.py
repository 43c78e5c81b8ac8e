"""Properties of the Adam paper (Kingma & Ba, 2014) and hypothesis tests over
random options and shapes."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numadam

from reference import Reference


def _adam_steps(grads, x0, **options):
    x = np.array(x0, dtype=np.float64)
    opt = numadam.Optimizer("adam", x, **options)
    out = []
    for g in grads:
        before = x.copy()
        opt.step(g)
        out.append(x - before)
    return np.array(out)


@pytest.mark.parametrize("method", ["adam", "amsgrad", "adamw", "nadam", "adamax",
                                    "rmsprop", "adagrad"])
def test_invariant_to_rescaling_the_gradient(method):
    """With eps = 0, c * g gives the same steps: exactly for c a power of two,
    to rounding for any c > 0. (radam is not invariant: its first steps,
    before the rectification applies, are momentum steps on the raw gradient.)"""
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((200, 16))
    x0 = rng.standard_normal(16)
    runs = {}
    for c in (1.0, 8.0, 3.7):
        x = x0.copy()
        opt = numadam.Optimizer(method, x, eps=0.0)
        for g in grads:
            opt.step(c * g)
        runs[c] = x
    np.testing.assert_array_equal(runs[8.0], runs[1.0])
    np.testing.assert_allclose(runs[3.7], runs[1.0], rtol=1e-12, atol=1e-15)


def test_sgd_is_not_scale_invariant():
    """The control for the test above: plain sgd's step scales with c."""
    x1, x2 = np.ones(3), np.ones(3)
    numadam.Optimizer("sgd", x1, learning_rate=0.1).step(np.ones(3))
    numadam.Optimizer("sgd", x2, learning_rate=0.1).step(8 * np.ones(3))
    np.testing.assert_allclose(1 - x2, 8 * (1 - x1))


def test_constant_gradient_steps_are_exactly_lr():
    """Bias correction makes m_hat = g and v_hat = g**2 from the first step:
    a constant gradient moves every coordinate by lr * sign(g) (eps = 0)."""
    g = np.array([3.0, -0.25, 1e-3, 40.0])
    steps = _adam_steps([g] * 50, np.zeros(4), learning_rate=0.01, eps=0.0)
    np.testing.assert_allclose(steps, np.broadcast_to(-0.01 * np.sign(g), steps.shape),
                               rtol=1e-12)


def test_step_bound_in_the_sparse_case():
    """(1 - beta1) > sqrt(1 - beta2): a gradient that is zero at every step but
    the current one gives the largest step, which approaches and never
    exceeds lr (1 - beta1) / sqrt(1 - beta2)."""
    lr, b1, b2 = 0.01, 0.9, 0.999
    bound = lr * (1 - b1) / math.sqrt(1 - b2)
    for t in (1, 2, 10, 100, 1000, 5000):
        grads = [np.zeros(1)] * (t - 1) + [np.ones(1)]
        # a tiny first gradient keeps v positive on the zero steps (with
        # eps = 0 an all-zero history would give 0 / 0)
        grads[0] = grads[0] + 1e-100
        step = abs(_adam_steps(grads, np.zeros(1), learning_rate=lr, eps=0.0)[-1, 0])
        assert step <= bound * (1 + 1e-12)
    assert step > 0.99 * bound


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.9, 0.9), (0.5, 0.99)])
def test_step_bound_for_typical_gradients(betas):
    """Random gradients (a fixed seed): |step| <= lr when (1 - beta1) <=
    sqrt(1 - beta2), and <= lr (1 - beta1)/sqrt(1 - beta2) otherwise."""
    b1, b2 = betas
    lr = 0.01
    bound = lr * (1 - b1) / math.sqrt(1 - b2) if (1 - b1) > math.sqrt(1 - b2) else lr
    rng = np.random.default_rng(11)
    grads = rng.standard_normal((2000, 64)) * rng.lognormal(0, 2, 64)
    steps = _adam_steps(grads, np.zeros(64), learning_rate=lr, beta1=b1, beta2=b2, eps=0.0)
    assert np.max(np.abs(steps)) <= bound


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False).map(
           lambda g: g if abs(g) > 1e-100 else 0.0), min_size=1, max_size=60),
       st.sampled_from([(0.9, 0.999), (0.9, 0.9), (0.5, 0.99), (0.0, 0.5)]))
def test_step_never_exceeds_the_cauchy_schwarz_bound(gs, betas):
    """For any gradient sequence: |step_t| <= lr (1-b1)/(1-b1^t)
    sqrt((1-b2^t)/(1-b2)) sqrt(sum_j (b1^2/b2)^j), the tight bound of which the
    paper's figures are the usual case (eps = 0, b1^2 < b2). Gradients below
    1e-100 are zero here: their squares underflow and v would be 0."""
    b1, b2 = betas
    lr = 1.0
    grads = [np.array([g]) for g in gs]
    if not any(gs):
        return
    first = next(i for i, g in enumerate(gs) if g != 0.0)
    steps = _adam_steps(grads[first:], np.zeros(1), learning_rate=lr, beta1=b1,
                        beta2=b2, eps=0.0)
    for t, step in enumerate(steps[:, 0], 1):
        r = b1 * b1 / b2
        series = t if r == 1 else (1 - r ** t) / (1 - r)
        bound = lr * (1 - b1) / (1 - b1 ** t) * math.sqrt(
            (1 - b2 ** t) / (1 - b2)) * math.sqrt(series)
        assert abs(step) <= bound * (1 + 1e-9)


_RANGES = {
    "learning_rate": st.floats(0.0, 0.5),
    "beta1": st.floats(0.0, 0.999),
    "beta2": st.floats(0.0, 0.9999),
    "eps": st.floats(1e-12, 1e-2),
    "weight_decay": st.floats(0.0, 0.1),
    "momentum": st.floats(0.0, 0.99),
    "dampening": st.floats(0.0, 1.0),
    "alpha": st.floats(0.0, 1.0),
    "lr_decay": st.floats(0.0, 0.1),
    "initial_accumulator_value": st.floats(0.0, 1.0),
    "momentum_decay": st.floats(0.0, 0.1),
    "amsgrad": st.booleans(),
    "decoupled_weight_decay": st.booleans(),
    "centered": st.booleans(),
    "nesterov": st.booleans(),
}


@st.composite
def method_and_options(draw):
    method = draw(st.sampled_from(list(numadam.methods)))
    names = [n for n in numadam.show_options(method, disp=False).split("Options\n")[1]
             .splitlines() if " : " in n]
    names = [n.split(" : ")[0] for n in names if n.split(" : ")[0] in _RANGES]
    options = {n: draw(_RANGES[n]) for n in names if draw(st.booleans())}
    if options.get("nesterov"):
        options["momentum"] = draw(st.floats(0.1, 0.99))
        options["dampening"] = 0.0
    return method, options


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method_and_options(), st.integers(1, 300), st.sampled_from([np.float64, np.float32]),
       st.integers(0, 2**32 - 1))
def test_random_options_and_shapes_match_reference(mo, n, dtype, seed):
    method, options = mo
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(n).astype(dtype)
    target = rng.standard_normal(n).astype(dtype)
    scale = rng.uniform(0.1, 10, n).astype(dtype)

    def grad(x):
        return (scale * (x - target)).astype(dtype)

    ref = Reference(method, x0, **options)
    res = numadam.minimize(lambda x: 0.0, x0, method=method, jac=grad,
                           options=dict(options, maxiter=20, gtol=0.0))
    with np.errstate(all="ignore"):     # centred rmsprop may take sqrt(< 0)
        for _ in range(20):
            ref.step(grad(ref.x))
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    finite = np.isfinite(ref.x)
    if res.status == 3:      # a non-finite value stopped the run early
        assert not finite.all() or res.nit < 20
        return
    assert res.x.dtype == dtype
    np.testing.assert_allclose(res.x, ref.x, rtol=rtol, atol=1e-30)


@pytest.mark.parametrize("method", ["adam", "nadam", "radam", "adamax"])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.95, 0.9999), (0.5, 0.8)])
def test_running_powers_are_correctly_rounded(method, betas):
    """The bias corrections' beta**t, kept as running products with their
    rounding error, equal beta**t computed exactly and rounded once."""
    from fractions import Fraction

    b1, b2 = betas
    x = np.zeros(3)
    opt = numadam.Optimizer(method, x, beta1=b1, beta2=b2)
    g = np.array([1.0, -2.0, 0.5])
    for t in range(1, 1201):
        opt.step(g)
        if t in (1, 2, 10, 97, 500, 1200):
            s = opt.state.scalars
            assert s["beta1_power"] == float(Fraction(b1) ** t), t
            assert s["beta2_power"] == float(Fraction(b2) ** t), t
