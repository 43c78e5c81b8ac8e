"""Every method against the independent NumPy reference in tests/reference.py.

These tests drive the Python loop (compiled=False); tests/test_compiled.py
shows that the compiled loop gives bitwise the same numbers."""

import numpy as np
import pytest

import numadam
from numadam.problems import quadratic, rosenbrock

from conftest import DTYPES, VARIANTS, torch_run, variant_id
from reference import Reference, run

STEPS = 1000
RTOL = {np.float64: 1e-12, np.float32: 1e-5}


def _problems():
    return [rosenbrock(5), quadratic(12, cond=30.0, seed=3)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@pytest.mark.parametrize("problem", _problems(), ids=lambda p: p.name)
def test_minimize_matches_reference_after_1000_steps(problem, variant, dtype):
    method, options = variant
    pr = problem.astype(dtype)
    ref = run(method, pr.x0, lambda x: pr.jac(x, *pr.args), STEPS, **options)
    res = numadam.minimize(pr.fun, pr.x0, args=pr.args, method=method, jac=pr.jac,
                           options=dict(options, maxiter=STEPS, gtol=0.0,
                                        compiled=False))
    assert res.nit == STEPS
    assert res.x.dtype == dtype
    np.testing.assert_allclose(res.x, ref.x, rtol=RTOL[dtype], atol=0)
    assert res.state.step == STEPS
    assert set(res.state.names) == set(ref.state)
    for name in res.state.names:
        assert res.state.slots[name].dtype == dtype
        np.testing.assert_allclose(res.state.slots[name], ref.state[name],
                                   rtol=RTOL[dtype], atol=0, err_msg=name)
    if method == "nadam":
        assert res.state.scalars["mu_product"] == pytest.approx(ref.mu_product,
                                                                rel=1e-14)


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_optimizer_steps_match_reference(variant):
    """The bare update (numadam.Optimizer) on a fixed gradient sequence."""
    method, options = variant
    rng = np.random.default_rng(7)
    grads = rng.standard_normal((50, 33)) * rng.uniform(0.1, 10.0, 33)
    x = rng.standard_normal(33)
    ref = Reference(method, x, **options)
    opt = numadam.Optimizer(method, x, **options)
    for g in grads:
        opt.step(g)
        ref.step(g)
    np.testing.assert_allclose(x, ref.x, rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", ["adam", "sgd", "rmsprop", "nadam"])
def test_parallel_kernel_equals_serial_kernel_bitwise(method):
    """The prange kernel does the same element arithmetic as the serial one."""
    rng = np.random.default_rng(1)
    n = 50_000
    x1 = rng.standard_normal(n)
    x2 = x1.copy()
    opts = {"momentum": 0.9} if method in ("sgd", "rmsprop") else {}
    serial = numadam.Optimizer(method, x1, parallel=False, **opts)
    parallel = numadam.Optimizer(method, x2, parallel=True, **opts)
    assert not serial.parallel and parallel.parallel
    for _ in range(5):
        g = rng.standard_normal(n)
        serial.step(g)
        parallel.step(g)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(serial.state.S, parallel.state.S)


def test_torch_optim_agrees_on_a_convex_problem():
    """A peer check: torch.optim's documented algorithms, where installed.

    torch keeps scalar state such as nadam's mu_product in the default dtype,
    so the comparison runs with float64 as torch's default.
    """
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _compare_with_torch(torch)
    finally:
        torch.set_default_dtype(old)


def _compare_with_torch(torch):
    pr = quadratic(10, cond=10.0, seed=5)
    classes = {"sgd": (torch.optim.SGD, dict(momentum=0.9, nesterov=True)),
               "adagrad": (torch.optim.Adagrad, {}), "rmsprop": (torch.optim.RMSprop, {}),
               "adam": (torch.optim.Adam, {}), "amsgrad": (torch.optim.Adam, {"amsgrad": True}),
               "adamw": (torch.optim.AdamW, {}), "adamax": (torch.optim.Adamax, {}),
               "nadam": (torch.optim.NAdam, {}), "radam": (torch.optim.RAdam, {}),
               "adadelta": (torch.optim.Adadelta, {}),
               "adadelta-decay": (torch.optim.Adadelta, dict(rho=0.5, weight_decay=0.01))}
    for name, (cls, extra) in classes.items():
        method = name.split("-")[0]
        p = torch.tensor(pr.x0.copy(), dtype=torch.float64, requires_grad=True)
        opt = cls([p], lr=1e-3, foreach=False, **extra)
        for _ in range(300):
            p.grad = torch.from_numpy(pr.jac(p.detach().numpy(), *pr.args))
            opt.step()
        ours = {k: v for k, v in extra.items() if k != "amsgrad" or method == "adam"}
        res = numadam.minimize(pr.fun, pr.x0, args=pr.args, method=method, jac=pr.jac,
                               options=dict(ours, learning_rate=1e-3, maxiter=300, gtol=0))
        tol = 1e-12 if method == "adadelta" else 1e-10
        np.testing.assert_allclose(res.x, p.detach().numpy(), rtol=tol, atol=1e-14,
                                   err_msg=name)


@pytest.mark.parametrize("name, method, options", [
    ("Adam", "adam", dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.01)),
    ("AdamW", "adamw", dict(lr=0.02, betas=(0.5, 0.9), weight_decay=0.1)),
    ("NAdam", "nadam", dict(lr=0.01, betas=(0.85, 0.995))),
    ("RAdam", "radam", dict(lr=0.03, betas=(0.9, 0.95))),
    ("Adamax", "adamax", dict(lr=0.04, betas=(0.7, 0.9))),
    ("SGD", "sgd", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("Adagrad", "adagrad", dict(lr=0.2)),
])
def test_torch_spellings_give_torchs_run(name, method, options):
    """Options written as for torch.optim (``lr``, ``betas``) give the run
    torch.optim gives with them (float64 as torch's default dtype, in which
    it keeps scalar state such as nadam's mu_product)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal(9)
    grads = [rng.standard_normal(9) for _ in range(40)]
    want = torch_run(torch, name, x0, grads, **options)
    x = x0.copy()
    ours = numadam.Optimizer(method, x, **options)
    for g in grads:
        ours.step(g)
    np.testing.assert_allclose(x, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("options", [{}, dict(weight_decay=0.01),
                                     dict(beta1=0.5, beta2=0.9, weight_decay=0.1)])
def test_optax_lion_agrees(options):
    """A peer check of lion against optax.lion in float64, where installed:
    optax's order of operations (sign of the interpolation, decayed weights
    added, scaled by -learning_rate), so the numbers agree to 1e-12."""
    optax = pytest.importorskip("optax")
    import jax
    import jax.numpy as jnp

    pr = quadratic(10, cond=10.0, seed=5)
    lr, steps = 1e-3, 300
    with jax.enable_x64(True):
        tx = optax.lion(lr, b1=options.get("beta1", 0.9), b2=options.get("beta2", 0.99),
                        weight_decay=options.get("weight_decay", 0.0))
        params = jnp.asarray(pr.x0, dtype=jnp.float64)
        state = tx.init(params)
        for _ in range(steps):
            g = jnp.asarray(pr.jac(np.asarray(params), *pr.args))
            updates, state = tx.update(g, state, params)
            params = optax.apply_updates(params, updates)
        expected = np.asarray(params)
    assert expected.dtype == np.float64
    res = numadam.minimize(pr.fun, pr.x0, args=pr.args, method="lion", jac=pr.jac,
                           options=dict(options, learning_rate=lr, maxiter=steps, gtol=0))
    assert res.nit == steps
    np.testing.assert_allclose(res.x, expected, rtol=1e-12, atol=1e-15)
    assert not np.array_equal(res.x, pr.x0)
