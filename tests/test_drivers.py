"""One table of scenarios through every driver of minimize.

The Python-driven loop (any callables), the compiled loop (``@njit``
objectives) and the device driver (x on a GPU; Numba's CUDA simulator
without one) run the same iteration: the same steps, tests, callbacks and
non-finite rollback. The Python and compiled loops agree bitwise in every
field of the result; the device agrees on the path (nit, status, message)
and on the numbers to 1e-12.

The device driver runs no minibatches, iterate averages or histories, and
evaluates ``fun`` only when a test or a callback needs it, so it sees a
non-finite function value only then; those scenarios leave it out.
"""

import numpy as np
import pytest
from numba import njit

import numadam

N = 6
T = np.linspace(-1.0, 2.0, N)
X0 = np.zeros(N)
ROWS = np.array([0, 2, 2, 5], np.int64)     # a repeated index, coalesced


def qfun(x, t):
    return 0.5 * np.sum((x - t) ** 2)


def qjac(x, t):
    return x - t


def bad_jac(x, t):
    """The gradient, with an infinity once x[0] < -0.5 (after a few steps)."""
    g = x - t
    if x[0] < -0.5:
        g[3] = np.inf
    return g


def bad_fun(x, t):
    if x[0] < -0.5:
        return np.nan
    return 0.5 * np.sum((x - t) ** 2)


def sparse_jac(x, t):
    return ROWS.copy(), x[ROWS] - t[ROWS]


def bad_sparse_jac(x, t):
    val = x[ROWS] - t[ROWS]
    if x[0] < -0.5:
        val[1] = np.inf
    return ROWS.copy(), val


def lsq(x, A, b):
    r = A @ x - b
    return 0.5 * np.sum(r * r) / b.shape[0]


def lsq_jac(x, A, b):
    return A.T @ (A @ x - b) / b.shape[0]


RNG = np.random.default_rng(3)
A = RNG.standard_normal((40, N))
B = A @ T + 0.01 * RNG.standard_normal(40)

ON_DEVICE = True
# name: (fun, jac, args, bounds, options, callback stop at, on the device);
# the tolerances end their runs within 25 to 45 steps, since Numba's CUDA
# simulator takes a tenth of a second or more per step

SCENARIOS = {
    "maxiter": (qfun, qjac, None, None, dict(maxiter=15, gtol=0.0), None, ON_DEVICE),
    "gtol": (qfun, qjac, None, None, dict(gtol=0.2, maxiter=500), None, ON_DEVICE),
    "ftol": (qfun, qjac, None, None, dict(gtol=0.0, ftol=1e-3, maxiter=2000), None,
             ON_DEVICE),
    "xtol": (qfun, qjac, None, None, dict(gtol=0.0, xtol=1e-2, maxiter=2000), None,
             ON_DEVICE),
    "nonfinite gradient": (qfun, bad_jac, None, None, dict(maxiter=200, gtol=0.0), None,
                           ON_DEVICE),
    "nonfinite fun": (bad_fun, qjac, None, None, dict(maxiter=200, gtol=0.0), None,
                      False),
    "callback stop": (qfun, qjac, None, None, dict(maxiter=50, gtol=0.0), 4, ON_DEVICE),
    "callback every 3": (qfun, qjac, None, None,
                         dict(maxiter=20, gtol=0.0, callback_every=3), -1, ON_DEVICE),
    "bounds": (qfun, qjac, None, [(-0.5, 1.5)] * N, dict(maxiter=40, gtol=0.0), None,
               ON_DEVICE),
    "schedule and history": (
        qfun, qjac, None, None,
        dict(maxiter=30, gtol=0.0, history="step",
             learning_rate=numadam.schedules.cosine(0.2, decay_steps=25)), None, False),
    "minibatch and average": (
        lsq, lsq_jac, (A, B), None,
        dict(batch_size=16, epochs=6, gtol=0.0, seed=4, average="polyak"), None, False),
    "sparse lazy": (qfun, sparse_jac, None, None,
                    dict(sparse="lazy", maxiter=25, gtol=0.0), None, ON_DEVICE),
    "sparse catchup xtol": (qfun, sparse_jac, None, None,
                            dict(sparse="catchup", maxiter=400, gtol=0.0, xtol=2e-2),
                            None, ON_DEVICE),
    "sparse nonfinite": (qfun, bad_sparse_jac, None, None,
                         dict(sparse="lazy", maxiter=200, gtol=0.0), None, ON_DEVICE),
}

