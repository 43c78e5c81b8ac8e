"""Every error message: the parameter, what it got, what is allowed; raised
before fun is called or any state changes."""

import numpy as np
import pytest
from numba import njit
from scipy.optimize import Bounds, NonlinearConstraint

import numadam
from numadam.problems import rosen, rosen_der

X0 = np.array([-1.2, 1.0, 0.5])


class Counting:
    """fun and jac that count their calls."""

    def __init__(self):
        self.calls = 0

    def fun(self, x):
        self.calls += 1
        return rosen(x)

    def jac(self, x):
        self.calls += 1
        return rosen_der(x)


def _run(**kw):
    c = Counting()
    kw.setdefault("x0", X0)
    try:
        numadam.minimize(c.fun, jac=kw.pop("jac", c.jac), **kw)
    finally:
        assert c.calls == 0, "fun or jac was called before the error"


@pytest.mark.parametrize("kw, exc, match", [
    (dict(method="adma"), ValueError,
     r"Unknown method 'adma'\. Did you mean 'adam'\? Valid methods are numadam's sgd, "
     r"adagrad, rmsprop, adadelta, adam, amsgrad, adamw, adamax, nadam, radam, lion "
     r"and scipy's "
     r"Nelder-Mead, .*BFGS"),
    (dict(method="lbfgsb"), ValueError, r"Did you mean 'L-BFGS-B'\?"),
    (dict(method=3), TypeError, r"method must be a string or a callable, got 3 \(int\)"),
    (dict(options=[("maxiter", 3)]), TypeError, r"options must be a dict or None, got list"),
    (dict(options={"beta1": 1.2}), ValueError,
     r"adam: option 'beta1' must satisfy 0 <= beta1 < 1, got 1\.2"),
    (dict(options={"beta2": -0.1}), ValueError,
     r"adam: option 'beta2' must satisfy 0 <= beta2 < 1, got -0\.1"),
    (dict(options={"learning_rate": -1e-3}), ValueError,
     r"option 'learning_rate' must satisfy 0 <= learning_rate, got -0\.001"),
    (dict(options={"learning_rate": float("nan")}), ValueError,
     r"option 'learning_rate' must satisfy 0 <= learning_rate, got nan"),
    (dict(options={"eps": "small"}), TypeError,
     r"adam: option 'eps' must be a real number, got 'small' \(str\)"),
    (dict(options={"weight_decay": True}), TypeError,
     r"option 'weight_decay' must be a real number, got True \(bool\)"),
    (dict(options={"amsgrad": 1}), TypeError,
     r"adam: option 'amsgrad' must be True or False, got 1 \(int\)"),
    (dict(method="amsgrad", options={"amsgrad": False}), ValueError,
     r"amsgrad: option 'amsgrad' is fixed to True by this method, got False"),
    (dict(method="adamw", options={"decoupled_weight_decay": False}), ValueError,
     r"adamw: option 'decoupled_weight_decay' is fixed to True"),
    (dict(method="sgd", options={"nesterov": True}), ValueError,
     r"sgd: nesterov=True requires momentum > 0 and dampening == 0, got "
     r"momentum=0\.0, dampening=0\.0"),
    (dict(method="sgd", options={"nesterov": True, "momentum": 0.9, "dampening": 0.5}),
     ValueError, r"requires momentum > 0 and dampening == 0"),
    (dict(method="rmsprop", options={"alpha": 1.5}), ValueError,
     r"rmsprop: option 'alpha' must satisfy 0 <= alpha <= 1, got 1\.5"),
    (dict(method="adagrad", options={"lr_decay": -1}), ValueError,
     r"adagrad: option 'lr_decay' must satisfy 0 <= lr_decay, got -1"),
    (dict(method="nadam", options={"momentum_decay": -1.0}), ValueError,
     r"nadam: option 'momentum_decay' must satisfy 0 <= momentum_decay"),
    (dict(options={"maxiter": -1}), ValueError,
     r"adam: option 'maxiter' must be an integer >= 0, got -1"),
    (dict(options={"maxiter": 2.5}), ValueError,
     r"option 'maxiter' must be an integer >= 0, got 2\.5"),
    (dict(options={"maxiter": "10"}), TypeError,
     r"option 'maxiter' must be an integer >= 0, got '10' \(str\)"),
    (dict(options={"gtol": -1.0}), ValueError,
     r"adam: option 'gtol' must satisfy 0 <= gtol, got -1\.0"),
    (dict(options={"ftol": float("inf")}), ValueError,
     r"option 'ftol' must satisfy 0 <= ftol, got inf"),
    (dict(options={"disp": "yes"}), TypeError,
     r"option 'disp' must be True or False, got 'yes'"),
    (dict(options={"parallel": "auto"}), TypeError,
     r"option 'parallel' must be True, False or None, got 'auto'"),
    (dict(tol=-1.0), ValueError, r"tol must be a finite number >= 0, got -1\.0"),
    (dict(tol="1e-3"), TypeError, r"tol must be a real number >= 0 or None, got '1e-3'"),
    (dict(x0=np.array([1 + 2j, 0])), TypeError,
     r"x0 must hold float32, float64 or integer values, got dtype complex128"),
    (dict(x0=["a", "b"]), TypeError, r"x0 must hold float32, float64 or integer values"),
    (dict(x0=np.float16([1, 2])), TypeError, r"got dtype float16"),
    (dict(x0=np.ones((2, 2))), ValueError, r"x0 must be one-dimensional, got shape \(2, 2\)"),
    (dict(x0=np.array([])), ValueError, r"x0 must have at least one element"),
    (dict(x0=np.array([1.0, np.nan, 2.0])), ValueError,
     r"x0 must be finite, but x0\[1\] is nan"),
    (dict(x0=np.array([1.0, 2.0, -np.inf])), ValueError, r"x0 must be finite, but x0\[2\]"),
    (dict(bounds=[(0, 1)] * 2), ValueError,
     r"bounds must have one \(min, max\) pair per element of x0 \(3\), got 2"),
    (dict(bounds=[(0, 1), (2, 1), (0, 1)]), ValueError,
     r"bounds must have min <= max, but bounds\[1\] is \(2\.0, 1\.0\)"),
    (dict(bounds=[(0, 1), (0, 1, 2), (0, 1)]), ValueError,
     r"bounds\[1\] must be a \(min, max\) pair, got \(0, 1, 2\)"),
    (dict(bounds=[(0, 1), (0, "1"), (0, 1)]), TypeError,
     r"bounds\[1\] must hold real numbers or None, got '1'"),
    (dict(bounds=[(0, 1), (np.nan, 1), (0, 1)]), ValueError, r"bounds must not contain NaN"),
    (dict(bounds=Bounds([0, 0], [1, 1])), ValueError,
     r"bounds must broadcast to the shape of x0, \(3,\); got lb of shape \(2,\)"),
    (dict(bounds=5), TypeError,
     r"bounds must be a scipy.optimize.Bounds or a sequence of \(min, max\) pairs, got int"),
    (dict(constraints={"type": "ineq", "fun": lambda x: x[0]}), ValueError,
     r"constraints are not supported by numadam's method 'adam' \(got 1 constraint\); "
     r"use bounds, or a scipy method that handles constraints such as method='SLSQP'"),
    (dict(constraints=[NonlinearConstraint(lambda x: x[0], 0, 1)] * 2), ValueError,
     r"\(got 2 constraints\)"),
    (dict(callback=3), TypeError, r"callback must be callable or None, got int"),
    (dict(jac="cs"), ValueError,
     r"jac must be a callable, True, False, None, '2-point' or '3-point', got 'cs'"),
    # the common options, each checked at the door against its declaration
    (dict(options={"parallel": "yes"}), TypeError,
     r"adam: option 'parallel' must be True, False or None, got 'yes' \(str\)"),
    (dict(options={"compiled": 1}), TypeError,
     r"adam: option 'compiled' must be True, False, None or 'inline', got 1 \(int\)"),
    (dict(options={"device": "gpu"}), ValueError,
     r"adam: option 'device' must be None, 'cpu' or 'cuda', got 'gpu'"),
    (dict(options={"callback_every": 0}), ValueError,
     r"adam: option 'callback_every' must be an integer >= 1, got 0"),
    (dict(options={"average_start": -1}), ValueError,
     r"adam: option 'average_start' must be an integer >= 0, got -1"),
    (dict(options={"batch_size": 2.5}), ValueError,
     r"adam: option 'batch_size' must be an integer >= 1, got 2\.5"),
    (dict(options={"batch_size": "8"}), TypeError,
     r"adam: option 'batch_size' must be an integer >= 1, got '8' \(str\)"),
    (dict(options={"batch_size": 2, "batch_args": [0, 0]}), ValueError,
     r"adam: option 'batch_args' must name distinct positions >= 0, at least one, "
     r"got \[0, 0\]"),
    (dict(options={"batch_size": 2, "batch_args": "a"}), TypeError,
     r"adam: option 'batch_args' must be a sequence of positions in args, got 'a'"),
    (dict(options={"smoothing": 1.0}), ValueError,
     r"adam: option 'smoothing' must satisfy 0 <= smoothing < 1, got 1\.0"),
    (dict(options={"average_decay": np.nan}), ValueError,
     r"adam: option 'average_decay' must satisfy 0 <= average_decay < 1, got nan"),
    (dict(options={"jac_out": 1}), TypeError,
     r"adam: option 'jac_out' must be True or False, got 1 \(int\)"),
])
def test_bad_input_raises_before_any_evaluation(kw, exc, match):
    with pytest.raises(exc, match=match):
        _run(**kw)


