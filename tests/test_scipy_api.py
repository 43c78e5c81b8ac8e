"""The scipy contract: custom methods, pass-through, callbacks, options."""

import warnings

import numpy as np
import pytest
import scipy.optimize
from scipy.optimize import Bounds, OptimizeResult, OptimizeWarning

import numadam
from numadam.problems import quadratic, rosen, rosen_der, rosen_fg

from conftest import METHODS

X0 = np.array([-1.2, 1.0, -0.5])


@pytest.mark.parametrize("method", METHODS)
def test_scipy_custom_method_gives_the_same_result(method):
    opts = {"maxiter": 300, "gtol": 1e-8}
    ours = numadam.minimize(rosen, X0, method=method, jac=rosen_der, options=opts)
    via_scipy = scipy.optimize.minimize(rosen, X0, method=getattr(numadam, method),
                                        jac=rosen_der, options=opts)
    assert isinstance(via_scipy, OptimizeResult)
    for key in ("x", "jac"):
        np.testing.assert_array_equal(via_scipy[key], ours[key])
    for key in ("fun", "nit", "nfev", "njev", "status", "success", "message"):
        assert via_scipy[key] == ours[key], key
    assert via_scipy.state == ours.state


def test_scipy_custom_method_with_jac_true_tol_and_bounds():
    bounds = [(-1.0, 0.5), (None, 0.8), (-2, 2)]
    kw = dict(jac=True, tol=1e-3, bounds=bounds, options={"maxiter": 200})
    ours = numadam.minimize(rosen_fg, X0, method="adam", **kw)
    via_scipy = scipy.optimize.minimize(rosen_fg, X0, method=numadam.adam, **kw)
    np.testing.assert_array_equal(ours.x, via_scipy.x)
    assert ours.nfev == via_scipy.nfev == ours.nit + 1
    assert ours.x[0] <= 0.5 and ours.x[1] <= 0.8


@pytest.mark.parametrize("style", ["new", "legacy"])
def test_scipy_custom_method_callbacks_and_stop_iteration(style):
    seen = {"ours": [], "scipy": []}

    def make(tag):
        if style == "new":
            def cb(intermediate_result):
                seen[tag].append(intermediate_result.x)
                if intermediate_result.nit == 7:
                    raise StopIteration
        else:
            def cb(xk):
                seen[tag].append(xk)
                if len(seen[tag]) == 7:
                    raise StopIteration
        return cb

    ours = numadam.minimize(rosen, X0, method="nadam", jac=rosen_der,
                            callback=make("ours"))
    theirs = scipy.optimize.minimize(rosen, X0, method=numadam.nadam,
                                     jac=rosen_der, callback=make("scipy"))
    for res in (ours, theirs):
        assert res.status == 99 and not res.success
        assert res.message == "`callback` raised `StopIteration`."
        assert res.nit == 7
    np.testing.assert_array_equal(ours.x, theirs.x)
    np.testing.assert_array_equal(np.array(seen["ours"]), np.array(seen["scipy"]))
    np.testing.assert_array_equal(seen["ours"][-1], ours.x)


def test_status_99_matches_scipy_own_message():
    def stop(intermediate_result):
        raise StopIteration

    bfgs = scipy.optimize.minimize(rosen, X0, method="BFGS", callback=stop)
    ours = numadam.minimize(rosen, X0, jac=rosen_der, callback=stop)
    assert ((ours.status, ours.success, ours.message)
            == (bfgs.status, bfgs.success, bfgs.message))


def test_new_style_callback_gets_an_intermediate_result_each_step():
    results = []
    res = numadam.minimize(rosen, X0, jac=rosen_der,
                           callback=lambda intermediate_result: results.append(
                               intermediate_result),
                           options={"maxiter": 5, "gtol": 0})
    assert [r.nit for r in results] == [1, 2, 3, 4, 5]
    assert all(isinstance(r, OptimizeResult) for r in results)
    for r in results:
        assert r.fun == pytest.approx(rosen(r.x), rel=1e-15)
        np.testing.assert_array_equal(r.jac, rosen_der(r.x))
    assert len({id(r.x) for r in results}) == 5      # copies, not one buffer
    np.testing.assert_array_equal(results[-1].x, res.x)


