"""``maximize``: every method ascends the objective as torch.optim's
``maximize=True`` does (the gradient negated before weight decay and the
rest of the update), in Optimizer, minimize's two loops, the sparse modes
and on CUDA (the simulator where there is no GPU)."""

import numpy as np
import pytest
from numba import njit

import numadam

from conftest import METHODS, torch_run

#: torch.optim's optimizer for each numadam method that torch has
TORCH = {"sgd": ("SGD", dict(momentum=0.9, nesterov=True, weight_decay=0.1)),
         "adagrad": ("Adagrad", dict(lr_decay=0.01, weight_decay=0.1)),
         "rmsprop": ("RMSprop", dict(momentum=0.5, centered=True, weight_decay=0.1)),
         "adadelta": ("Adadelta", dict(weight_decay=0.1)),
         "adam": ("Adam", dict(amsgrad=True, weight_decay=0.1)),
         "amsgrad": ("Adam", dict(amsgrad=True)),
         "adamw": ("AdamW", dict(weight_decay=0.1)),
         "adamax": ("Adamax", dict(weight_decay=0.1)),
         "nadam": ("NAdam", dict(weight_decay=0.1)),
         "radam": ("RAdam", dict(weight_decay=0.1))}


def test_every_method_takes_maximize():
    for method in METHODS:
        spec = numadam.methods[method]
        assert "maximize" in spec.option_names
        assert spec.resolve({})["maximize"] is False
    assert "maximize : bool, default False" in numadam.show_options("adam", disp=False)


@pytest.mark.parametrize("method", sorted(TORCH))
def test_torch_maximize_gives_torchs_run(method):
    torch = pytest.importorskip("torch")
    name, options = TORCH[method]
    options = dict(options, lr=0.5 if name == "Adadelta" else 0.02)
    ours = {k: v for k, v in options.items() if not (k == "amsgrad" and method != "adam")}
    rng = np.random.default_rng(4)
    x0 = rng.standard_normal(7)
    grads = [rng.standard_normal(7) for _ in range(30)]
    want = torch_run(torch, name, x0, grads, maximize=True, **options)
    x = x0.copy()
    opt = numadam.Optimizer(method, x, maximize=True, **ours)
    for g in grads:
        opt.step(g)
    np.testing.assert_allclose(x, want, rtol=1e-12, atol=1e-14)
    descend = x0.copy()
    down = numadam.Optimizer(method, descend, **ours)
    for g in grads:
        down.step(g)
    assert not np.allclose(descend, x)


@pytest.mark.parametrize("method", METHODS)
def test_maximize_is_the_step_on_the_negated_gradient_bitwise(method):
    """Every method (lion too, which torch does not have), with clipping
    and weight decay: ascending on g is descending on -g, bit for bit, for
    one array and for a group."""
    rng = np.random.default_rng(5)
    shapes = [(3, 2), (4,)]
    params = [rng.standard_normal(s) for s in shapes]
    up = [p.copy() for p in params]
    down = [p.copy() for p in params]
    kw = dict(learning_rate=0.1, clip_norm=1.0)
    if "weight_decay" in numadam.methods[method].option_names:
        kw["weight_decay"] = 0.05
    a = numadam.Optimizer(method, up, maximize=True, **kw)
    b = numadam.Optimizer(method, down, **kw)
    for _ in range(6):
        gs = [rng.standard_normal(s) for s in shapes]
        a.step(gs)
        b.step([-g for g in gs])
    for x, y in zip(up, down):
        np.testing.assert_array_equal(x, y)


def test_minimize_ascends_in_both_loops_and_reports_the_objective():
    @njit
    def fun(x):
        return -((x[0] - 1.0) ** 2) - 2.0 * (x[1] + 0.5) ** 2

    @njit
    def jac(x):
        return np.array([-2.0 * (x[0] - 1.0), -4.0 * (x[1] + 0.5)])

    x0 = np.zeros(2)
    opts = dict(maximize=True, lr=0.05, maxiter=3000, gtol=1e-8)
    py = numadam.minimize(lambda x: fun(x), x0, jac=lambda x: jac(x), method="adam",
                          options=opts)
    compiled = numadam.minimize(fun, x0, jac=jac, method="adam", options=opts)
    assert py.success and compiled.success
    np.testing.assert_allclose(py.x, [1.0, -0.5], atol=1e-6)
    np.testing.assert_array_equal(py.x, compiled.x)
    assert py.fun == fun(py.x) and -1e-10 < py.fun <= 0.0       # the objective itself
    np.testing.assert_array_equal(py.jac, jac(py.x))
    # descending on -fun takes the same steps
    neg = numadam.minimize(lambda x: -fun(x), x0, jac=lambda x: -jac(x), method="adam",
                           options=dict(opts, maximize=False))
    np.testing.assert_array_equal(neg.x, py.x)
    assert neg.nit == py.nit and neg.fun == -py.fun


@pytest.mark.parametrize("mode", ["lazy", "catchup"])
def test_sparse_steps_ascend(mode):
    rng = np.random.default_rng(6)
    up, down = np.ones(12), np.ones(12)
    a = numadam.Optimizer("adam", up, sparse=mode, maximize=True, lr=0.1)
    b = numadam.Optimizer("adam", down, sparse=mode, lr=0.1)
    for _ in range(5):
        idx = rng.choice(12, 4, replace=False)
        val = rng.standard_normal(4)
        a.step(numadam.SparseGradient(idx, val))
        b.step(numadam.SparseGradient(idx, -val))
    a.flush()
    b.flush()
    np.testing.assert_array_equal(up, down)


def test_maximize_can_change_between_steps_and_travels_in_state_dicts():
    x, y = np.zeros(2), np.zeros(2)
    opt = numadam.Optimizer("sgd", x, lr=1.0)
    opt.step(np.ones(2))
    opt.param_groups[0]["maximize"] = True
    opt.step(np.ones(2))
    np.testing.assert_array_equal(x, 0.0)
    sd = opt.state_dict()
    assert sd["param_groups"][0]["maximize"] is True
    other = numadam.Optimizer("sgd", y, lr=0.1)
    other.load_state_dict(sd)
    other.step(np.ones(2))
    np.testing.assert_array_equal(y, 1.0)


def test_maximize_on_cuda_matches_the_host():
    cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    if not cuda.is_available():  # pragma: no cover - a broken driver
        pytest.skip("no CUDA GPU and no simulator")
    rng = np.random.default_rng(7)
    x0 = rng.standard_normal(16)
    host = x0.copy()
    h = numadam.Optimizer("adam", host, maximize=True, lr=0.05)
    xd = cuda.to_device(x0)
    d = numadam.Optimizer("adam", xd, maximize=True, lr=0.05)
    for k in range(4):
        g = rng.standard_normal(16)
        h.step(g)
        d.step(cuda.to_device(g))
        if k == 1:
            for o in (h, d):
                o.param_groups[0]["maximize"] = False
    np.testing.assert_allclose(xd.copy_to_host(), host, rtol=1e-12, atol=1e-14)
