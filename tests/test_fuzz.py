"""Random option sets and random bad arrays, drawn by hypothesis: every
outcome is a clear error (TypeError, ValueError, MemoryError) raised before
the objective is called or anything changes, or a run whose result is
honest (a finite x when it reports success). Never another exception, a
crash or a silent wrong result."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import OptimizeWarning

import numadam

#: the methods' own options and the common ones, and names that are none
NAMES = sorted({name for spec in numadam.methods.values() for name in spec.option_names}
               | {"gtol", "ftol", "xtol", "maxiter", "parallel", "compiled",
                  "callback_every", "jac_out", "batch_size", "batch_args", "epochs",
                  "seed", "smoothing", "patience", "average", "average_decay",
                  "average_start", "sparse", "history", "on_interrupt",
                  "checkpoint_every", "lr", "betas", "learning_rat", "momentun",
                  "maximise"})

#: values of every kind: fine ones, out of range, non-finite, wrong types
VALUES = [0, 1, 2, 3, 0.5, 0.9, 0.999, 1.0, 1.5, -1, -0.5, 1e-8, 1e-3, 10,
          float("nan"), float("inf"), -float("inf"), True, False, None, "adam", "",
          "lazy", "ema", "step", "raise", "return", [0], (0.9, 0.99), (0.9,),
          np.array([1.0, 2.0]),
          np.float32(0.1), 10**6, object()]

#: values that would make a long run: left out for the options that size it
LONG = {"maxiter": (10**6,), "epochs": (10**6,), "patience": (), "callback_every": ()}


@st.composite
def option_sets(draw):
    names = draw(st.lists(st.sampled_from(NAMES), max_size=4, unique=True))
    options = {}
    for name in names:
        pool = [v for v in VALUES if not (name in LONG and isinstance(v, int)
                                          and not isinstance(v, bool) and v > 100)]
        options[name] = draw(st.sampled_from(pool))
    options.setdefault("maxiter", 25)
    return options


X0 = np.array([1.5, -0.5, 2.0])
ARGS = (np.arange(12.0).reshape(4, 3) / 10.0, np.array([0.5, -1.0, 2.0, 0.0]))


def _fun(x, A, b):
    r = A @ x - b
    return float(r @ r) + float(x @ x)


def _jac(x, A, b, out=None):
    g = 2.0 * A.T @ (A @ x - b) + 2.0 * x
    if out is None:             # jac_out (a fuzzed option) passes out
        return g
    out[:] = g
    return None


ERRORS = (TypeError, ValueError, MemoryError)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(sorted(numadam.methods)), options=option_sets())
def test_random_options_in_minimize_give_an_error_first_or_an_honest_run(method,
                                                                         options):
    calls = []

    def fun(x, A, b):
        calls.append(1)
        return _fun(x, A, b)

    x0 = X0.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)      # unknown names warn
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            res = numadam.minimize(fun, x0, args=ARGS, jac=_jac, method=method,
                                   options=dict(options))
        except ERRORS:
            assert calls == [], f"the error came after fun was called: {options}"
            np.testing.assert_array_equal(x0, X0)
            return
    np.testing.assert_array_equal(x0, X0)                       # x0 is not touched
    assert res.status in (0, 1, 3, 99) and isinstance(res.message, str)
    if res.success:
        assert np.all(np.isfinite(res.x)), options
        assert np.isfinite(res.fun)
    if np.all(np.isfinite(res.x)) and options.get("sparse") is None and \
            options.get("batch_size") is None and options.get("average") is None:
        # the reported f is the objective at the reported x
        assert res.fun == pytest.approx(_fun(res.x, *ARGS), rel=1e-12, abs=1e-12)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(sorted(numadam.methods)), options=option_sets(),
       grad=st.sampled_from([np.ones(3), np.ones(4), np.ones((3, 1)), np.full(3, np.nan),
                             np.ones(3, complex), np.ones(3, np.float32), [1.0, 2.0, 3.0],
                             "g", None, np.ones(3, int)]))
def test_random_options_and_gradients_in_the_optimizer(method, options, grad):
    options.pop("maxiter", None)
    x = X0.copy()
    try:
        opt = numadam.Optimizer(method, x, **options)
    except ERRORS:
        np.testing.assert_array_equal(x, X0)
        return
    before = opt.state
    try:
        opt.step(grad)
    except ERRORS:
        np.testing.assert_array_equal(x, X0)                    # nothing moved
        assert opt.state == before
        return
    assert opt.state.step == 1
    if isinstance(grad, np.ndarray) and grad.dtype.kind == "f" and np.isfinite(grad).all() \
            and np.isfinite(x).all():
        # the step is the update of the NumPy oracle's rule: checked there;
        # here, that a finite step leaves finite state
        assert all(np.isfinite(v).all() for v in opt.state.slots.values())