def test_legacy_callback_gets_a_copy_of_xk():
    xs = []
    numadam.minimize(rosen, X0, jac=rosen_der, callback=xs.append,
                     options={"maxiter": 3, "gtol": 0})
    assert len(xs) == 3 and not np.array_equal(xs[0], xs[2])


@pytest.mark.parametrize("method", ["BFGS", "l-bfgs-b", "Nelder-Mead", "CG", "trust-constr"])
def test_scipy_method_names_pass_through(method):
    kw = dict(jac=rosen_der) if method != "Nelder-Mead" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = numadam.minimize(rosen, X0, method=method, options={"maxiter": 50}, **kw)
        theirs = scipy.optimize.minimize(rosen, X0, method=method,
                                         options={"maxiter": 50}, **kw)
    np.testing.assert_array_equal(ours.x, theirs.x)
    assert ours.nit == theirs.nit and "state" not in ours


def test_other_callables_go_to_scipy_as_custom_methods():
    def custom(fun, x0, args=(), **kwargs):
        return OptimizeResult(x=x0 * 0 + 42.0, fun=0.0, success=True, nit=0)

    res = numadam.minimize(rosen, X0, method=custom)
    np.testing.assert_array_equal(res.x, 42.0)


def test_minimize_accepts_its_own_callables_as_method():
    a = numadam.minimize(rosen, X0, method=numadam.radam, jac=rosen_der,
                         options={"maxiter": 50})
    b = numadam.minimize(rosen, X0, method="RAdam", jac=rosen_der,
                         options={"maxiter": 50})
    np.testing.assert_array_equal(a.x, b.x)


def test_method_names_are_case_insensitive():
    a = numadam.minimize(rosen, X0, method="ADAMW", jac=rosen_der, options={"maxiter": 20})
    b = numadam.minimize(rosen, X0, method="adamw", jac=rosen_der, options={"maxiter": 20})
    np.testing.assert_array_equal(a.x, b.x)


def test_scipy_method_list_matches_scipy():
    from numadam._registry import SCIPY_METHODS
    from scipy.optimize._minimize import MINIMIZE_METHODS

    assert {m.lower() for m in SCIPY_METHODS} == set(MINIMIZE_METHODS)


def test_result_fields():
    res = numadam.minimize(rosen, X0, jac=rosen_der, options={"maxiter": 10})
    for key in ("x", "fun", "jac", "nit", "nfev", "njev", "status", "success",
                "message", "state"):
        assert key in res
    assert isinstance(res.fun, float) and isinstance(res.nit, int)
    assert res.status == 1 and res.success is False
    assert res.message == "Maximum number of iterations has been exceeded."
    assert res.fun == rosen(res.x)
    np.testing.assert_array_equal(res.jac, rosen_der(res.x))


def test_all_tolerances_zero_takes_exactly_maxiter_steps():
    pr = quadratic(5, cond=2.0)
    res = numadam.minimize(pr.fun, pr.xopt, args=pr.args, jac=pr.jac,
                           options=dict(maxiter=123, gtol=0, ftol=0, xtol=0))
    # started at the minimiser: every test would stop at once if enabled;
    # with none to meet, the run did what it was asked
    assert res.nit == 123 and res.status == 0 and res.success
    assert res.message == ("Optimization terminated successfully: the requested 123 "
                           "steps are done (no tolerance was set).")
    assert res.nfev == res.njev == 124
    one = numadam.minimize(pr.fun, pr.x0, args=pr.args, jac=pr.jac,
                           options=dict(maxiter=1, gtol=0))
    assert one.success and "the requested step is done" in one.message