def test_fun_must_be_callable():
    with pytest.raises(TypeError, match=r"fun must be callable, got str"):
        numadam.minimize("rosen", X0, jac=rosen_der)


@pytest.mark.parametrize("fun, exc, match", [
    (lambda x: np.ones(3), ValueError,
     r"fun must return a scalar, got an array of shape \(3,\) and dtype float64"),
    (lambda x: [1.0, 2.0], ValueError, r"fun must return a scalar, got an array of shape \(2,\)"),
    (lambda x: "1.0", TypeError, r"fun must return a real scalar, got '1.0' \(str\)"),
    (lambda x: 1 + 1j, TypeError, r"fun must return a real scalar, got \(1\+1j\) \(complex\)"),
    (lambda x: None, TypeError, r"fun must return a real scalar, got None \(NoneType\)"),
])
def test_fun_returning_a_non_scalar(fun, exc, match):
    with pytest.raises(exc, match=match):
        numadam.minimize(fun, X0, jac=rosen_der)


@pytest.mark.parametrize("jac, exc, match", [
    (lambda x: np.ones(2), ValueError,
     r"jac must return an array of shape \(3,\) \(the shape of x0\), got shape \(2,\)"),
    (lambda x: np.ones((3, 1)), ValueError, r"got shape \(3, 1\)"),
    (lambda x: np.ones(3, complex), TypeError, r"jac must return a real array, got an array"),
    (lambda x: "grad", TypeError, r"jac must return a real array, got 'grad' \(str\)"),
])
def test_jac_of_the_wrong_shape_or_kind(jac, exc, match):
    calls = []

    def fun(x):
        calls.append(x.copy())
        return rosen(x)

    with pytest.raises(exc, match=match):
        numadam.minimize(fun, X0, jac=jac)
    assert len(calls) == 1       # only the evaluation at x0, no step


