"""Every method, both dtypes, converges on a convex quadratic and on Rosenbrock."""

import numpy as np
import pytest

import numadam
from numadam.problems import METHOD_SETTINGS, quadratic, rosenbrock

from conftest import METHODS

# (gtol, max distance to the minimiser, max excess of f) per dtype
TOL = {np.float64: (1e-6, 1e-4, 1e-7), np.float32: (1e-3, 5e-3, 1e-4)}


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("problem", [rosenbrock(2), quadratic(20, cond=100.0)],
                         ids=["rosenbrock", "quadratic"])
def test_converges(problem, method, dtype):
    gtol, xtol, ftol = TOL[dtype]
    pr = problem.astype(dtype)
    res = numadam.minimize(pr.fun, pr.x0, args=pr.args, method=method, jac=pr.jac,
                           options=dict(METHOD_SETTINGS[method], maxiter=50_000,
                                        gtol=gtol))
    assert res.x.dtype == dtype and res.jac.dtype == dtype
    assert np.max(np.abs(res.x - pr.xopt)) < xtol
    # a run that ends at maxiter, at a constant rate, oscillates about the
    # minimum (rmsprop with momentum on the quadratic: f - fopt from 1e-8 to
    # 4.3e-7 between steps 10,000 and 80,000 in float64); where in that
    # oscillation it ends depends on the rounding of the CPU's BLAS
    assert res.fun - pr.fopt < (ftol if res.success else 10 * ftol)
    assert res.fun == pytest.approx(float(pr.fun(res.x, *pr.args)), rel=1e-6, abs=1e-12)
    if res.success:
        assert np.max(np.abs(res.jac)) <= gtol
        assert res.nit < 50_000
    else:
        assert res.status == 1 and res.nit == 50_000


@pytest.mark.parametrize("method", ["adam", "sgd", "adagrad", "nadam"])
def test_gtol_success_reports_the_gradient_at_x(method):
    pr = quadratic(8, cond=10.0, seed=2)
    res = numadam.minimize(pr.fun, pr.x0, args=pr.args, method=method, jac=pr.jac,
                           options=dict(METHOD_SETTINGS[method], maxiter=100_000,
                                        gtol=1e-7))
    assert res.success and res.status == 0
    assert "gtol" in res.message
    np.testing.assert_allclose(res.jac, pr.jac(res.x, *pr.args), rtol=0, atol=0)
    assert np.max(np.abs(res.jac)) <= 1e-7
    assert res.nfev == res.njev == res.nit + 1


def test_bounds_are_respected_and_active_at_the_solution():
    pr = quadratic(6, cond=5.0, seed=4)
    lo = pr.xopt - 0.5
    hi = pr.xopt.copy()
    hi[:3] -= 0.25          # the unconstrained minimiser is outside for 3 coordinates
    seen = []
    res = numadam.minimize(pr.fun, pr.x0, args=pr.args, method="adam", jac=pr.jac,
                           bounds=list(zip(lo, hi)),
                           callback=lambda xk: seen.append(xk),
                           options=dict(learning_rate=1e-2, maxiter=5000, gtol=0))
    steps = np.array(seen)
    assert np.all(steps >= lo) and np.all(steps <= hi)
    reference = __import__("scipy.optimize", fromlist=["minimize"]).minimize(
        pr.fun, pr.x0, args=pr.args, jac=pr.jac, method="L-BFGS-B",
        bounds=list(zip(lo, hi)), options=dict(ftol=1e-15, gtol=1e-12))
    np.testing.assert_allclose(res.x, reference.x, atol=1e-4)
    np.testing.assert_array_equal(res.x[:3], hi[:3])