@pytest.mark.parametrize("test, options", [
    ("gtol", {"gtol": 1e-3}),
    ("ftol", {"gtol": 0, "ftol": 1e-9}),
    ("xtol", {"gtol": 0, "xtol": 1e-7}),
])
def test_each_tolerance_ends_the_run(test, options):
    pr = quadratic(5, cond=2.0)
    res = numadam.minimize(pr.fun, pr.x0, args=pr.args, jac=pr.jac, method="sgd",
                           options=dict(options, learning_rate=0.1, maxiter=100_000))
    assert res.success and test in res.message
    assert res.nit < 100_000
    # the same run one step shorter must not have met the test
    shorter = numadam.minimize(pr.fun, pr.x0, args=pr.args, jac=pr.jac, method="sgd",
                               options=dict(options, learning_rate=0.1,
                                            maxiter=res.nit - 1))
    assert shorter.status == 1


def test_tol_sets_gtol_unless_given():
    pr = quadratic(5, cond=2.0)
    kw = dict(args=pr.args, jac=pr.jac, method="sgd")
    a = numadam.minimize(pr.fun, pr.x0, tol=1e-3, options={"learning_rate": 0.1}, **kw)
    b = numadam.minimize(pr.fun, pr.x0, options={"gtol": 1e-3, "learning_rate": 0.1}, **kw)
    c = numadam.minimize(pr.fun, pr.x0, tol=1e-3,
                         options={"gtol": 1e-6, "learning_rate": 0.1}, **kw)
    assert a.nit == b.nit < c.nit
    assert np.max(np.abs(c.jac)) <= 1e-6


def test_unknown_options_warn_as_scipy_does():
    with pytest.warns(OptimizeWarning, match=r"Unknown solver options: epsilon, foo "
                      r"\('epsilon' is spelled 'eps' here"):
        res = numadam.minimize(rosen, X0, jac=rosen_der,
                               options={"epsilon": 0.1, "foo": 1, "maxiter": 3})
    assert res.nit == 3
    with pytest.warns(OptimizeWarning, match="did you mean 'beta1' for 'betta1'"):
        numadam.minimize(rosen, X0, jac=rosen_der, options={"betta1": 0.5, "maxiter": 1})


def test_the_unknown_option_warning_points_at_the_caller():
    with pytest.warns(OptimizeWarning) as record:
        numadam.minimize(rosen, X0, jac=rosen_der, options={"foo": 1, "maxiter": 1})
    assert record[0].filename == __file__


@pytest.mark.parametrize("kw, text", [
    (dict(hess=lambda x: np.eye(3)), r"Method adam does not use Hessian information \(hess\)"),
    (dict(hessp=lambda x, p: p), r"does not use Hessian-vector product information \(hessp\)"),
])
def test_hess_and_hessp_are_ignored_with_scipy_warning(kw, text):
    with pytest.warns(RuntimeWarning, match=text):
        res = numadam.minimize(rosen, X0, jac=rosen_der, options={"maxiter": 5}, **kw)
    plain = numadam.minimize(rosen, X0, jac=rosen_der, options={"maxiter": 5})
    np.testing.assert_array_equal(res.x, plain.x)


@pytest.mark.parametrize("jac", [None, "2-point", "3-point", False])
def test_finite_difference_gradients(jac):
    res = numadam.minimize(rosen, X0, method="adam", jac=jac,
                           options={"learning_rate": 1e-2, "maxiter": 200, "gtol": 0})
    exact = numadam.minimize(rosen, X0, method="adam", jac=rosen_der,
                             options={"learning_rate": 1e-2, "maxiter": 200, "gtol": 0})
    np.testing.assert_allclose(res.x, exact.x, rtol=1e-4)
    calls = 2 * 3 if jac == "3-point" else 3
    assert res.njev == 201 and res.nfev == 201 * (calls + 1)
    np.testing.assert_allclose(res.jac, rosen_der(res.x), rtol=1e-5, atol=1e-5)


def test_finite_differences_stay_inside_bounds():
    lo = np.array([-1.2, 0.0, -0.5])
    hi = np.array([-1.2 + 1e-12, 1.0, -0.5 + 1e-12])
    visited = []

    def f(x):
        visited.append(x.copy())
        return rosen(x)

    res = numadam.minimize(f, X0, jac="3-point", bounds=Bounds(lo, hi),
                           options={"maxiter": 3})
    visited = np.array(visited)
    assert np.all(visited >= lo) and np.all(visited <= hi)
    # the middle coordinate has room for central differences
    assert res.jac[1] == pytest.approx(rosen_der(res.x)[1], rel=1e-6)


