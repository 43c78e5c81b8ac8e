"""The compiled loop (Numba objectives) against the Python-driven loop."""

import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit, types
from numba.core import event

import numadam
from numadam import _compiled
from numadam.problems import quadratic, rosen, rosen_der, rosen_fg, rosenbrock

from conftest import DTYPES, VARIANTS, variant_id


@njit(cache=True)
def rosen_der_out(x, out):
    out[:] = 0.0
    for i in range(x.shape[0] - 1):
        a = x[i + 1] - x[i] * x[i]
        out[i] += -400.0 * x[i] * a - 2.0 * (1.0 - x[i])
        out[i + 1] += 200.0 * a


@njit(cache=True)
def rosen_fg_out(x, out):
    rosen_der_out(x, out)
    return rosen(x)


def _pair(kw, **options):
    """The same run with the compiled loop and with the Python loop."""
    opts = kw.pop("options", {})
    compiled = numadam.minimize(**kw, options=dict(opts, compiled=True, **options))
    python = numadam.minimize(**kw, options=dict(opts, compiled=False, **options))
    return compiled, python


def _assert_same(a, b):
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.jac, b.jac)
    for key in ("fun", "nit", "nfev", "njev", "status", "success", "message"):
        assert a[key] == b[key], key
    assert a.state == b.state


def _variant_dtype_cases():
    """Every declared variant in float64, and in float32 each method's
    defaults; the other float32 variants are slow (each case compiles a
    loop of its own, and the loop calls the same step kernel as the Python
    loop, whose float32 numerics tests/test_parity.py checks per variant)."""
    cases = []
    seen = set()
    for variant in VARIANTS:
        for dtype, name in zip(DTYPES, ["float64", "float32"]):
            first = variant[0] not in seen
            marks = () if dtype == np.float64 or first else (pytest.mark.slow,)
            cases.append(pytest.param(variant, dtype, marks=marks,
                                      id=f"{variant_id(variant)}-{name}"))
        seen.add(variant[0])
    return cases


@pytest.mark.parametrize("variant, dtype", _variant_dtype_cases())
def test_compiled_loop_is_bitwise_the_python_loop(variant, dtype):
    method, options = variant
    pr = rosenbrock(5).astype(dtype)
    a, b = _pair(dict(fun=pr.fun, x0=pr.x0, jac=pr.jac, method=method),
                 **options, maxiter=700, gtol=0.0)
    _assert_same(a, b)
    assert a.nit == 700


def test_compiled_is_chosen_for_numba_functions_and_can_be_refused(monkeypatch):
    runs = []
    compiled_run = _compiled.run
    monkeypatch.setattr(_compiled, "run", lambda *a: runs.append(1) or compiled_run(*a))
    pr = quadratic(7, cond=3.0, seed=9)
    numadam.minimize(pr.fun, pr.x0, args=pr.args, jac=pr.jac, method="adagrad",
                     options={"maxiter": 3})
    assert len(runs) == 1
    numadam.minimize(pr.fun, pr.x0, args=pr.args, jac=pr.jac, method="adagrad",
                     options={"maxiter": 3, "compiled": False, "lr_decay": 0.1})
    numadam.minimize(pr.fun, pr.x0, args=pr.args, jac=lambda x, A, b: A @ x - b,
                     method="adagrad", options={"maxiter": 3})
    assert len(runs) == 1


def test_compiled_true_needs_numba_functions():
    with pytest.raises(ValueError, match=r"option 'compiled'=True needs fun, and jac "
                       r"unless jac=True, to be Numba functions \(@numba.njit\); got "
                       r"fun=<lambda> and jac=rosen_der"):
        numadam.minimize(lambda x: rosen(x), np.zeros(3), jac=rosen_der,
                         options={"compiled": True})