def test_jac_true_needs_a_pair():
    with pytest.raises(TypeError, match=r"with jac=True, fun must return a pair \(f, g\), "
                                        r"got 1\.0 \(float\)"):
        numadam.minimize(lambda x: 1.0, X0, jac=True)


def test_jac_list_is_accepted():
    res = numadam.minimize(rosen, X0, jac=lambda x: list(rosen_der(x)),
                           options={"maxiter": 3})
    assert res.nit == 3 and res.jac.dtype == np.float64


def _state(method="adam", x0=X0, **options):
    return numadam.minimize(rosen, x0, method=method, jac=rosen_der,
                            options=dict(options, maxiter=3)).state


def _short_aux_state():
    """A state as earlier versions saved adam's: the step count alone."""
    st = _state()
    return numadam.OptimizerState(st.method, st.rule, st.F, st.names, st.S,
                                  st.aux[:1].copy())


@pytest.mark.parametrize("state, kw, exc, match", [
    (3.5, {}, TypeError,
     r"options\['state'\] must be an OptimizerState \(res.state\) or a checkpoint's "
     r"path, got float"),
    ("not a state", {}, FileNotFoundError,
     r"options\['state'\] names the checkpoint 'not a state', which is not a file"),
    (lambda: _state("sgd"), {}, ValueError,
     r"options\['state'\] comes from method 'sgd' and cannot continue method 'adam'"),
    (lambda: _state(amsgrad=True), {}, ValueError,
     r"options\['state'\] was made with \{'amsgrad': True, 'decoupled_weight_decay': "
     r"False, 'weight_decay != 0': False\}, which does not match this run's "
     r"\{'amsgrad': False.*: it holds \['m', 'v', 'vmax'\], this run needs \['m', 'v'\]"),
    (lambda: _state(x0=np.zeros(5)), {}, ValueError,
     r"options\['state'\] holds 5 coordinates, but x0 has 3"),
    (lambda: _state(x0=X0.astype(np.float32)), {}, ValueError,
     r"options\['state'\] is float32, but x0 is float64"),
    (lambda: _state("sgd", momentum=0.9), dict(method="sgd"), ValueError,
     r"\{'momentum_buffer': True, 'nesterov': False, 'weight_decay != 0': False\}, "
     r"which does not match this run's \{'momentum_buffer': False"),
    (lambda: _short_aux_state(), {}, ValueError,
     r"options\['state'\] must hold the 5 float64 running scalars of method 'adam' "
     r"\(t, beta1_power, beta1_power_error, beta2_power, beta2_power_error\) in its "
     r"aux, got shape \(1,\) and dtype float64; a state saved by an earlier version"),
])
def test_bad_state(state, kw, exc, match):
    state = state() if callable(state) else state
    with pytest.raises(exc, match=match):
        _run(options={"state": state}, **kw)


