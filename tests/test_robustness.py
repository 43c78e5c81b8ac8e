"""Non-finite values, dtypes, untouched inputs and exact continuation."""

import pickle

import numpy as np
import pytest

import numadam
from numadam.problems import METHOD_SETTINGS, quadratic, rosen, rosen_der, rosenbrock

from conftest import METHODS, VARIANTS, variant_id

X0 = np.array([-1.2, 1.0])


def _nan_beyond(limit, where="f"):
    """Rosenbrock whose value (or gradient) is NaN once x[0] > limit."""
    def fun(x):
        return np.nan if (where == "f" and x[0] > limit) else rosen(x)

    def jac(x):
        g = rosen_der(x)
        if where == "g" and x[0] > limit:
            g[1] = np.inf
        return g
    return fun, jac


@pytest.mark.parametrize("where, what", [("f", "function value"), ("g", "gradient")])
def test_non_finite_mid_run_returns_the_last_finite_iterate(where, what):
    fun, jac = _nan_beyond(-1.0, where)
    xs = []
    res = numadam.minimize(fun, X0, jac=jac, callback=xs.append,
                           options={"learning_rate": 0.01, "maxiter": 10_000})
    assert res.status == 3 and not res.success
    assert res.message.startswith(f"Non-finite {what} after step {res.nit}; x is the "
                                  f"iterate of step {res.nit - 1}")
    assert res.x[0] <= -1.0
    np.testing.assert_array_equal(res.x, xs[-1])          # the last iterate shown
    assert np.isfinite(res.fun) and res.fun == rosen(res.x)
    np.testing.assert_array_equal(res.jac, rosen_der(res.x))
    # the state holds the step that led to the non-finite value
    assert res.state.step == res.nit


def test_non_finite_with_a_jac_that_reuses_its_buffer():
    buf = np.empty(2)

    def jac(x):
        buf[:] = rosen_der(x)
        if x[0] > -1.0:
            buf[0] = np.nan
        return buf

    res = numadam.minimize(rosen, X0, jac=jac, options={"learning_rate": 0.01})
    assert res.status == 3
    np.testing.assert_array_equal(res.jac, rosen_der(res.x))
    assert res.nfev == res.nit + 2                 # one more evaluation to restore jac


def test_non_finite_at_x0():
    res = numadam.minimize(lambda x: np.inf, X0, jac=rosen_der)
    assert res.status == 3 and res.nit == 0 and res.message == "Non-finite function value at x0."
    np.testing.assert_array_equal(res.x, X0)


def test_diverging_run_stops_with_status_3():
    res = numadam.minimize(rosen, np.array([-1.2, 1.0], np.float32), method="radam",
                           jac=rosen_der, options={"learning_rate": 1e-2})
    assert res.status == 3 and np.all(np.isfinite(res.x))


def test_nothing_passed_in_is_modified():
    pr = quadratic(6, cond=10.0)
    x0 = pr.x0.copy()
    A, b = pr.args
    A0, b0 = A.copy(), b.copy()
    options = {"learning_rate": 0.1, "maxiter": 50}
    bounds = np.array([[-5.0, 5.0]] * 6)
    bounds0 = bounds.copy()
    first = numadam.minimize(pr.fun, x0, args=(A, b), jac=pr.jac, bounds=bounds,
                             options=options)
    state_copy = first.state.copy()
    opts2 = {"state": first.state, "maxiter": 10}
    numadam.minimize(pr.fun, first.x, args=(A, b), jac=pr.jac, options=opts2)
    np.testing.assert_array_equal(x0, pr.x0)
    np.testing.assert_array_equal(A, A0)
    np.testing.assert_array_equal(b, b0)
    np.testing.assert_array_equal(bounds, bounds0)
    assert options == {"learning_rate": 0.1, "maxiter": 50}
    assert opts2 == {"state": first.state, "maxiter": 10}
    assert first.state == state_copy


def test_fun_sees_a_read_only_iterate():
    def fun(x):
        with pytest.raises(ValueError, match="read-only"):
            x[0] = 5.0
        return rosen(x)

    res = numadam.minimize(fun, X0, jac=rosen_der, options={"maxiter": 2})
    assert res.nit == 2 and res.x[0] != 5.0