@pytest.mark.parametrize("kw", [
    dict(jac=True, fun=rosen_fg),
    dict(jac=rosen_der_out, fun=rosen, options={"jac_out": True}),
    dict(jac=True, fun=rosen_fg_out, options={"jac_out": True}),
])
def test_gradient_conventions(kw):
    x0 = rosenbrock(4).x0
    a, b = _pair(dict(kw, x0=x0, method="adam"), maxiter=500, gtol=0,
                 learning_rate=1e-2)
    _assert_same(a, b)
    plain = numadam.minimize(rosen, x0, jac=rosen_der, method="adam",
                             options={"maxiter": 500, "gtol": 0, "learning_rate": 1e-2})
    np.testing.assert_array_equal(a.x, plain.x)


@pytest.mark.parametrize("options", [
    {"gtol": 1e-4}, {"gtol": 0, "ftol": 1e-10}, {"gtol": 0, "xtol": 1e-8},
])
def test_termination_tests(options):
    pr = quadratic(6, cond=4.0, seed=1)
    a, b = _pair(dict(fun=pr.fun, x0=pr.x0, args=pr.args, jac=pr.jac, method="sgd"),
                 **options, learning_rate=0.1, maxiter=100_000)
    _assert_same(a, b)
    assert a.success and a.nit < 100_000


def test_bounds():
    pr = rosenbrock(4)
    bounds = [(-1.0, 0.5), (0.2, 0.7), (None, 0.9), (-2, 2)]
    a, b = _pair(dict(fun=pr.fun, x0=pr.x0, jac=pr.jac, method="radam", bounds=bounds),
                 maxiter=2000, learning_rate=1e-2)
    _assert_same(a, b)
    assert a.x[0] <= 0.5 and 0.2 <= a.x[1] <= 0.7


@pytest.mark.parametrize("style", ["new", "legacy"])
def test_callbacks_every_step_match_the_python_loop(style):
    seen = {True: [], False: []}

    def make(flag):
        if style == "new":
            def cb(intermediate_result):
                seen[flag].append((intermediate_result.nit, intermediate_result.x,
                                   intermediate_result.fun, intermediate_result.jac))
                if intermediate_result.nit == 40:
                    raise StopIteration
        else:
            def cb(xk):
                seen[flag].append(xk)
                if len(seen[flag]) == 40:
                    raise StopIteration
        return cb

    pr = rosenbrock(3)
    results = {}
    for flag in (True, False):
        results[flag] = numadam.minimize(pr.fun, pr.x0, jac=pr.jac, callback=make(flag),
                                         options={"compiled": flag})
    _assert_same(results[True], results[False])
    assert results[True].status == 99 and results[True].nit == 40
    for u, v in zip(seen[True], seen[False]):
        for p, q in zip(np.atleast_1d(u), np.atleast_1d(v)) if style == "legacy" else zip(u, v):
            np.testing.assert_array_equal(p, q)


def test_callback_every_k_steps():
    pr = rosenbrock(3)
    nits = []
    res = numadam.minimize(pr.fun, pr.x0, jac=pr.jac,
                           callback=lambda intermediate_result: nits.append(
                               intermediate_result.nit),
                           options={"maxiter": 1000, "gtol": 0, "callback_every": 100})
    assert nits == list(range(100, 1001, 100))
    plain = numadam.minimize(pr.fun, pr.x0, jac=pr.jac,
                             options={"maxiter": 1000, "gtol": 0})
    np.testing.assert_array_equal(res.x, plain.x)


@pytest.mark.parametrize("where", ["f", "g"])
def test_non_finite_mid_run(where):
    @njit
    def fun(x):
        if where == "f" and x[0] > -1.0:
            return np.nan
        return rosen(x)

    @njit
    def jac(x):
        g = rosen_der(x)
        if where == "g" and x[0] > -1.0:
            g[1] = np.inf
        return g

    a, b = _pair(dict(fun=fun, x0=np.array([-1.2, 1.0]), jac=jac),
                 learning_rate=1e-2, maxiter=10_000)
    _assert_same(a, b)
    assert a.status == 3 and a.fun == rosen(a.x)


def test_args_and_float32():
    pr = quadratic(5, cond=3.0, seed=2).astype(np.float32)
    a, b = _pair(dict(fun=pr.fun, x0=pr.x0, args=pr.args, jac=pr.jac, method="nadam"),
                 maxiter=300)
    _assert_same(a, b)
    assert a.x.dtype == np.float32