def _edited_state(method="adam", slot=None, value=None, aux=None, **options):
    """A state of a short run with one slot entry or running scalar replaced."""
    st = _state(method, **options)
    S, a = st.S.copy(), st.aux.copy()
    if slot is not None:
        S[st.names.index(slot), 1] = value
    if aux is not None:
        a[aux[0]] = aux[1]
    return numadam.OptimizerState(st.method, st.rule, st.F, st.names, S, a)


@pytest.mark.parametrize("make, kw, match", [
    (lambda: _edited_state(slot="m", value=np.nan), {},
     r"options\['state'\] slot 'm' is not finite: nan at coordinate 1"),
    (lambda: _edited_state(slot="v", value=-1e-3), {},
     r"options\['state'\] slot 'v' must be >= 0 \(a running average of squares\), got "
     r"-0\.001 at coordinate 1"),
    (lambda: _edited_state("adagrad", slot="s", value=-1.0), dict(method="adagrad"),
     r"slot 's' must be >= 0"),
    (lambda: _edited_state(aux=(0, 2.5)), {},
     r"options\['state'\] must have a whole step count >= 0 and finite running "
     r"scalars, got step 2\.5"),
    (lambda: _edited_state(aux=(1, np.inf)), {},
     r"got step 3\.0 and beta1_power=inf"),
    (lambda: _edited_state(aux=(1, 0.5)), {},
     r"options\['state'\] holds beta1\*\*t = 0\.5 at step 3, but this run's beta1 = "
     r"0\.9 gives 0\.729.*: continue with the beta1 the state was made with"),
    (lambda: _state(beta2=0.99), {},
     r"holds beta2\*\*t = 0\.970299.* but this run's beta2 = 0\.999"),
])
def test_a_state_with_impossible_numbers_is_refused_before_anything_runs(make, kw, match):
    state = make()
    calls = []

    def fun(x):
        calls.append(1)
        return rosen(x)

    x0 = X0.copy()
    with pytest.raises(ValueError, match=match):
        numadam.minimize(fun, x0, jac=rosen_der, method=kw.get("method", "adam"),
                         options={"state": state, "maxiter": 2})
    assert calls == [] and np.array_equal(x0, X0)
    x = X0.copy()
    with pytest.raises(ValueError, match=match):
        numadam.Optimizer(kw.get("method", "adam"), x, state=state)
    with pytest.raises(ValueError, match=match):
        numadam.Optimizer(kw.get("method", "adam"), [x, x.copy()], state=[state, state])