def test_jac_true_and_callable_give_the_same_run():
    a = numadam.minimize(rosen_fg, X0, jac=True, options={"maxiter": 100})
    b = numadam.minimize(rosen, X0, jac=rosen_der, options={"maxiter": 100})
    np.testing.assert_array_equal(a.x, b.x)
    assert a.nfev == a.njev == b.nfev == 101


def test_args_are_passed_to_fun_and_jac():
    pr = quadratic(4, cond=3.0)
    res = numadam.minimize(pr.fun, pr.x0, args=pr.args, jac=pr.jac, method="adam",
                           options={"learning_rate": 0.05, "maxiter": 5000})
    np.testing.assert_allclose(res.x, pr.xopt, atol=1e-4)
    one = numadam.minimize(lambda x, a: np.sum((x - a) ** 2), np.zeros(2), args=3.0,
                           jac=lambda x, a: 2 * (x - a), method="sgd",
                           options={"learning_rate": 0.5, "maxiter": 1})
    np.testing.assert_array_equal(one.x, 3.0)   # one exact Newton-like step


@pytest.mark.parametrize("bounds", [
    Bounds([-1, 0.5, -1], [0.8, 0.9, 0]),
    [(-1, 0.8), (0.5, 0.9), (-1, 0)],
    Bounds(-1.0, 0.0),
])
def test_bounds_forms(bounds):
    res = numadam.minimize(rosen, X0, jac=rosen_der, bounds=bounds,
                           options={"learning_rate": 0.01, "maxiter": 500})
    b = bounds if isinstance(bounds, Bounds) else Bounds(*zip(*bounds))
    assert np.all(res.x >= b.lb) and np.all(res.x <= b.ub)


def test_x0_outside_the_bounds_is_clipped_first():
    xs = []
    numadam.minimize(rosen, X0, jac=rosen_der, bounds=[(0, 1)] * 3, callback=xs.append,
                     options={"maxiter": 1, "learning_rate": 1e-6, "gtol": 0})
    assert np.all(xs[0] >= 0)


def test_show_options():
    text = " ".join(numadam.show_options("Adam", disp=False).split())
    for line in ("learning_rate : float, default 0.001", "beta1 : float, default 0.9",
                 "beta2 : float, default 0.999", "eps : float, default 1e-8",
                 "amsgrad : bool, default False", "maxiter : int, default 1000",
                 "gtol : float, default 1e-5", "Allowed: ``0 <= eps``"):
        assert line in text
    assert "0 <= beta1 < 1" in text
    assert "fixed by this method: amsgrad=True" in numadam.show_options("amsgrad", disp=False)
    every = numadam.show_options(disp=False)
    assert all(f"{m}:" in every for m in METHODS)
    assert numadam.show_options("BFGS", disp=False) == scipy.optimize.show_options(
        "minimize", "BFGS", disp=False)


def test_show_options_prints(capsys):
    assert numadam.show_options("sgd") is None
    assert "nesterov : bool, default False" in capsys.readouterr().out


def test_disp_prints_scipy_summary(capsys):
    numadam.minimize(rosen, X0, jac=rosen_der, options={"disp": True, "gtol": 1e4})
    out = capsys.readouterr().out
    assert "Optimization terminated successfully" in out
    assert "Iterations: 0" in out and "Function evaluations: 1" in out
    with pytest.warns(OptimizeWarning, match="Maximum number of iterations"):
        numadam.minimize(rosen, X0, jac=rosen_der, options={"disp": True, "maxiter": 2})


@pytest.mark.parametrize("method", METHODS)
def test_method_docstrings_show_math_and_options(method):
    doc = getattr(numadam, method).__doc__
    assert ".. math::" in doc and "\\begin{aligned}" in doc
    assert "Options\n-------\nlearning_rate : float" in doc
    assert "References\n----------\n.. [1]" in doc and "Examples\n--------" in doc