def test_float32_runs_in_float32():
    x0 = X0.astype(np.float32)
    seen = []

    def jac(x):
        seen.append(x.dtype)
        return rosen_der(x).astype(np.float64)      # converted to float32

    res = numadam.minimize(rosen, x0, jac=jac, options={"maxiter": 20})
    assert set(seen) == {np.dtype(np.float32)}
    assert res.x.dtype == res.jac.dtype == np.float32
    assert all(a.dtype == np.float32 for a in res.state.slots.values())


@pytest.mark.parametrize("x0", [[-1, 1], (-1, 1), np.array([-1, 1], np.int32), -1])
def test_integer_and_list_x0_become_float64(x0):
    res = numadam.minimize(lambda x: float(np.sum(x ** 2)), x0, jac=lambda x: 2 * x,
                           options={"maxiter": 3})
    assert res.x.dtype == np.float64
    assert res.x.shape == np.atleast_1d(x0).shape


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_continuing_from_the_state_is_bitwise_one_run(variant):
    method, options = variant
    pr = rosenbrock(4)
    kw = dict(method=method, jac=pr.jac)
    one = numadam.minimize(pr.fun, pr.x0, options=dict(options, maxiter=700, gtol=0), **kw)
    first = numadam.minimize(pr.fun, pr.x0, options=dict(options, maxiter=300, gtol=0), **kw)
    second = numadam.minimize(pr.fun, first.x, **kw, options=dict(
        options, maxiter=400, gtol=0, state=first.state))
    np.testing.assert_array_equal(second.x, one.x)
    assert second.state == one.state
    assert second.state.step == 700 and second.nit == 400


def test_a_state_can_seed_several_runs():
    first = numadam.minimize(rosen, X0, jac=rosen_der, options={"maxiter": 50})
    a = numadam.minimize(rosen, first.x, jac=rosen_der,
                         options={"maxiter": 50, "state": first.state})
    b = numadam.minimize(rosen, first.x, jac=rosen_der,
                         options={"maxiter": 50, "state": first.state})
    np.testing.assert_array_equal(a.x, b.x)
    assert first.state.step == 50


def test_state_continues_through_the_optimizer_too():
    x = X0.copy()
    opt = numadam.Optimizer("nadam", x, learning_rate=0.01)
    for _ in range(10):
        opt.step(rosen_der(x))
    res = numadam.minimize(rosen, x, method="nadam", jac=rosen_der,
                           options={"learning_rate": 0.01, "maxiter": 10, "gtol": 0,
                                    "state": opt.state})
    whole = numadam.minimize(rosen, X0, method="nadam", jac=rosen_der,
                             options={"learning_rate": 0.01, "maxiter": 20, "gtol": 0})
    np.testing.assert_array_equal(res.x, whole.x)


def test_state_pickles_and_reports_itself():
    res = numadam.minimize(rosen, X0, method="nadam", jac=rosen_der, options={"maxiter": 5})
    st = pickle.loads(pickle.dumps(res.state))
    assert st == res.state and st.step == 5
    assert set(st.slots) == {"m", "v"} and st.m is not None
    assert 0 < st.scalars["mu_product"] < 1
    assert "OptimizerState(method='nadam', step=5" in repr(st)
    with pytest.raises(AttributeError, match=r"has no slot 'vmax'; its slots are \['m', 'v'\]"):
        st.vmax


@pytest.mark.parametrize("method", METHODS)
def test_large_problem_uses_the_parallel_kernel_and_agrees(method):
    n = 40_000
    rng = np.random.default_rng(3)
    target = rng.standard_normal(n)

    def fg(x):
        d = x - target
        return 0.5 * float(d @ d), d

    opts = dict(METHOD_SETTINGS[method], maxiter=20, gtol=0)
    par = numadam.minimize(fg, np.zeros(n), method=method, jac=True,
                           options=dict(opts, parallel=True))
    ser = numadam.minimize(fg, np.zeros(n), method=method, jac=True,
                           options=dict(opts, parallel=False))
    auto = numadam.minimize(fg, np.zeros(n), method=method, jac=True, options=opts)
    np.testing.assert_array_equal(par.x, ser.x)
    np.testing.assert_array_equal(auto.x, ser.x)