_JITTED = {}


def jitted(f):
    if f not in _JITTED:
        _JITTED[f] = njit(f)
    return _JITTED[f]


def recorder(stop_at, seen):
    def callback(intermediate_result):
        x = intermediate_result.x
        x = x.copy_to_host() if hasattr(x, "copy_to_host") else np.array(x, copy=True)
        seen.append((intermediate_result.nit, x, intermediate_result.fun))
        if intermediate_result.nit == stop_at:
            raise StopIteration
    return callback


def run_host(name, compiled, jit):
    """The scenario on the host: the compiled loop or the Python loop, with
    the objective as ``@njit`` functions (``jit``) or as Python ones."""
    fun, jac, args, bounds, options, stop_at, _ = SCENARIOS[name]
    if args is None:
        args = (T,)
    if jit:
        fun, jac = jitted(fun), jitted(jac)
    seen = []
    callback = recorder(stop_at, seen) if stop_at is not None else None
    res = numadam.minimize(fun, X0, args=args, jac=jac, bounds=bounds, method="adam",
                           callback=callback,
                           options=dict(options, compiled=compiled, learning_rate=0.1))
    return res, seen


def _check_scenario_reached(name, res):
    """Each scenario ends the way it was built to end."""
    # (maxiter reached with no tolerance set: the steps asked for, a success)
    want = {"maxiter": 0, "gtol": 0, "ftol": 0, "xtol": 0, "nonfinite gradient": 3,
            "nonfinite fun": 3, "callback stop": 99, "callback every 3": 0, "bounds": 0,
            "schedule and history": 0, "minibatch and average": 0, "sparse lazy": 0,
            "sparse catchup xtol": 0, "sparse nonfinite": 3}[name]
    assert res.status == want, res.message


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_python_and_compiled_loops_agree_bitwise(name):
    # the same @njit objective through both loops
    a, seen_a = run_host(name, compiled=True, jit=True)
    b, seen_b = run_host(name, compiled=False, jit=True)
    _check_scenario_reached(name, b)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.jac, b.jac)
    for key in ("fun", "nit", "nfev", "njev", "status", "success", "message"):
        assert a[key] == b[key], key
    assert a.state == b.state
    assert len(seen_a) == len(seen_b)
    for (ka, xa, fa), (kb, xb, fb) in zip(seen_a, seen_b):
        assert ka == kb and fa == fb
        np.testing.assert_array_equal(xa, xb)
    if "history" in b:
        for key in b.history:
            np.testing.assert_array_equal(a.history[key], b.history[key])
    if "x_last" in b:
        np.testing.assert_array_equal(a.x_last, b.x_last)


@pytest.mark.parametrize("name", [n for n, s in SCENARIOS.items() if s[-1]])
def test_device_driver_takes_the_same_path(name):
    cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    if not cuda.is_available():  # pragma: no cover - a broken driver
        pytest.skip("no CUDA GPU and no simulator")
    fun, jac, args, bounds, options, stop_at, _ = SCENARIOS[name]
    host, seen_host = run_host(name, compiled=False, jit=False)

    def dfun(x, t):
        return fun(x.copy_to_host(), t)

    def djac(x, t):
        g = jac(x.copy_to_host(), t)
        if isinstance(g, tuple):
            return cuda.to_device(g[0]), cuda.to_device(g[1])
        return cuda.to_device(g)

    seen = []
    callback = recorder(stop_at, seen) if stop_at is not None else None
    dev = numadam.minimize(dfun, cuda.to_device(X0), args=(T,), jac=djac, bounds=bounds,
                           method="adam", callback=callback,
                           options=dict(options, learning_rate=0.1))
    assert (dev.nit, dev.status, dev.message) == (host.nit, host.status, host.message)
    x = dev.x.copy_to_host()
    np.testing.assert_allclose(x, host.x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dev.jac.copy_to_host(), host.jac, rtol=1e-12, atol=1e-12)
    assert dev.fun == pytest.approx(host.fun, rel=1e-12, abs=1e-12)
    assert dev.state.step == host.state.step
    assert [k for k, _, _ in seen] == [k for k, _, _ in seen_host]
    for (_, xd, _), (_, xh, _) in zip(seen, seen_host):
        np.testing.assert_allclose(xd, xh, rtol=1e-12, atol=1e-12)