def test_a_torch_state_dict_with_nan_moments_is_refused():
    opt = numadam.Optimizer("adam", np.ones(3))
    opt.step(np.ones(3))
    sd = opt.state_dict()
    sd["state"][0]["exp_avg_sq"] = np.array([1.0, np.nan, 1.0])
    target = numadam.Optimizer("adam", np.ones(3))
    with pytest.raises(ValueError, match=r"slot 'v' is not finite: nan at coordinate 1"):
        target.load_state_dict(sd)
    assert target.state.step == 0


def test_adam_state_continues_with_adamw_family_member():
    """adam and adamw share a rule: a state made by one continues the other
    when the flags agree (decoupled decay on both)."""
    st = _state("adam", decoupled_weight_decay=True)
    res = numadam.minimize(rosen, X0, method="adamw", jac=rosen_der,
                           options={"state": st, "maxiter": 2})
    assert res.state.step == 5


@pytest.mark.parametrize("call, exc, match", [
    (lambda: numadam.Optimizer("BFGS", np.zeros(3)), ValueError,
     r"method must be one of numadam's methods \(sgd, .*\), got 'BFGS'"),
    (lambda: numadam.Optimizer("adam", [0.0, 1.0]), TypeError,
     r"params\[0\] must be a NumPy array or a CUDA device array, got float"),
    (lambda: numadam.Optimizer("adam", "x"), TypeError,
     r"params must be an array, a list or tuple of arrays, a dict of arrays or a list "
     r"of parameter groups \(dicts with 'params'\), got str"),
    (lambda: numadam.Optimizer("adam", np.zeros(3, int)), TypeError,
     r"params must be float32 or float64, got dtype int64"),
    (lambda: numadam.Optimizer("adam", np.zeros((3, 2), order="F")), ValueError,
     r"params must be a C-contiguous, writable array \(it is updated in place\), "
     r"got shape \(3, 2\) with strides \(8, 24\)"),
    (lambda: numadam.Optimizer("adam", np.zeros(6)[::2]), ValueError,
     r"params must be a C-contiguous, writable array"),
    (lambda: numadam.Optimizer("adam", np.broadcast_to(np.zeros(1), (3,))), ValueError,
     r"params must be a C-contiguous, writable array .* that is read-only"),
    (lambda: numadam.Optimizer("adam", np.zeros(3), bounds=(np.zeros(2), np.ones(3))),
     ValueError, r"bounds must be two arrays of shape \(3,\), got shapes \(2,\) and \(3,\)"),
    (lambda: numadam.Optimizer("adam", np.zeros(3), beta1=2.0), ValueError,
     r"adam: option 'beta1' must satisfy 0 <= beta1 < 1, got 2\.0"),
    (lambda: numadam.Optimizer("adam", np.zeros(3)).step(np.zeros(4)), ValueError,
     r"the gradient must be an array of shape \(3,\), got shape \(4,\)"),
    (lambda: numadam.Optimizer("adam", np.zeros(3)).step(np.zeros(3, complex)), TypeError,
     r"the gradient must be a real array, got an array of shape \(3,\) and dtype "
     r"complex128"),
])
def test_optimizer_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_optimizer_bad_gradient_leaves_x_and_state_alone():
    x = np.ones(3)
    opt = numadam.Optimizer("adam", x)
    with pytest.raises(ValueError):
        opt.step(np.ones(2))
    np.testing.assert_array_equal(x, 1.0)
    assert opt.state.step == 0 and not opt.state.S.any()


