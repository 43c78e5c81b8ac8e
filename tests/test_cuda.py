"""The CUDA kernels and device-resident runs, against their CPU twins.

Without an NVIDIA GPU these tests run on Numba's CUDA simulator (see
conftest.py), which executes every thread in Python: the arrays are small and
the runs short. On a machine with a GPU the same tests run on the device.
The CPU kernels are the reference: float64 agrees to 1e-12 (bitwise on the
simulator; a GPU may contract a multiply and an add into one FMA), float32
to a few ulps.
"""

import subprocess
import sys

import numpy as np
import pytest

import numadam
from conftest import DTYPES, VARIANTS

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
if not cuda.is_available():  # pragma: no cover - a broken driver
    pytest.skip("no CUDA GPU and no simulator", allow_module_level=True)

N = 24
RTOL = {np.float64: 1e-12, np.float32: 2e-6}
SPARSE_VARIANTS = [
    ("sgd", {}), ("sgd", dict(momentum=0.9, nesterov=True)),
    ("adagrad", dict(lr_decay=0.01)), ("rmsprop", dict(centered=True, momentum=0.5)),
    ("adam", {}), ("amsgrad", {}), ("adamw", {}),
]


def close(device_array, expected, dtype):
    got = device_array.copy_to_host() if hasattr(device_array, "copy_to_host") else \
        np.asarray(device_array)
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=RTOL[dtype],
                               atol=RTOL[dtype] * float(np.max(np.abs(expected)) or 1.0))


def gradients(n, steps, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) for _ in range(steps)]


# ------------------------------------------------------------ the import --