def test_a_jac_of_the_wrong_length_mid_run():
    @njit
    def jac(x):
        if x[0] > -1.1:
            return np.zeros(x.shape[0] + 1)
        return rosen_der(x)

    with pytest.raises(ValueError, match=r"jac must return an array of shape \(2,\) "
                                         r"\(the shape of x0\), got another length after step"):
        numadam.minimize(rosen, np.array([-1.2, 1.0]), jac=jac,
                         options={"learning_rate": 1e-2})


def test_fun_returning_an_array_in_the_first_evaluation():
    @njit
    def fun(x):
        return x

    with pytest.raises(ValueError, match=r"fun must return a scalar, got an array of shape"):
        numadam.minimize(fun, np.zeros(2), jac=rosen_der)


def test_large_problem_runs_the_parallel_compiled_loop():
    n = 50_000
    pr = rosenbrock(n)
    a, b = _pair(dict(fun=pr.fun, x0=pr.x0, jac=pr.jac, method="adam"), maxiter=20)
    _assert_same(a, b)


# ------------------------------------------- one loop per signature --

class _Compilations(event.Listener):
    """The qualified names of the functions Numba compiles meanwhile."""

    def __init__(self):
        self.names = []

    def on_start(self, ev):
        pass

    def on_end(self, ev):
        self.names.append(ev.data["dispatcher"].py_func.__qualname__)


def test_a_new_objective_of_the_same_signature_compiles_only_itself():
    pr = rosenbrock(3)
    opts = dict(maxiter=20, compiled=True)
    first = numadam.minimize(pr.fun, pr.x0, jac=pr.jac, method="nadam", options=opts)
    fun, jac = njit(pr.fun.py_func), njit(pr.jac.py_func)   # never seen before
    seen = _Compilations()
    with event.install_listener("numba:compile", seen):
        second = numadam.minimize(fun, pr.x0, jac=jac, method="nadam", options=opts)
    assert not [n for n in seen.names if "iterate" in n]
    assert fun.signatures and jac.signatures
    _assert_same(first, second)
    # a jac that is another function of the same signature gives other numbers
    scaled = njit(lambda x: 2.0 * rosen_der(x))
    third = numadam.minimize(pr.fun, pr.x0, jac=scaled, method="nadam", options=opts)
    assert not np.array_equal(third.x, first.x)


_CACHED_RUN = """
import numpy as np
from numba import njit
from numba.core import event
import numadam

class Seen(event.Listener):
    names = []
    def on_start(self, ev):
        pass
    def on_end(self, ev):
        self.names.append(ev.data["dispatcher"].py_func.__qualname__)

@njit
def fun(x):
    return ((x - 1.0) ** 2).sum()

@njit
def jac(x):
    return 2.0 * (x - 1.0)

seen = Seen()
with event.install_listener("numba:compile", seen):
    r = numadam.minimize(fun, np.zeros(4), jac=jac, method="adam",
                         options=dict(maxiter=50, compiled=True))
print(sum("iterate" in n for n in seen.names), repr(float(r.fun)))
"""


def test_the_compiled_loop_is_loaded_from_the_disk_cache_in_a_new_process(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", _CACHED_RUN], env=env, check=True,
                           capture_output=True, text=True, timeout=600).stdout.split()
            for _ in range(2)]
    assert runs[0][0] == "1"          # compiled in the first process
    assert runs[1][0] == "0"          # loaded in the second
    assert runs[0][1] == runs[1][1]


@pytest.mark.parametrize("method, options", [
    ("adam", dict(jac_out=False)), ("nadam", dict(weight_decay=0.01)),
    ("sgd", dict(momentum=0.9, nesterov=True))])
def test_the_inline_loop_is_bitwise_the_shared_one(method, options):
    pr = rosenbrock(4)
    kw = dict(fun=pr.fun, x0=pr.x0, jac=pr.jac, method=method)
    runs = [numadam.minimize(**kw, options=dict(options, maxiter=300, compiled=c))
            for c in (True, "inline", False)]
    _assert_same(runs[0], runs[1])
    _assert_same(runs[0], runs[2])