def test_run_options_are_typed_and_frozen():
    import dataclasses
    from dataclasses import FrozenInstanceError

    from numadam._options import COMMON_OPTIONS, run_options

    run = run_options({"maxiter": 7.0, "disp": 0, "batch_size": 4, "batch_args": [1]},
                      "adam")
    assert run.maxiter == 7 and type(run.maxiter) is int and run.maxiter_given
    assert run.disp is False and run.batch_args == (1,) and run.batch_size == 4
    assert run.gtol == 1e-5 and run.parallel is None and run.history is None
    fields = {f.name for f in dataclasses.fields(run)}
    assert fields == {o.name for o in COMMON_OPTIONS} | {"maxiter_given",
                                                         "learning_rate_schedule"}
    with pytest.raises(FrozenInstanceError):
        run.maxiter = 3
    with pytest.raises(ValueError, match="give either option 'epochs' or option "
                                         "'maxiter', not both"):
        run_options({"maxiter": 5, "batch_size": 4, "epochs": 2}, "adam")


def test_a_seed_sequence_seeds_like_its_integer_and_is_left_alone():
    X = np.arange(40.0).reshape(20, 2)

    def fun(x, X):
        return float(np.sum((X @ x - 1.0) ** 2))

    def jac(x, X):
        return 2.0 * X.T @ (X @ x - 1.0)

    ss = np.random.SeedSequence(5)
    runs = [numadam.minimize(fun, np.zeros(2), args=(X,), jac=jac,
                             options={"batch_size": 3, "seed": seed, "maxiter": 30})
            for seed in (ss, 5)]
    np.testing.assert_array_equal(runs[0].x, runs[1].x)
    assert ss.n_children_spawned == 0


# -------------------------------------------------- jac_out's contract --

def _quadratic_f(x):
    return float(x @ x)


@pytest.mark.parametrize("jac, fun, match", [
    (lambda x, out: 2 * x, _quadratic_f,
     r"with option 'jac_out', jac must write the gradient into its last argument "
     r"and return None \(or that argument\); it returned an array of shape \(3,\)"),
    (True, lambda x, out: (float(x @ x), 2 * x),
     r"with jac=True and option 'jac_out', fun must write the gradient into its "
     r"last argument and return f alone; it returned a tuple of 2"),
])
def test_jac_out_functions_that_return_the_gradient_are_refused(jac, fun, match):
    x0 = X0.copy()
    with pytest.raises(TypeError, match=match):
        numadam.minimize(fun, x0, jac=jac, method="adam", options={"jac_out": True})
    np.testing.assert_array_equal(x0, X0)


@njit(cache=True)
def _njit_quadratic(x):
    return (x * x).sum()


@njit(cache=True)
def _njit_leaves_out(x, out):
    return None


@pytest.mark.parametrize("fun, jac, match", [
    (_quadratic_f, lambda x, out: None, r"with option 'jac_out', jac must write"),
    (_quadratic_f, lambda x, out: out.__iadd__(2 * x), r"added to it instead"),
    (lambda x, out: float(x @ x), True,
     r"with jac=True and option 'jac_out', fun must write the gradient into its last "
     r"argument; after the first call every entry is still NaN"),
    (_njit_quadratic, _njit_leaves_out, r"the function left it untouched"),
])
def test_a_jac_out_function_that_writes_nothing_is_refused(fun, jac, match):
    """Not taken for a zero gradient, which would end the run at x0 with
    "Optimization terminated successfully"; in the Python loop and the
    compiled one (the last case)."""
    x0 = X0.copy()
    with pytest.raises(TypeError, match=match):
        numadam.minimize(fun, x0, jac=jac, method="adam", options={"jac_out": True})
    np.testing.assert_array_equal(x0, X0)


