"""clip_norm: the gradient clipped to a global L2 norm before the update.

torch's numerics (torch.nn.utils.clip_grad_norm_: the factor
``min(1, clip_norm / (norm + 1e-6))``) on every method, in minimize's two
loops and in Optimizer (one array or several, clipped together), dense and
sparse, on the CPU and on CUDA (the simulator where there is no GPU). Most
cases reuse kernels that the other tests compile (each method's declared
variants, float64 and float32), so that they add few compilations.
"""

import math

import numpy as np
import pytest
from numba import njit

import numadam
from numadam._engine import Engine, SparseSteps
from numadam._kernels import cpu
from numadam._registry import MethodSpec
from numadam._rules import Rule, rules, zeros
from numadam._rules._math import jitable
from numadam.problems import quadratic, rosenbrock

from conftest import DTYPES, METHODS, VARIANTS, replay_sparse, variant_id
from reference import Reference, SparseAdamReference, clip_grad_norm

RTOL = {np.float64: 1e-12, np.float32: 1e-5}


def _gradients(n, steps, dtype, seed=3):
    """Gradients whose norms alternate between about 15 and 0.15: a
    clip_norm of 1 clips every other step."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * (2.5 if k % 2 == 0 else 0.025)).astype(dtype)
            for k in range(steps)]


def _cuda():
    cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    if not cuda.is_available():  # pragma: no cover - a broken driver
        pytest.skip("no CUDA GPU and no simulator")
    return cuda


# ------------------------------------------------------------- the option --

def test_clip_norm_is_an_option_of_every_method():
    for method in METHODS:
        spec = numadam.methods[method]
        assert spec.option_names[-2:] == ("clip_norm", "maximize")
        assert spec.resolve({})["clip_norm"] is None
        assert spec.resolve({"clip_norm": 2})["clip_norm"] == 2.0
    text = numadam.show_options("lion", disp=False)
    assert "clip_norm : float, default None" in text
    assert "Allowed: ``0 < clip_norm, or None``" in " ".join(text.split())
    assert "clip_norm : float, default None" in numadam.sgd.__doc__


@pytest.mark.parametrize("value, exc, match", [
    (0, ValueError, r"option 'clip_norm' must satisfy 0 < clip_norm, got 0$"),
    (-1, ValueError, r"option 'clip_norm' must satisfy 0 < clip_norm, got -1$"),
    (float("nan"), ValueError, r"option 'clip_norm' must satisfy 0 < clip_norm, got nan"),
    (float("inf"), ValueError, r"option 'clip_norm' must satisfy 0 < clip_norm, got inf"),
    ("a", TypeError, r"option 'clip_norm' must be a real number, got 'a' \(str\)"),
    (True, TypeError, r"option 'clip_norm' must be a real number, got True \(bool\)"),
])
def test_a_bad_clip_norm_fails_before_anything_runs(value, exc, match):
    calls = []

    def fun(x):
        calls.append(1)
        return float(x @ x)

    x0 = np.ones(3)
    with pytest.raises(exc, match="adam: " + match):
        numadam.minimize(fun, x0, jac=lambda x: 2 * x, options={"clip_norm": value})
    assert not calls
    x = np.ones(3)
    with pytest.raises(exc, match="sgd: " + match):
        numadam.Optimizer("sgd", x, clip_norm=value)
    with pytest.raises(exc, match="sgd: " + match):
        numadam.Optimizer("sgd", [x, np.ones(2)], clip_norm=value)
    np.testing.assert_array_equal(x0, 1.0)
    np.testing.assert_array_equal(x, 1.0)


# ------------------------------------------------------ against the oracle --

def _oracle_cases():
    """Every declared variant in float64, each method's defaults in float32:
    the kernels test_parity.py compiles."""
    cases = [pytest.param(v, np.float64, id=variant_id(v) + "-float64") for v in VARIANTS]
    cases += [pytest.param((m, {}), np.float32, id=f"{m}-float32") for m in METHODS]
    return cases


@pytest.mark.parametrize("variant, dtype", _oracle_cases())
def test_every_method_clips_then_steps_as_the_reference(variant, dtype):
    """Clip (torch's factor, in float64), then the reference step: on the
    steps where the norm exceeds clip_norm and on those where it does not."""
    method, options = variant
    grads = _gradients(33, 12, dtype)
    x = np.random.default_rng(7).standard_normal(33).astype(dtype)
    ref = Reference(method, x, clip_norm=1.0, **options)
    opt = numadam.Optimizer(method, x, clip_norm=1.0, **options)
    factors = []
    for g in grads:
        factors.append(clip_grad_norm([g], 1.0)[1])
        ref.step(g)
        opt.step(g)
    assert min(factors) < 0.1 and max(factors) == 1.0
    np.testing.assert_allclose(x, ref.x, rtol=RTOL[dtype], atol=0)
    unclipped = Reference(method, x, **options)
    for g in grads:
        unclipped.step(g)
    assert not np.allclose(unclipped.x, ref.x, rtol=1e-3)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_the_first_pass_sums_squares_in_float64(dtype):
    """The serial sum, the threads' blocks (from cpu.SUM_PARALLEL elements)
    and a sparse gradient's rows agree with NumPy's float64 sum."""
    rng = np.random.default_rng(5)
    for n in (1, 1000, cpu.SUM_PARALLEL + 7):
        g = rng.standard_normal(n).astype(dtype)
        want = float(np.sum(np.square(g.astype(np.float64))))
        for total in (cpu.sum_squares(g), cpu.sum_squares_parallel(g)):
            assert total == pytest.approx(want, rel=1e-12)
    rows = rng.standard_normal((7, 3)).astype(dtype)
    assert cpu.sum_squares(rows) == pytest.approx(
        float(np.sum(np.square(rows.astype(np.float64)))), rel=1e-13)


def test_the_scale_is_recorded_and_off_changes_no_bit():
    g = np.full(4, 3.0)                 # norm 6
    x = np.zeros(4)
    opt = numadam.Optimizer("sgd", x, learning_rate=1.0, clip_norm=2.0)
    opt.step(g)
    factor = 2.0 / (6.0 + 1e-6)
    assert opt._engine.G[cpu.G_SCALE] == factor
    np.testing.assert_array_equal(x, -3.0 * factor)
    # a norm below clip_norm: the gradient as it is, bitwise
    a, b = np.linspace(-1, 1, 9), np.linspace(-1, 1, 9)
    small = np.linspace(0.1, 0.2, 9)
    on = numadam.Optimizer("adam", a, clip_norm=10.0)
    off = numadam.Optimizer("adam", b)
    for _ in range(3):
        on.step(small)
        off.step(small)
    np.testing.assert_array_equal(a, b)
    assert on._engine.G[cpu.G_SCALE] == 1.0


# ------------------------------------------------------------------ torch --

#: (method, torch class name, options both take, learning rate): rates with
#: which the runs below clip for a few to a few tens of steps, then no more
TORCH = [("sgd", "SGD", dict(momentum=0.9, nesterov=True), 0.03),
         ("adagrad", "Adagrad", {}, 0.3), ("rmsprop", "RMSprop", {}, 0.03),
         ("adam", "Adam", {}, 0.03), ("adamw", "AdamW", {}, 0.03)]


@pytest.fixture
def torch64():
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(old)


def _torch_run(torch, name, options, x0, grad, steps, lr, clip_norm, split):
    """torch.optim.<name> on the parts of x0 cut at ``split``, each step's
    gradients clipped together by clip_grad_norm_; returns x and the
    factors."""
    params = [torch.tensor(p.copy(), requires_grad=True) for p in np.split(x0, split)]
    opt = getattr(torch.optim, name)(params, lr=lr, foreach=False, **options)
    factors = []
    for _ in range(steps):
        x = np.concatenate([p.detach().numpy() for p in params])
        for p, gp in zip(params, np.split(grad(x), split)):
            p.grad = torch.from_numpy(gp.copy())
        norm = float(torch.nn.utils.clip_grad_norm_(params, clip_norm))
        factors.append(min(1.0, clip_norm / (norm + 1e-6)))
        opt.step()
    return np.concatenate([p.detach().numpy() for p in params]), factors


@pytest.mark.parametrize("method, name, options, lr", TORCH, ids=[t[0] for t in TORCH])
def test_minimize_and_optimizer_match_torch_clip_grad_norm(torch64, method, name, options,
                                                           lr):
    """float64 to 1e-12 against clip_grad_norm_ then torch.optim's step: in
    minimize (one array) and in an Optimizer of three arrays clipped by
    their global norm; the runs clip at first and not once the gradient is
    small."""
    pr = quadratic(10, cond=10.0, seed=5)
    steps, clip_norm = 200, 2.0

    def grad(x):
        return pr.jac(x, *pr.args)

    want, factors = _torch_run(torch64, name, options, pr.x0, grad, steps, lr, clip_norm,
                               [])
    assert factors[0] < 0.2 and factors[-1] == 1.0
    res = numadam.minimize(pr.fun, pr.x0, args=pr.args, method=method, jac=pr.jac,
                           options=dict(options, learning_rate=lr, maxiter=steps, gtol=0,
                                        clip_norm=clip_norm))
    np.testing.assert_allclose(res.x, want, rtol=1e-12, atol=1e-14)

    split = [3, 4]
    want3, _ = _torch_run(torch64, name, options, pr.x0, grad, steps, lr, clip_norm, split)
    parts = [p.copy() for p in np.split(pr.x0, split)]
    opt = numadam.Optimizer(method, parts, learning_rate=lr, clip_norm=clip_norm, **options)
    for _ in range(steps):
        opt.step(np.split(grad(np.concatenate(parts)), split))
    np.testing.assert_allclose(np.concatenate(parts), want3, rtol=1e-12, atol=1e-14)
    assert [s.step for s in opt.state] == [steps] * 3


# ------------------------------------------------------------------ optax --

def test_optax_clip_by_global_norm_differs_by_its_missing_epsilon():
    """optax.chain(clip_by_global_norm(c), adam) scales by ``c / n`` where
    torch and numadam scale by ``c / (n + 1e-6)``: the factors differ by
    ``1e-6 / n`` relative. On steps that do not clip the two agree to
    1e-12; on steps that do, adam moves the same to within a few times
    ``1e-6 / n`` (its update is invariant to the gradient's scale up to
    eps), and an sgd step differs by exactly that factor."""
    optax = pytest.importorskip("optax")
    import jax
    import jax.numpy as jnp

    n, lr, clip_norm = 20, 1e-2, 1.0
    grads = _gradients(n, 12, np.float64)
    norms = [float(np.linalg.norm(g)) for g in grads]
    x0 = np.linspace(-1.0, 1.0, n)

    def optax_run(tx, grads):
        with jax.enable_x64(True):
            params = jnp.asarray(x0, dtype=jnp.float64)
            state = tx.init(params)
            for g in grads:
                updates, state = tx.update(jnp.asarray(g), state, params)
                params = optax.apply_updates(params, updates)
            return np.asarray(params)

    def ours(method, grads, **options):
        x = x0.copy()
        opt = numadam.Optimizer(method, x, learning_rate=lr, clip_norm=clip_norm,
                                **options)
        for g in grads:
            opt.step(g)
        return x

    small = grads[1::2]                  # norms about 0.15: nothing clips
    assert max(norms[1::2]) < clip_norm
    want = optax_run(optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(lr)),
                     small)
    np.testing.assert_allclose(ours("adam", small), want, rtol=1e-12, atol=1e-15)

    assert min(norms[::2]) > clip_norm   # these steps clip
    bound = 1e-6 / min(norms[::2])
    want = optax_run(optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(lr)),
                     grads)
    got = ours("adam", grads)
    err = np.max(np.abs((got - x0) - (want - x0))) / np.max(np.abs(want - x0))
    assert 0 < err < 10 * bound
    big = grads[::2]
    want = optax_run(optax.chain(optax.clip_by_global_norm(clip_norm), optax.sgd(lr)), big)
    expected = x0 - lr * sum(clip_norm / (m + 1e-6) * g for m, g in zip(norms[::2], big))
    np.testing.assert_allclose(ours("sgd", big), expected, rtol=1e-12)
    err = np.max(np.abs(ours("sgd", big) - want)) / np.max(np.abs(want - x0))
    assert 0 < err < 2 * bound


# ----------------------------------------------------------------- sparse --

N, ROWS, R = 40, 10, 4


def _sparse_stream(steps, seed=4):
    """Fixed row gradients (not depending on x): touched rows and values."""
    rng = np.random.default_rng(seed)
    picks = [np.sort(rng.choice(ROWS, 3, replace=False)) for _ in range(steps + 2)]
    values = [rng.standard_normal((3, R)) * (3.0 if k % 3 else 0.05)
              for k in range(steps + 2)]
    return picks, values


def _sparse_run(mode, method, steps=30, **options):
    picks, values = _sparse_stream(steps)
    return replay_sparse(picks, values, N, mode, method, steps,
                         **dict({"clip_norm": 1.0}, **options))


def test_lazy_adam_clips_the_coalesced_gradient_then_is_sparse_adam():
    picks, values = _sparse_stream(30)
    res = _sparse_run("lazy", "adam")
    ref = SparseAdamReference(np.zeros(N), lr=0.05)
    factors = []
    for k in range(30):
        (val,), f = clip_grad_norm([values[k]], 1.0)
        factors.append(f)
        idx = (picks[k][:, None] * R + np.arange(R)).ravel()
        ref.step(idx, val.ravel())
    assert min(factors) < 0.5 and max(factors) == 1.0
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-12, atol=0)


def test_repeated_indices_are_summed_before_the_norm():
    x = np.zeros(4)
    opt = numadam.Optimizer("sgd", x, sparse="lazy", learning_rate=1.0, clip_norm=1.0)
    opt.step(numadam.SparseGradient([1, 1], [3.0, 4.0]))   # one value, 7: norm 7
    np.testing.assert_array_equal(x, [0.0, -(7.0 * (1.0 / (7.0 + 1e-6))), 0.0, 0.0])


@pytest.mark.parametrize("mode, method, options", [
    ("lazy", "sgd", {}), ("lazy", "adagrad", {}), ("catchup", "sgd", {}),
    ("catchup", "adagrad", {}), ("catchup", "sgd", {"momentum": 0.9}),
    ("catchup", "rmsprop", {"momentum": 0.5}), ("catchup", "lion", {}),
])
def test_sparse_modes_clip_as_dense_does(mode, method, options):
    """The norm of a sparse gradient is that of the dense one (zeros add
    nothing): where the sparse mode equals dense without clipping (lazy and
    catch-up for sgd and adagrad, catch-up for the rules it replays in
    closed form), it equals dense with clipping, to the rounding of the sum."""
    sparse = _sparse_run(mode, method, **options)
    dense = _sparse_run("dense", method, **options)
    np.testing.assert_allclose(sparse.x, dense.x, rtol=1e-10, atol=1e-13)
    unclipped = _sparse_run("dense", method, clip_norm=None, **options)
    assert np.max(np.abs(unclipped.x - dense.x)) > 1e-3


@njit(cache=True)
def _rows_fun(x, step, picks, vals):
    return 0.5 * np.sum(x * x)


@njit(cache=True)
def _rows_jac(x, step, picks, vals):
    k = step[0] % picks.shape[0]
    step[0] += 1
    sel = picks[k]
    val = np.empty((sel.shape[0], 4))
    for j in range(sel.shape[0]):
        for q in range(4):
            val[j, q] = x[sel[j] * 4 + q] + vals[k, j, q]
    return sel, val


@pytest.mark.parametrize("mode", ["lazy", "catchup", "dense"])
def test_compiled_loop_clips_sparse_gradients_bitwise_the_python_loop(mode):
    rng = np.random.default_rng(2)
    picks = np.array([np.sort(rng.choice(ROWS, 4, replace=False)) for _ in range(20)])
    vals = rng.standard_normal((20, 4, R)) * 3.0
    runs = []
    for compiled in (True, False):
        step = np.zeros(1, np.int64)
        runs.append(numadam.minimize(_rows_fun, np.zeros(N), args=(step, picks, vals),
                                     jac=_rows_jac,
                                     options={"sparse": mode, "maxiter": 40, "gtol": 0,
                                              "learning_rate": 0.05, "clip_norm": 1.5,
                                              "compiled": compiled}))
    np.testing.assert_array_equal(runs[0].x, runs[1].x)
    step = np.zeros(1, np.int64)
    plain = numadam.minimize(_rows_fun, np.zeros(N), args=(step, picks, vals),
                             jac=_rows_jac, options={"sparse": mode, "maxiter": 40,
                                                     "gtol": 0, "learning_rate": 0.05,
                                                     "compiled": False})
    assert np.max(np.abs(plain.x - runs[1].x)) > 1e-3


def test_compiled_loop_clips_bitwise_the_python_loop():
    pr = rosenbrock(5)
    runs = [numadam.minimize(pr.fun, pr.x0, jac=pr.jac, method="adam",
                             options={"maxiter": 300, "gtol": 0, "clip_norm": 5.0,
                                      "compiled": compiled}) for compiled in (True, False)]
    np.testing.assert_array_equal(runs[0].x, runs[1].x)
    assert runs[0].nit == 300
    # jac and the tests see the gradient as jac returns it
    np.testing.assert_array_equal(runs[1].jac, pr.jac(runs[1].x))
    ref = Reference("adam", pr.x0, clip_norm=5.0)
    for _ in range(300):
        ref.step(pr.jac(ref.x))
    np.testing.assert_allclose(runs[1].x, ref.x, rtol=1e-12)


# ----------------------------------------------------------- many arrays --

def test_an_optimizer_of_several_arrays_clips_by_their_global_norm():
    rng = np.random.default_rng(11)
    sizes = [3, 5000, 7]            # one compiled call, its parallel kernel
    xs = [rng.standard_normal(s) for s in sizes]
    parts = [x.copy() for x in xs]
    opt = numadam.Optimizer("adam", parts, clip_norm=1.0, parallel=True)
    assert opt.parallel == [True] * 3 and "sizes=[3, 5000, 7]" in repr(opt)
    refs = [Reference("adam", x) for x in xs]
    for k in range(6):
        gs = [rng.standard_normal(s) * (0.005 if k % 2 else 1.0) for s in sizes]
        clipped, f = clip_grad_norm(gs, 1.0)
        assert (f < 1.0) == (k % 2 == 0)
        opt.step(gs)
        for ref, g in zip(refs, clipped):
            ref.step(g)
    for got, ref in zip(parts, refs):
        np.testing.assert_allclose(got, ref.x, rtol=1e-12, atol=0)


def test_several_arrays_sparse_and_dense_state_bounds_and_errors():
    a, b = np.zeros(8), np.zeros(6)
    opt = numadam.Optimizer("sgd", [a, b], sparse="lazy", learning_rate=1.0,
                            clip_norm=1.0)
    opt.step([numadam.SparseGradient([2], [3.0]), numadam.SparseGradient([0, 1], [0.0, 4.0])])
    f = 1.0 / (5.0 + 1e-6)
    np.testing.assert_array_equal(a, [0, 0, -3 * f, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(b, [0, -4 * f, 0, 0, 0, 0])
    c, d = np.zeros(2), np.zeros(3)
    dense = numadam.Optimizer("sgd", [c, d], learning_rate=1.0, clip_norm=1.0,
                              bounds=[None, (np.full(3, -0.5), np.ones(3))])
    dense.step([np.array([3.0, 0.0]), np.array([0.0, 4.0, 0.0])])
    np.testing.assert_array_equal(c, [-3 * f, 0])
    np.testing.assert_array_equal(d, [0, -0.5, 0])                 # projected
    with pytest.raises(ValueError, match="the gradient of an Optimizer of 2 arrays must "
                                         "be a list or tuple with one entry per array, "
                                         "got 1"):
        opt.step([numadam.SparseGradient([0], [1.0])])
    with pytest.raises(IndexError, match=r"gradient\[1\]: .*index 9"):
        opt.step([numadam.SparseGradient([0], [1.0]), numadam.SparseGradient([9], [1.0])])
    assert [s.step for s in opt.state] == [1, 1]
    np.testing.assert_array_equal(a, [0, 0, -3 * f, 0, 0, 0, 0, 0])
    with pytest.raises(TypeError, match=r"params\[0\] must be a NumPy array or a CUDA "
                                        r"device array, got float"):
        numadam.Optimizer("adam", [1.0, 2.0])
    with pytest.raises(TypeError, match="state of an Optimizer of 2 arrays must be a list"):
        numadam.Optimizer("adam", [a, b], state=opt.state[0])
    # continuing each array's state
    again = numadam.Optimizer("sgd", [a.copy(), b.copy()], state=opt.state)
    assert [s.step for s in again.state] == [1, 1]


# ------------------------------------------------------------------- CUDA --

@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("method, options", [("adam", {}), ("sgd", {"momentum": 0.9})])
def test_cuda_dense_steps_clip_as_the_cpu(method, options, dtype):
    cuda = _cuda()
    x = np.linspace(-1, 1, 24).astype(dtype)
    host = numadam.Optimizer(method, x.copy(), learning_rate=0.05, clip_norm=1.0,
                             **options)
    xd = cuda.to_device(x)
    dev = numadam.Optimizer(method, xd, learning_rate=0.05, clip_norm=1.0, **options)
    for g in _gradients(24, 4, dtype):
        host.step(g)
        dev.step(cuda.to_device(g))
    got = xd.copy_to_host()
    np.testing.assert_allclose(got, host.x, rtol=RTOL[dtype] * 10, atol=1e-6 * (
        dtype == np.float32))
    assert got.dtype == dtype


@pytest.mark.parametrize("mode", ["lazy", "catchup"])
def test_cuda_sparse_and_several_arrays_clip_as_the_cpu(mode):
    cuda = _cuda()
    picks, values = _sparse_stream(5)
    x = np.linspace(-1, 1, N)
    host = numadam.Optimizer("adam", x.copy(), sparse=mode, learning_rate=0.05,
                             clip_norm=1.0)
    xd = cuda.to_device(x)
    dev = numadam.Optimizer("adam", xd, sparse=mode, learning_rate=0.05, clip_norm=1.0)
    for idx, val in zip(picks[:5], values[:5]):
        host.step(numadam.SparseGradient(idx, val))
        dev.step((cuda.to_device(idx), cuda.to_device(val)))
    host.flush()
    dev.flush()
    np.testing.assert_allclose(xd.copy_to_host(), host.x, rtol=1e-12, atol=1e-15)
    # two device arrays: one global norm, the factor computed on the device
    parts = [np.linspace(-1, 1, 5), np.linspace(0, 2, 7)]
    hosts = [p.copy() for p in parts]
    devs = [cuda.to_device(p) for p in parts]
    h = numadam.Optimizer("sgd", hosts, learning_rate=0.1, clip_norm=1.0, momentum=0.9)
    d = numadam.Optimizer("sgd", devs, learning_rate=0.1, clip_norm=1.0, momentum=0.9)
    for k in range(3):
        gs = [p * (3.0 if k != 1 else 0.01) for p in parts]
        h.step(gs)
        d.step([cuda.to_device(g) for g in gs])
    for got, want in zip(devs, hosts):
        np.testing.assert_allclose(got.copy_to_host(), want, rtol=1e-12, atol=1e-15)


def test_cuda_minimize_clips_as_the_cpu():
    cuda = _cuda()
    target = np.linspace(-3.0, 3.0, 16)

    def jac(x):
        return 2 * (x - target)

    opts = dict(maxiter=12, gtol=0.0, learning_rate=0.1, clip_norm=2.0)
    want = numadam.minimize(lambda x: float(np.sum((x - target) ** 2)), np.zeros(16),
                            jac=jac, options=opts)
    got = numadam.minimize(lambda x: float(np.sum((x.copy_to_host() - target) ** 2)),
                           cuda.to_device(np.zeros(16)),
                           jac=lambda x: cuda.to_device(jac(x.copy_to_host())),
                           options=opts)
    np.testing.assert_allclose(got.x.copy_to_host(), want.x, rtol=1e-12)
    np.testing.assert_allclose(got.jac.copy_to_host(), want.jac, rtol=1e-12)


# ------------------------------------------- a rule that reads a reduction --

@jitable
def _normalized_coefficients(h, aux, lr, F, c, T):
    aux[0] = aux[0] + 1.0
    c[0] = lr
    c[1] = h[0]                      # eps


@jitable
def _normalized_reduced(R, c, F):
    c[2] = c[0] / (math.sqrt(R[0]) + c[1])


@jitable(inline=True)
def _normalized_update(i, X, g, S, c, F):
    return X[i] - c[2] * g


#: Normalised gradient descent, ``x -= lr * g / (|g| + eps)``: a rule whose
#: step size is a reduction over the whole gradient (the test's own rule).
NORMALIZED = Rule(name="_normalized_test", hyper=("eps",), flags=lambda o: (),
                  flag_names=(), slots=lambda F: (), slot_init=zeros,
                  coefficients=_normalized_coefficients, update=_normalized_update,
                  reductions=("gsq",), reduced_coefficients=_normalized_reduced)


@pytest.fixture
def normalized(monkeypatch):
    """The test rule, known to the kernels for the test's duration."""
    monkeypatch.setitem(rules(), NORMALIZED.name, NORMALIZED)
    from numadam._options import Option

    return MethodSpec(name="normalized", rule=NORMALIZED.name, summary="", math="",
                      symbols="", references=(), sparse_modes=("lazy",),
                      options=(Option("learning_rate", 0.1, ""), Option("eps", 1e-8, "")))


def test_a_rule_reads_its_reductions_in_every_kernel(normalized):
    """The first pass of the dense, the lazy sparse and the CUDA kernels hands
    the rule the sum of squares of the gradient it sees (after clipping)."""
    g = np.array([3.0, 0.0, 4.0, 0.0])              # norm 5
    for clip_norm, norm in ((None, 5.0), (2.5, 2.5 * 5 / (5 + 1e-6))):
        values = normalized.resolve({"clip_norm": clip_norm})
        x = np.zeros(4)
        e = Engine(normalized, x, values)
        e.dense_kernel()(x, g, e.W, e.P, 0.1)
        step = 0.1 / (norm + 1e-8) * (1.0 if clip_norm is None else norm / 5.0)
        np.testing.assert_allclose(x, -step * g, rtol=1e-14)
        assert e.G[cpu.G_R] == pytest.approx(norm ** 2, rel=1e-14)
        xs = np.zeros(4)
        es = Engine(normalized, xs, values)
        SparseSteps(es, "lazy", backup=False).step(
            (np.array([0, 2]), np.array([[3.0], [4.0]])), 0.1)
        np.testing.assert_allclose(xs, x, rtol=1e-14)
    cuda = _cuda()
    from numadam._device_engine import DeviceEngine, load_cuda

    ck = load_cuda("the test")
    xd = cuda.to_device(np.zeros(4))
    de = DeviceEngine(normalized, xd, values, None, None, None, ck, guarded=False)
    de.step(cuda.to_device(g), 0.1)
    np.testing.assert_allclose(xd.copy_to_host(), x, rtol=1e-14)