def test_importing_numadam_does_not_import_cuda():
    code = ("import sys, numpy as np, numadam\n"
            "numadam.minimize(lambda x: float(x @ x), np.ones(3), jac=lambda x: 2 * x,"
            " options={'maxiter': 3})\n"
            "print(sorted(m for m in sys.modules if m.startswith(('numba.cuda', "
            "'numba_cuda'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------ dense steps --

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method,options", VARIANTS)
def test_dense_step_matches_cpu_kernel(method, options, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(N).astype(dtype)
    cpu = numadam.Optimizer(method, x.copy(), learning_rate=0.01, **options)
    xd = cuda.to_device(x)
    dev = numadam.Optimizer(method, xd, learning_rate=0.01, **options)
    assert "device='cuda'" in repr(dev)
    for g in gradients(N, 3, dtype):
        cpu.step(g)
        dev.step(cuda.to_device(g))
    close(xd, cpu.x, dtype)
    got, want = dev.state, cpu.state
    assert got.on_device and not want.on_device
    assert got.step == want.step == 3 and got.names == want.names
    for name in want.names:
        close(got.slots[name], want.slots[name], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["sgd", "adam", "radam"])
def test_bounded_step_matches_cpu_kernel(method, dtype):
    x = np.linspace(-1, 1, N).astype(dtype)
    lo, hi = np.full(N, -0.9, dtype), np.full(N, 0.95, dtype)
    cpu = numadam.Optimizer(method, x.copy(), bounds=(lo, hi), learning_rate=0.5)
    xd = cuda.to_device(x)
    dev = numadam.Optimizer(method, xd, bounds=(lo, hi), learning_rate=0.5)
    for g in gradients(N, 3, dtype, seed=2):
        cpu.step(g)
        dev.step(cuda.to_device(g))
    close(xd, cpu.x, dtype)
    assert np.all(cpu.x >= lo) and np.all(cpu.x <= hi)


def test_schedule_and_per_step_rate_on_device():
    sched = numadam.schedules.cosine(0.1, 10)
    x = np.linspace(-1, 1, N)
    cpu = numadam.Optimizer("adam", x.copy(), learning_rate=sched)
    xd = cuda.to_device(x)
    dev = numadam.Optimizer("adam", xd, learning_rate=sched)
    g1, g2 = gradients(N, 2, np.float64, seed=3)
    cpu.step(g1)
    dev.step(cuda.to_device(g1))
    cpu.step(g2, learning_rate=0.5)
    dev.step(cuda.to_device(g2), learning_rate=0.5)
    close(xd, cpu.x, np.float64)


def test_device_state_continues_on_the_host_and_back():
    x = np.linspace(-1, 1, N)
    g1, g2, g3 = gradients(N, 3, np.float64, seed=4)
    whole = numadam.Optimizer("nadam", x.copy())
    for g in (g1, g2, g3):
        whole.step(g)
    xd = cuda.to_device(x)
    dev = numadam.Optimizer("nadam", xd)
    dev.step(cuda.to_device(g1))
    host = numadam.Optimizer("nadam", xd.copy_to_host(), state=dev.state)
    host.step(g2)
    back = cuda.to_device(host.x)
    dev2 = numadam.Optimizer("nadam", back, state=host.state)
    dev2.step(cuda.to_device(g3))
    close(back, whole.x, np.float64)
    assert dev2.state == whole.state and dev2.state.copy() == whole.state


# ----------------------------------------------------------- sparse steps --

def sparse_steps(r, seed=5):
    """Row gradients, some unsorted and with repeats."""
    rng = np.random.default_rng(seed)
    out = []
    for idx in ([0, 3, 5], [5, 1, 1, 7], [2, 3], [7, 0, 6, 2]):
        idx = np.array(idx, np.int64)
        out.append((idx, rng.standard_normal((idx.size, r))))
    return out


@pytest.mark.parametrize("mode", ["lazy", "catchup"])
@pytest.mark.parametrize("method,options", SPARSE_VARIANTS)
def test_sparse_step_matches_cpu_kernel(method, options, mode):
    r, rows = 3, 8
    x = np.linspace(-1, 1, r * rows)
    cpu = numadam.Optimizer(method, x.copy(), sparse=mode, learning_rate=0.05, **options)
    xd = cuda.to_device(x)
    dev = numadam.Optimizer(method, xd, sparse=mode, learning_rate=0.05, **options)
    for idx, val in sparse_steps(r):
        cpu.step(numadam.SparseGradient(idx, val))
        dev.step((cuda.to_device(idx), cuda.to_device(val)))
    close(xd, cpu.x, np.float64)
    cpu.flush()
    dev.flush()
    close(xd, cpu.x, np.float64)
    for name in cpu.state.names:
        close(dev.state.slots[name], cpu.state.slots[name], np.float64)


def test_sparse_index_out_of_range_changes_nothing():
    x = np.zeros(12)
    xd = cuda.to_device(x)
    dev = numadam.Optimizer("adam", xd, sparse="lazy")
    idx = cuda.to_device(np.array([1, 12], np.int64))
    val = cuda.to_device(np.ones(2))
    with pytest.raises(IndexError, match="index 12 out of range for x0 of size 12"):
        dev.step((idx, val))
    assert dev.state.step == 0
    np.testing.assert_array_equal(xd.copy_to_host(), x)


# --------------------------------------------------------------- minimize --

def host_problem(scale=1.0):
    def fun(x):
        return float(np.sum(scale * (x - 1.0) ** 2))

    def jac(x):
        return 2 * scale * (x - 1.0)
    return fun, jac


def device_problem(scale=1.0, bad_after=None):
    """The same problem on device arrays (the arithmetic on the host: the
    simulator has no device libraries)."""
    def fun(x):
        return float(np.sum(scale * (x.copy_to_host() - 1.0) ** 2))

    def jac(x):
        h = x.copy_to_host()
        g = 2 * scale * (h - 1.0)
        if bad_after is not None and h[0] > bad_after:
            g[2] = np.inf
        return cuda.to_device(g)
    return fun, jac


X0 = np.linspace(-1.0, 0.5, 16)


@pytest.mark.parametrize("opts", [
    dict(maxiter=12, gtol=0.0),
    dict(maxiter=200, gtol=1.5),
    dict(maxiter=200, gtol=0.0, xtol=2e-2),
    dict(maxiter=200, gtol=0.0, ftol=2e-2),
], ids=["maxiter", "gtol", "xtol", "ftol"])
def test_minimize_on_device_matches_cpu(opts):
    opts = dict(opts, learning_rate=0.1)
    want = numadam.minimize(*host_problem()[:1], X0, jac=host_problem()[1], options=opts)
    x0 = cuda.to_device(X0)
    fun, jac = device_problem()
    got = numadam.minimize(fun, x0, jac=jac, options=opts)
    assert (got.nit, got.status, got.message) == (want.nit, want.status, want.message)
    assert got.success == want.success
    close(got.x, want.x, np.float64)
    close(got.jac, want.jac, np.float64)
    assert got.fun == pytest.approx(want.fun, rel=1e-12)
    assert got.state.step == want.nit
    np.testing.assert_array_equal(x0.copy_to_host(), X0)    # x0 untouched


def test_minimize_device_option_host_x0_bounds_and_float32():
    x0 = X0.astype(np.float32)
    bounds = [(-0.5, 0.4)] * X0.size
    fun, jac = device_problem()

    def jac32(x):
        return cuda.to_device(jac(x).copy_to_host().astype(np.float32))

    got = numadam.minimize(fun, x0, jac=jac32, bounds=bounds,
                           options=dict(device="cuda", maxiter=8, learning_rate=0.1))
    hfun, hjac = host_problem()
    want = numadam.minimize(hfun, x0, jac=lambda x: hjac(x).astype(np.float32),
                            bounds=bounds, options=dict(maxiter=8, learning_rate=0.1))
    assert got.x.dtype == np.float32 and hasattr(got.x, "copy_to_host")
    close(got.x, want.x, np.float32)
    assert np.all(got.x.copy_to_host() <= np.float32(0.4))


def test_minimize_jac_true_and_continuation():
    def fg(x):
        h = x.copy_to_host()
        return float(np.sum((h - 1.0) ** 2)), cuda.to_device(2 * (h - 1.0))

    opts = dict(gtol=0.0, learning_rate=0.1)
    whole = numadam.minimize(fg, cuda.to_device(X0), jac=True, method="radam",
                             options=dict(opts, maxiter=10))
    first = numadam.minimize(fg, cuda.to_device(X0), jac=True, method="radam",
                             options=dict(opts, maxiter=6))
    rest = numadam.minimize(fg, first.x, jac=True, method="radam",
                            options=dict(opts, maxiter=4, state=first.state))
    np.testing.assert_array_equal(rest.x.copy_to_host(), whole.x.copy_to_host())
    assert rest.state == whole.state
    assert whole.nfev == whole.njev == 11


def test_minimize_nonfinite_gradient_puts_back_the_iterate_before():
    fun, jac = device_problem(bad_after=-0.5)
    got = numadam.minimize(fun, cuda.to_device(X0), jac=jac,
                           options=dict(maxiter=100, gtol=0.0, learning_rate=0.1))
    assert got.status == 3 and not got.success
    k = got.nit
    assert got.message == (f"Non-finite gradient after step {k}; x is the iterate of "
                           f"step {k - 1}, the last with a finite function value and "
                           "gradient.")
    x = got.x.copy_to_host()
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(got.jac.copy_to_host()))
    assert got.state.step == k
    hfun, hjac = host_problem()

    def bad(x):
        g = hjac(x)
        if x[0] > -0.5:
            g[2] = np.inf
        return g
    want = numadam.minimize(hfun, X0, jac=bad, options=dict(maxiter=100, gtol=0.0,
                                                            learning_rate=0.1))
    # the same rollback as the host's: the iterate of step nit - 1
    assert (want.nit, want.message) == (k, got.message)
    close(got.x, want.x, np.float64)
    close(got.jac, want.jac, np.float64)
    plain = numadam.minimize(hfun, X0, jac=hjac, options=dict(
        maxiter=k - 1, gtol=0.0, learning_rate=0.1))
    close(got.x, plain.x, np.float64)


def test_minimize_callback_and_stop_iteration():
    seen = []

    def cb(intermediate_result):
        seen.append((intermediate_result.nit, intermediate_result.x.copy_to_host()))
        if intermediate_result.nit == 4:
            raise StopIteration

    fun, jac = device_problem()
    got = numadam.minimize(fun, cuda.to_device(X0), jac=jac, callback=cb,
                           options=dict(maxiter=50, gtol=0.0, learning_rate=0.1))
    assert got.status == 99 and got.nit == 4
    assert [k for k, _ in seen] == [1, 2, 3, 4]
    np.testing.assert_array_equal(seen[-1][1], got.x.copy_to_host())


def test_minimize_calls_fun_once_when_no_test_needs_it():
    calls = {"f": 0}
    fun, jac = device_problem()

    def counted(x):
        calls["f"] += 1
        return fun(x)

    got = numadam.minimize(counted, cuda.to_device(X0), jac=jac,
                           options=dict(maxiter=5, gtol=0.0, learning_rate=0.1))
    assert calls["f"] == got.nfev == 1 and got.njev == 6


@pytest.mark.parametrize("mode", ["lazy", "catchup"])
def test_minimize_sparse_on_device_matches_cpu(mode):
    r, rows = 2, 6
    rng = np.random.default_rng(7)
    target = rng.standard_normal(r * rows)
    plan = [np.array(ix, np.int64) for ix in ([0, 2], [1, 2, 5], [4], [0, 3])]

    def host_jac(x, k=[0]):
        idx = plan[k[0] % len(plan)]
        k[0] += 1
        val = 2 * (x - target).reshape(rows, r)[idx]
        return numadam.SparseGradient(idx, val)

    def dev_jac(x, k=[0]):
        idx = plan[k[0] % len(plan)]
        k[0] += 1
        val = 2 * (x.copy_to_host() - target).reshape(rows, r)[idx]
        return cuda.to_device(idx), cuda.to_device(val)

    opts = dict(sparse=mode, maxiter=7, gtol=0.0, learning_rate=0.1)
    want = numadam.minimize(lambda x: float(np.sum((x - target) ** 2)), np.zeros(r * rows),
                            jac=host_jac, options=opts)
    got = numadam.minimize(lambda x: float(np.sum((x.copy_to_host() - target) ** 2)),
                           cuda.to_device(np.zeros(r * rows)), jac=dev_jac, options=opts)
    assert got.nit == want.nit
    close(got.x, want.x, np.float64)
    assert got.fun == pytest.approx(want.fun, rel=1e-12)


# ----------------------------------------------------------------- errors --

def test_device_errors_name_the_problem():
    fun, jac = device_problem()
    x0 = cuda.to_device(X0)
    with pytest.raises(ValueError, match="option 'batch_size' is not supported by "
                                         "device runs"):
        numadam.minimize(fun, x0, jac=jac, options={"batch_size": 4})
    with pytest.raises(ValueError, match="need a gradient function: jac must be a "
                                         "callable or True, got None"):
        numadam.minimize(fun, x0)
    with pytest.raises(ValueError, match="option device='cpu' cannot take x0 that is a "
                                         "CUDA device array"):
        numadam.minimize(fun, x0, jac=jac, options={"device": "cpu"})
    with pytest.raises(ValueError, match="option 'device' must be None, 'cpu' or "
                                         "'cuda', got 'gpu'"):
        numadam.minimize(fun, x0, jac=jac, options={"device": "gpu"})
    with pytest.raises(TypeError, match="jac must return a device array in a device "
                                        "run .x0 on the GPU., got ndarray"):
        numadam.minimize(fun, x0, jac=lambda x: np.zeros(X0.size))
    with pytest.raises(ValueError, match=r"the gradient jac returns must be a float64 "
                                         r"device array of shape \(16,\), got float64 "
                                         r"of shape \(3,\)"):
        numadam.minimize(fun, x0, jac=lambda x: cuda.to_device(np.zeros(3)))
    with pytest.raises(ValueError, match="x0 must be finite"):
        numadam.minimize(fun, cuda.to_device(np.array([0.0, np.nan])), jac=jac)
    with pytest.raises(ValueError, match="sparse='dense' is not supported by device"):
        numadam.minimize(fun, x0, jac=jac, options={"sparse": "dense"})
    opt = numadam.Optimizer("adam", cuda.to_device(np.zeros(4)))
    with pytest.raises(ValueError, match=r"the gradient must be a float64 device array "
                                         r"of shape \(4,\), got float32"):
        opt.step(cuda.to_device(np.zeros(4, np.float32)))
    with pytest.raises(TypeError, match="the gradient must be a device array, like the "
                                        "parameters, got ndarray"):
        opt.step(np.zeros(4))
    assert opt.state.step == 0


def test_missing_numba_cuda_or_gpu_is_a_clear_error(monkeypatch):
    import importlib.util

    from numadam import _device

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba_cuda" else real(name, *a))
    with pytest.raises(ImportError, match=r"option device='cuda' needs numba-cuda, "
                                          r"which is not installed: pip install "
                                          r"'numadam\[cuda\]'"):
        numadam.minimize(lambda x: 0.0, np.ones(2), jac=lambda x: x,
                         options={"device": "cuda"})
    monkeypatch.setattr(importlib.util, "find_spec", real)
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="an Optimizer on a CUDA device array needs "
                                           "an NVIDIA GPU, and numba.cuda finds none"):
        numadam.Optimizer("adam", cuda.to_device(np.zeros(2)))
    assert _device.is_device_array(np.zeros(2)) is False
