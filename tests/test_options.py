"""Options by name: every name a method does not take is refused in
Optimizer (TypeError) and warned about in minimize (as scipy does), with the
closest valid names; torch.optim's spellings ``lr`` and ``betas`` mean what
they mean there (``maximize``, an option of every method, is tested in
tests/test_maximize.py)."""

import warnings

import numpy as np
import pytest
from scipy.optimize import OptimizeWarning

import numadam
from numadam.problems import quadratic

from conftest import METHODS

WITH_BETAS = [m for m in METHODS
              if {"beta1", "beta2"} <= set(numadam.methods[m].option_names)]


def _gradients(n, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n) for _ in range(steps)]


def _stepped(method, steps=5, **options):
    x = np.linspace(-1.0, 1.0, 7)
    opt = numadam.Optimizer(method, x, **options)
    for g in _gradients(x.size, steps):
        opt.step(g)
    return x, opt


@pytest.mark.parametrize("method", METHODS)
def test_optimizer_refuses_an_unknown_option_before_anything_changes(method):
    x = np.linspace(-1.0, 1.0, 7)
    before = x.copy()
    with pytest.raises(TypeError, match=rf"Optimizer\('{method}'\) got unknown options: "
                       r"learning_rat \(did you mean 'learning_rate' for 'learning_rat'\?\)"):
        numadam.Optimizer(method, x, learning_rat=0.1)
    np.testing.assert_array_equal(x, before)


def test_optimizer_names_run_options_as_minimizes():
    with pytest.raises(TypeError, match=r"unknown options: maxiter, gtol; 'maxiter', 'gtol' "
                       r"are options of numadam\.minimize's runs, not of a step"):
        numadam.Optimizer("adam", np.zeros(3), maxiter=10, gtol=1e-3)
    with pytest.raises(TypeError, match=r"'epsilon' is spelled 'eps' here"):
        numadam.Optimizer("adam", np.zeros(3), epsilon=1e-3)


def test_several_arrays_refuse_unknown_options_and_take_aliases():
    parts = [np.ones(3), np.ones(2)]
    with pytest.raises(TypeError, match="unknown options: momentun"):
        numadam.Optimizer("sgd", parts, momentun=0.9)
    opt = numadam.Optimizer("adam", parts, lr=0.5, betas=(0.8, 0.9))
    assert (opt.options["learning_rate"], opt.options["beta1"],
            opt.options["beta2"]) == (0.5, 0.8, 0.9)
    opt.step([np.ones(3), np.ones(2)])
    np.testing.assert_allclose(parts[0], 0.5)              # one adam step moves by lr


@pytest.mark.parametrize("method", METHODS)
def test_lr_is_learning_rate(method):
    a, opt_a = _stepped(method, lr=0.05)
    b, opt_b = _stepped(method, learning_rate=0.05)
    np.testing.assert_array_equal(a, b)
    assert opt_a.options == opt_b.options


@pytest.mark.parametrize("method", WITH_BETAS)
def test_betas_are_beta1_and_beta2(method):
    a, _ = _stepped(method, betas=(0.8, 0.95))
    b, _ = _stepped(method, beta1=0.8, beta2=0.95)
    c, _ = _stepped(method)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_aliases_leave_the_callers_dict_alone():
    options = {"lr": 0.1, "betas": [0.5, 0.9], "maximize": False}
    kept = dict(options)
    numadam.Optimizer("adam", np.zeros(3), **options)
    numadam.minimize(lambda x: float(x @ x), np.ones(3), jac=lambda x: 2 * x,
                     method="adam", options=options)
    assert options == kept


@pytest.mark.parametrize("options, exc, match", [
    (dict(lr=0.1, learning_rate=0.2), TypeError,
     r"adam: option 'lr' is torch\.optim's spelling of 'learning_rate': give one "
     r"spelling, not both \(got 'lr' and 'learning_rate'\)"),
    (dict(betas=(0.9, 0.99), beta2=0.9), TypeError,
     r"option 'betas' is torch\.optim's spelling of 'beta1' and 'beta2': give one "
     r"spelling, not both \(got 'betas' and 'beta2'\)"),
    (dict(betas=0.9), ValueError,
     r"adam: option 'betas' must be a pair \(beta1, beta2\), got 0\.9"),
    (dict(betas=(0.9, 0.99, 0.999)), ValueError, r"option 'betas' must be a pair"),
    (dict(betas="ab"), ValueError, r"option 'betas' must be a pair"),
    (dict(betas=(0.9, 1.5)), ValueError, r"beta2"),
    (dict(lr=-1.0), ValueError, r"learning_rate"),
    (dict(maximize="yes"), TypeError, r"adam: option 'maximize' must be"),
])
def test_bad_aliases_are_refused_in_optimizer_and_minimize(options, exc, match):
    x = np.ones(3)
    with pytest.raises(exc, match=match):
        numadam.Optimizer("adam", x, **options)
    calls = []

    def fun(x):
        calls.append(1)
        return float(x @ x)

    with pytest.raises(exc, match=match):
        numadam.minimize(fun, x, jac=lambda x: 2 * x, method="adam", options=options)
    assert calls == [] and np.array_equal(x, np.ones(3))


def test_minimize_takes_torch_spellings_without_a_warning():
    pr = quadratic(6, cond=10.0, seed=1)
    kw = dict(args=pr.args, jac=pr.jac, method="adam")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = numadam.minimize(pr.fun, pr.x0, options=dict(lr=0.05, betas=(0.8, 0.99),
                                                         maximize=False, maxiter=40), **kw)
    b = numadam.minimize(pr.fun, pr.x0, options=dict(learning_rate=0.05, beta1=0.8,
                                                     beta2=0.99, maxiter=40), **kw)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.nit == b.nit == 40


def test_betas_of_a_method_without_betas_are_unknown():
    with pytest.raises(TypeError, match=r"Optimizer\('sgd'\) got unknown options: betas"):
        numadam.Optimizer("sgd", np.zeros(3), betas=(0.9, 0.99))
    with pytest.warns(OptimizeWarning, match="Unknown solver options: betas"):
        numadam.minimize(lambda x: float(x @ x), np.ones(3), jac=lambda x: 2 * x,
                         method="sgd", options=dict(betas=(0.9, 0.99), maxiter=2))