def test_functions_with_explicit_signatures_only_run_compiled():
    # their one signature takes any layout, not the loop's contiguous x
    # exactly: the shared loop cannot call them, a loop for them alone
    # converts the argument
    x_any = types.Array(types.float64, 1, "A", readonly=True)
    fun = njit(types.float64(x_any))(lambda x: ((x - 1.0) ** 2).sum())
    jac = njit(types.float64[::1](x_any))(lambda x: 2.0 * (x - 1.0))
    loops = []
    real = _compiled.make_loop

    def spy(*key):
        loops.append(key)
        return real(*key)
    try:
        _compiled.make_loop = spy
        a = numadam.minimize(fun, np.zeros(3), jac=jac, method="adam",
                             options=dict(maxiter=200, compiled=True))
    finally:
        _compiled.make_loop = real
    b = numadam.minimize(fun.py_func, np.zeros(3), jac=jac.py_func, method="adam",
                         options=dict(maxiter=200))
    assert loops and any(k is fun for k in loops[0])
    _assert_same(a, b)


@pytest.mark.parametrize("value, error", [("yes", ValueError), (1, TypeError)])
def test_compiled_option_is_checked(value, error):
    pr = rosenbrock(2)
    with pytest.raises(error, match=r"option 'compiled' must be True, False, None "
                                    r"or 'inline', got"):
        numadam.minimize(pr.fun, pr.x0, jac=pr.jac, method="adam",
                         options=dict(compiled=value))


# -------------------------------------------------- jac_out's contract --

@njit
def _sq(x):
    return (x * x).sum()


@njit
def _returns_g(x, out):
    return 2.0 * x


@njit
def _returns_int(x, out):
    out[:] = 2.0 * x
    return 1


@njit
def _returns_pair(x, out):
    out[:] = 2.0 * x
    return (x * x).sum(), out


@njit
def _writes(x, out):
    out[:] = 2.0 * x


@njit
def _returns_g_after_the_first_call(x, out):
    if x[0] == -1.2:
        out[:] = 2.0 * x
        return None
    return 2.0 * x


@njit
def _returns_out_after_the_first_call(x, out):
    out[:] = 2.0 * x
    if x[0] == -1.2:
        return None
    return out


@pytest.mark.parametrize("compiled", [True, "inline"])
@pytest.mark.parametrize("fun, jac, match", [
    (_sq, _returns_g, r"jac must write the gradient into its last argument and "
                      r"return None \(or that argument\); it returned an array"),
    (_sq, _returns_g_after_the_first_call,
     r"jac must write the gradient .* it returned another array \(after step 1\)"),
    (_returns_pair, True, r"fun must write the gradient into its last argument and "
                          r"return f alone"),
])
def test_compiled_jac_out_functions_that_return_the_gradient_are_refused(
        fun, jac, match, compiled):
    x0 = np.array([-1.2, 1.0, 0.5])
    with pytest.raises(TypeError, match=match):
        numadam.minimize(fun, x0, jac=jac, method="adam",
                         options={"jac_out": True, "compiled": compiled, "maxiter": 20})
    np.testing.assert_array_equal(x0, [-1.2, 1.0, 0.5])


def test_compiled_jac_out_return_types_are_checked_before_the_loop_compiles():
    with pytest.raises(TypeError, match=r"jac must write .* it returned int64 "
                                        r"\(the Numba type\)"):
        numadam.minimize(_sq, np.array([-1.2, 1.0, 0.5]), jac=_returns_int,
                         method="adam", options={"jac_out": True, "compiled": True})


@pytest.mark.parametrize("compiled", [True, "inline", False])
def test_compiled_jac_out_may_return_out_or_none(compiled):
    x0 = np.array([-1.2, 1.0, 0.5])
    kw = dict(jac_out=True, maxiter=30, gtol=0, compiled=compiled)
    a = numadam.minimize(_sq, x0, jac=_writes, method="adam", options=kw)
    b = numadam.minimize(_sq, x0, jac=_returns_out_after_the_first_call, method="adam",
                         options=kw)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.nit == b.nit == 30