def test_a_jac_out_function_may_return_its_out_argument():
    def writes(x, out):
        np.multiply(x, 2.0, out=out)

    def writes_and_returns(x, out):
        np.multiply(x, 2.0, out=out)
        return out

    kw = dict(jac_out=True, maxiter=30, gtol=0)
    a = numadam.minimize(_quadratic_f, X0, jac=writes, method="adam", options=kw)
    b = numadam.minimize(_quadratic_f, X0, jac=writes_and_returns, method="adam",
                         options=kw)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.nit == b.nit == 30


@pytest.mark.parametrize("options, match", [
    (dict(patience=10**12, gtol=1e-3),
     r"option patience=1000000000000 needs the smoothed tests' window: 7\.45e\+03 GiB "
     r"of float64, more than can be allocated; give a smaller patience"),
    (dict(maxiter=10**13, history="step"),
     r"option maxiter=10000000000000 needs a history of every step: 2\.24e\+05 GiB"),
    (dict(maxiter=10**20, history="step"), r"option maxiter=100000000000000000000 needs"),
])
def test_buffers_too_large_to_allocate_name_the_option(options, match):
    x0 = X0.copy()
    with pytest.raises(MemoryError, match=match):
        _run(x0=x0, options=options)
    np.testing.assert_array_equal(x0, X0)


# ------------------------------------------- Numba objectives that fail --

@njit(cache=True)
def _adds_a_string(x):
    return x @ x + "a"


@njit(cache=True)
def _njit_gradient(x):
    return 2 * x


@njit(cache=True)
def _reads_no_such_attribute(x):
    return x.no_such_attribute


@njit(cache=True)
def _njit_quadratic_scalar(x):
    return x @ x


@njit(cache=True)
def _njit_quadratic_array(x):
    return np.array([x @ x])


@pytest.mark.parametrize("fun, jac, match", [
    (_adds_a_string, _njit_gradient,
     r"^fun \(_adds_a_string, a Numba function\) does not compile for the arguments "
     r"numadam passes it \(readonly array\(float64, 1d, C\)\): No implementation of "
     r"function .*add"),
    (_njit_quadratic_scalar, _reads_no_such_attribute,
     r"^jac \(_reads_no_such_attribute, a Numba function\) does not compile .*Unknown "
     r"attribute 'no_such_attribute'"),
])
def test_a_numba_objective_that_does_not_compile_is_named(fun, jac, match):
    from numba.core.errors import TypingError

    x0 = X0.copy()
    with pytest.raises(TypeError, match=match) as info:
        numadam.minimize(fun, x0, jac=jac, method="adam")
    assert isinstance(info.value.__cause__, TypingError)      # Numba's text, chained
    np.testing.assert_array_equal(x0, X0)


def test_the_compiled_loop_takes_a_one_element_array_as_f_as_python_does():
    kw = dict(jac=_njit_gradient, method="adam", options=dict(maxiter=20, gtol=0))
    arr = numadam.minimize(_njit_quadratic_array, X0, **kw)
    scalar = numadam.minimize(_njit_quadratic_scalar, X0, **kw)
    python = numadam.minimize(lambda x: np.array([x @ x]), X0, jac=lambda x: 2 * x,
                              method="adam", options=dict(maxiter=20, gtol=0))
    np.testing.assert_array_equal(arr.x, scalar.x)
    np.testing.assert_array_equal(arr.x, python.x)
    assert arr.fun == scalar.fun and type(arr.fun) is float
