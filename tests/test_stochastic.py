"""Stochastic objectives: minibatches, randomness, smoothed termination,
schedules, averaging, history and progress."""

import math
import time
import warnings

import numpy as np
import pytest
from numba import njit

from scipy.optimize import OptimizeWarning

import numadam
from numadam import schedules


# ----------------------------------------------------------------- data --

def _least_squares(n=300, d=5, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d))
    w = rng.standard_normal(d)
    b = A @ w + 0.1 * rng.standard_normal(n)
    return A, b


def ls_fun(x, A, b):
    r = A @ x - b
    return 0.5 * float(r @ r) / A.shape[0]


def ls_jac(x, A, b):
    return A.T @ (A @ x - b) / A.shape[0]


@njit(cache=True)
def ls_fun_nb(x, A, b):
    r = A @ x - b
    return 0.5 * (r @ r) / A.shape[0]


@njit(cache=True)
def ls_jac_nb(x, A, b):
    return A.T @ (A @ x - b) / A.shape[0]


# ---------------------------------------------------------- minibatches --

def test_every_epoch_visits_every_row_once_in_batches_of_batch_size():
    A, b = _least_squares(n=103)
    ids = np.arange(103)
    seen = []

    def fun(x, A, b, ids):
        seen.append(ids.copy())
        return ls_fun(x, A, b)

    res = numadam.minimize(fun, np.zeros(5), args=(A, b, ids),
                           jac=lambda x, A, b, ids: ls_jac(x, A, b),
                           options={"batch_size": 10, "seed": 3, "epochs": 3, "gtol": 0})
    per_epoch = 11                      # 10 batches of 10 and one of 3
    assert res.nit == 3 * per_epoch
    batches = seen[:3 * per_epoch]       # then one batch after the last step, and
    assert [len(s) for s in batches[:per_epoch]] == [10] * 10 + [3]
    for e in range(3):
        epoch = np.concatenate(batches[e * per_epoch:(e + 1) * per_epoch])
        assert sorted(epoch.tolist()) == list(range(103))
    epochs = [np.concatenate(batches[e * per_epoch:(e + 1) * per_epoch]) for e in range(3)]
    assert not np.array_equal(epochs[0], epochs[1])      # reshuffled each epoch
    assert len(seen[-1]) == 103                           # the full-data evaluation


@pytest.mark.parametrize("compiled", [False, True])
def test_a_batch_size_above_the_rows_takes_whole_epochs_without_allocating_it(compiled):
    A, b = _least_squares(n=40)
    opts = {"seed": 1, "maxiter": 6, "gtol": 0, "compiled": compiled}
    # a batch size of 10**12 rows would need 22 TiB of buffers
    huge = numadam.minimize(ls_fun_nb, np.zeros(5), args=(A, b), jac=ls_jac_nb,
                            options=dict(opts, batch_size=10 ** 12))
    same = numadam.minimize(ls_fun_nb, np.zeros(5), args=(A, b), jac=ls_jac_nb,
                            options=dict(opts, batch_size=40))
    np.testing.assert_array_equal(huge.x, same.x)
    assert huge.nit == 6


def test_rows_are_sliced_consistently_across_arrays():
    A, b = _least_squares(n=50)
    ids = np.arange(50)

    def fun(x, A, b, ids):
        np.testing.assert_array_equal(A, _least_squares(n=50)[0][ids])
        np.testing.assert_array_equal(b, _least_squares(n=50)[1][ids])
        return ls_fun(x, A, b)

    numadam.minimize(fun, np.zeros(5), args=(A, b, ids),
                     jac=lambda x, A, b, ids: ls_jac(x, A, b),
                     options={"batch_size": 7, "seed": 0, "maxiter": 20})


def test_same_seed_same_run_bitwise_other_seed_differs():
    A, b = _least_squares()
    runs = [numadam.minimize(ls_fun, np.zeros(5), args=(A, b), jac=ls_jac,
                             options={"batch_size": 16, "seed": s, "epochs": 4,
                                      "learning_rate": 0.05})
            for s in (7, 7, 8)]
    np.testing.assert_array_equal(runs[0].x, runs[1].x)
    assert runs[0].fun == runs[1].fun
    assert not np.array_equal(runs[0].x, runs[2].x)


def test_batch_args_names_the_arrays_to_slice():
    A, b = _least_squares(n=40)
    weights = np.linspace(1, 2, 5)           # passes through whole

    def fun(x, A, b, weights):
        assert weights.shape == (5,) and A.shape[0] in (8, 40)   # a batch, or all
        return ls_fun(x * weights, A, b)

    def jac(x, A, b, weights):
        return ls_jac(x * weights, A, b) * weights

    res = numadam.minimize(fun, np.zeros(5), args=(A, b, weights), jac=jac,
                           options={"batch_size": 8, "batch_args": [0, 1], "maxiter": 30})
    assert res.nit == 30


def test_res_fun_and_jac_are_full_data_values_at_res_x():
    A, b = _least_squares()
    res = numadam.minimize(ls_fun, np.zeros(5), args=(A, b), jac=ls_jac,
                           options={"batch_size": 32, "epochs": 5, "seed": 0,
                                    "learning_rate": 0.05})
    assert res.fun == ls_fun(res.x, A, b)
    np.testing.assert_allclose(res.jac, ls_jac(res.x, A, b), rtol=1e-14)
    assert res.nfev == res.nit + 2       # one per step, the start, the full pass


@pytest.mark.parametrize("kw, exc, match", [
    (dict(args=(np.ones((10, 2)), np.ones(9))), ValueError,
     r"the arrays sliced into minibatches must have the same length along axis 0: "
     r"args\[0\] has 10, args\[1\] has 9 \(use options\['batch_args'\]"),
    (dict(args=(3.0,)), ValueError, r"options\['batch_size'\] needs array arguments "
                                    r"to slice: args holds no NumPy array with ndim >= 1"),
    (dict(options={"batch_args": [5]}), ValueError,
     r"options\['batch_args'\] holds position 5, but args has 2 element\(s\)"),
    (dict(options={"batch_args": [0, 0]}), ValueError, r"must name distinct positions"),
    (dict(options={"batch_size": 0}), ValueError,
     r"option 'batch_size' must be an integer >= 1, got 0"),
    (dict(options={"batch_size": 2.5}), ValueError, r"option 'batch_size' must be an integer"),
    (dict(options={"epochs": 2, "maxiter": 10}), ValueError,
     r"give either option 'epochs' or option 'maxiter', not both"),
    (dict(options={"epochs": 0}), ValueError, r"option 'epochs' must be an integer >= 1"),
    (dict(options={"batch_size": None, "epochs": 2}), ValueError,
     r"option 'epochs' needs option 'batch_size'"),
    (dict(options={"batch_size": None, "batch_args": [0]}), ValueError,
     r"option 'batch_args' needs option 'batch_size'"),
    (dict(options={"seed": -1}), ValueError, r"option 'seed' must be an integer >= 0"),
    (dict(options={"seed": "x"}), TypeError, r"option 'seed' must be an integer >= 0"),
    (dict(options={"average": "mean"}), ValueError,
     r"option 'average' must be None, 'ema' or 'polyak', got 'mean'"),
    (dict(options={"average_decay": 1.0}), ValueError,
     r"option 'average_decay' must satisfy 0 <= average_decay < 1, got 1.0"),
    (dict(options={"history": "batch"}), ValueError,
     r"option 'history' must be None, 'step' or 'epoch', got 'batch'"),
    (dict(options={"batch_size": None, "history": "epoch"}), ValueError,
     r"option history='epoch' needs option 'batch_size'"),
    (dict(options={"smoothing": 1.5}), ValueError,
     r"option 'smoothing' must satisfy 0 <= smoothing < 1, got 1.5"),
    (dict(options={"patience": 0}), ValueError, r"option 'patience' must be an integer >= 1"),
])
def test_stochastic_option_errors(kw, exc, match):
    A, b = _least_squares(n=10)
    calls = []
    options = {"batch_size": 4}
    options.update(kw.get("options", {}))
    options = {k: v for k, v in options.items() if v is not None}
    with pytest.raises(exc, match=match):
        numadam.minimize(lambda x, *a: calls.append(1) or 0.0, np.zeros(2),
                         args=kw.get("args", (A[:, :2], b)),
                         jac=lambda x, *a: np.zeros(2), options=options)
    assert not calls


# ------------------------------------------------ compiled loop, bitwise --

@pytest.mark.parametrize("options", [
    {"batch_size": 16, "epochs": 3},
    {"batch_size": 32, "epochs": 2, "average": "polyak", "history": "epoch",
     "learning_rate": schedules.warmup(schedules.cosine(0.05, 50), 10)},
    {"batch_size": 50, "maxiter": 40, "average": "ema", "average_decay": 0.9,
     "history": "step", "learning_rate": schedules.step(0.05, 0.5, 10), "ftol": 1e-4},
])
def test_compiled_loop_minibatches_bitwise_the_python_loop(options):
    A, b = _least_squares(n=310)
    runs = [numadam.minimize(ls_fun_nb, np.zeros(5), args=(A, b), jac=ls_jac_nb,
                             options=dict(options, seed=4, compiled=c))
            for c in (True, False)]
    a, p = runs
    np.testing.assert_array_equal(a.x, p.x)
    for key in ("fun", "nit", "nfev", "njev", "status", "message"):
        assert a[key] == p[key], key
    assert a.state == p.state
    if "history" in options:
        for k in ("loss", "grad_norm", "learning_rate"):
            np.testing.assert_array_equal(a.history[k], p.history[k])
    if "average" in options:
        np.testing.assert_array_equal(a.x_last, p.x_last)


@pytest.mark.parametrize("epochs, text", [
    (1, "the requested epoch is done"), (3, "the requested 3 epochs are done")])
@pytest.mark.parametrize("compiled", [False, True])
def test_doing_the_requested_epochs_is_success(epochs, text, compiled):
    """A run asked for a number of epochs that does them all succeeds, as
    does one that takes the maxiter steps it was asked for with no tolerance
    set; one that reaches maxiter without meeting a tolerance does not, as in
    scipy."""
    A, b = _least_squares(n=100)
    kw = dict(args=(A, b), jac=ls_jac_nb)
    options = dict(batch_size=25, seed=1, gtol=0.0, compiled=compiled, disp=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptimizeWarning)
        res = numadam.minimize(ls_fun_nb, np.zeros(5), options=dict(options, epochs=epochs),
                               **kw)
    assert (res.success, res.status, res.nit) == (True, 0, 4 * epochs)
    assert res.message == f"Optimization terminated successfully: {text}."
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptimizeWarning)
        by_steps = numadam.minimize(ls_fun_nb, np.zeros(5),
                                    options=dict(options, maxiter=4 * epochs), **kw)
    assert (by_steps.success, by_steps.status) == (True, 0)
    assert f"the requested {4 * epochs} steps are done" in by_steps.message
    with pytest.warns(OptimizeWarning, match="Maximum number of iterations"):
        unmet = numadam.minimize(ls_fun_nb, np.zeros(5),
                                 options=dict(options, maxiter=4 * epochs, gtol=1e-12),
                                 **kw)
    assert (unmet.success, unmet.status) == (False, 1)
    np.testing.assert_array_equal(by_steps.x, res.x)


# ------------------------------------------------------------ randomness --

def noisy_fun(x, rng):
    return float(np.sum(x ** 2)) + 0.1 * rng.standard_normal()


def noisy_jac(x, rng):
    return 2 * x + 0.1 * rng.standard_normal(x.shape[0])


@njit(cache=True)
def noisy_fun_nb(x, rng):
    return np.sum(x ** 2) + 0.1 * rng.standard_normal()


@njit(cache=True)
def noisy_jac_nb(x, rng):
    return 2 * x + 0.1 * rng.standard_normal(x.shape[0])


def test_objectives_get_a_generator_from_the_runs_seed():
    opts = {"seed": 11, "maxiter": 200, "learning_rate": 0.05, "gtol": 0}
    a = numadam.minimize(noisy_fun, np.ones(4), args=(numadam.RNG,), jac=noisy_jac,
                         options=opts)
    b = numadam.minimize(noisy_fun, np.ones(4), args=(numadam.RNG,), jac=noisy_jac,
                         options=opts)
    c = numadam.minimize(noisy_fun, np.ones(4), args=(numadam.RNG,), jac=noisy_jac,
                         options=dict(opts, seed=12))
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    assert np.max(np.abs(a.x)) < 0.2
    # the generator is the second stream of SeedSequence(seed)
    rng = np.random.default_rng(np.random.SeedSequence(11).spawn(2)[1])
    assert noisy_fun(np.ones(4), rng) == numadam.minimize(
        noisy_fun, np.ones(4), args=(numadam.RNG,), jac=noisy_jac,
        options=dict(opts, maxiter=0, gtol=0)).fun


def test_numba_objectives_draw_from_the_same_generator():
    opts = {"seed": 5, "maxiter": 100, "learning_rate": 0.05, "gtol": 0}
    runs = [numadam.minimize(noisy_fun_nb, np.ones(3), args=(numadam.RNG,),
                             jac=noisy_jac_nb, options=dict(opts, compiled=c))
            for c in (True, False)]
    np.testing.assert_array_equal(runs[0].x, runs[1].x)
    py = numadam.minimize(noisy_fun, np.ones(3), args=(numadam.RNG,), jac=noisy_jac,
                          options=opts)
    np.testing.assert_allclose(runs[0].x, py.x, rtol=1e-12)


# ---------------------------------------------------- termination & noise --

def test_smoothed_gtol_does_not_stop_on_one_lucky_batch():
    """A noisy gradient that is tiny on one step: the plain test stops there,
    the smoothed test with patience does not."""
    calls = {"n": 0}

    def jac(x):
        calls["n"] += 1
        g = 2 * x + 0.5 * np.sin(1.7 * calls["n"])
        return np.zeros_like(x) if calls["n"] == 6 else g

    plain = numadam.minimize(lambda x: float(x @ x), np.ones(3), jac=jac,
                             options={"gtol": 1e-6, "learning_rate": 0.1})
    assert plain.status == 0 and plain.nit == 5
    calls["n"] = 0
    smoothed = numadam.minimize(lambda x: float(x @ x), np.ones(3), jac=jac,
                                options={"gtol": 1e-6, "learning_rate": 0.1,
                                         "smoothing": 0.9, "patience": 5,
                                         "maxiter": 200})
    assert smoothed.nit > 5


def test_noisy_minibatch_run_stops_by_smoothed_ftol_before_maxiter():
    A, b = _least_squares(n=2000, seed=2)
    xopt = np.linalg.lstsq(A, b, rcond=None)[0]
    res = numadam.minimize(ls_fun, np.zeros(5), args=(A, b), jac=ls_jac,
                           options={"batch_size": 64, "seed": 1, "ftol": 1e-3,
                                    "gtol": 0, "maxiter": 100_000,
                                    "learning_rate": schedules.inverse_sqrt(0.2)})
    assert res.success and "smoothed loss" in res.message
    assert res.nit < 100_000
    assert np.max(np.abs(res.x - xopt)) < 0.05
    # and the stop is not a fluke of one batch: patience is one epoch
    assert res.nit >= 2 * 32


def test_smoothing_zero_and_patience_one_are_the_plain_tests():
    A, b = _least_squares()
    kw = dict(args=(A, b), jac=ls_jac)
    plain = numadam.minimize(ls_fun, np.zeros(5), options={"ftol": 1e-6, "gtol": 0,
                                                           "learning_rate": 0.05}, **kw)
    explicit = numadam.minimize(ls_fun, np.zeros(5),
                                options={"ftol": 1e-6, "gtol": 0, "learning_rate": 0.05,
                                         "smoothing": 0.0, "patience": 1,
                                         "history": "step"}, **kw)
    np.testing.assert_array_equal(plain.x, explicit.x)
    assert plain.nit == explicit.nit


# ------------------------------------------------------------- schedules --

@pytest.mark.parametrize("sched, expected", [
    (schedules.constant(0.1), lambda k: 0.1),
    (schedules.inverse_sqrt(0.1), lambda k: 0.1 / math.sqrt(k + 1)),
    (schedules.inverse_sqrt(0.1, offset=9), lambda k: 0.1 / math.sqrt(k + 10)),
    (schedules.exponential(0.1, 0.5, 10), lambda k: 0.1 * 0.5 ** (k / 10)),
    (schedules.step(0.1, 0.5, 10), lambda k: 0.1 * 0.5 ** (k // 10)),
    (schedules.cosine(0.1, 50, final_lr=0.01),
     lambda k: 0.01 + 0.09 * (1 + math.cos(math.pi * min(k, 50) / 50)) / 2),
    (schedules.warmup(schedules.inverse_sqrt(0.1), 10),
     lambda k: 0.1 * k / 10 if k < 10 else 0.1 / math.sqrt(k - 9)),
    (schedules.warmup(0.2, 4, init=0.1), lambda k: 0.1 + 0.1 * k / 4 if k < 4 else 0.2),
    (schedules.multistep(1.0, [3, 7], 0.1), lambda k: 0.1 ** ((k >= 3) + (k >= 7))),
])
def test_schedule_values(sched, expected):
    """``k`` counts the updates done: the first update (k = 0) takes the
    base rate."""
    for k in range(80):
        assert sched(k) == pytest.approx(expected(k), rel=1e-15, abs=1e-18)


def test_schedules_drive_the_step_and_are_recorded():
    A, b = _least_squares()
    sched = schedules.warmup(schedules.cosine(0.05, 30), 5)
    res = numadam.minimize(ls_fun, np.zeros(5), args=(A, b), jac=ls_jac, method="sgd",
                           options={"learning_rate": sched, "maxiter": 40, "gtol": 0,
                                    "history": "step"})
    np.testing.assert_array_equal(res.history["learning_rate"][:40],
                                  [sched(k) for k in range(40)])
    # sgd with a schedule equals sgd steps with those rates, done by hand
    x = np.zeros(5)
    for k in range(40):
        x = x - sched(k) * ls_jac(x, A, b)
    np.testing.assert_allclose(res.x, x, rtol=1e-13)


def test_python_callable_learning_rate():
    A, b = _least_squares()
    res = numadam.minimize(ls_fun, np.zeros(5), args=(A, b), jac=ls_jac, method="sgd",
                           options={"learning_rate": lambda k: 0.1 / (k + 1),
                                    "maxiter": 5, "gtol": 0})
    x = np.zeros(5)
    for k in range(5):
        x = x - 0.1 / (k + 1) * ls_jac(x, A, b)
    np.testing.assert_allclose(res.x, x, rtol=1e-14)
    with pytest.raises(ValueError, match=r"the learning_rate callable's value must be "
                                         r"finite and >= 0, got -1 at update count 0"):
        numadam.minimize(ls_fun, np.zeros(5), args=(A, b), jac=ls_jac,
                         options={"learning_rate": lambda t: -1})
    with pytest.raises(ValueError, match=r"option 'compiled'=True cannot run a Python "
                                         r"callable learning_rate"):
        numadam.minimize(ls_fun_nb, np.zeros(5), args=(A, b), jac=ls_jac_nb,
                         options={"learning_rate": lambda t: 0.1, "compiled": True})


@pytest.mark.parametrize("call, exc, match", [
    (lambda: schedules.constant(-1.0), ValueError, r"lr must be a finite number >= 0"),
    (lambda: schedules.exponential(0.1, 0.0, 10), ValueError, r"rate must be a finite number > 0"),
    (lambda: schedules.step(0.1, 0.5, 0), ValueError, r"steps must be a finite number > 0"),
    (lambda: schedules.cosine(0.1, "10"), TypeError, r"decay_steps must be a real number"),
    (lambda: schedules.warmup(0.1, 2.5), ValueError, r"steps must be a whole number"),
    (lambda: schedules.multistep(0.1, [5, 3], 0.5), ValueError, r"milestones must increase"),
    (lambda: schedules.multistep(0.1, 5, 0.5), TypeError, r"milestones must be a sequence"),
    (lambda: schedules.one_cycle(0.1, 100, anneal="tan"), ValueError, r"anneal must be"),
    (lambda: schedules.one_cycle(0.1, 100, pct_start=1.0), ValueError,
     r"pct_start must be < 1"),
    (lambda: schedules.cyclic(0.1, 1.0, 10, mode="sine"), ValueError, r"mode must be one"),
    (lambda: schedules.join([0.1, 0.2], []), ValueError,
     r"join needs one boundary fewer than schedules"),
    (lambda: schedules.join([0.1, 0.2, 0.3], [5, 5]), ValueError,
     r"boundaries must increase"),
    (lambda: schedules.cosine_restarts(0.1, 10, mult=1.5), ValueError,
     r"mult must be a whole number"),
])
def test_schedule_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_schedule_in_the_optimizer():
    x = np.ones(3)
    opt = numadam.Optimizer("sgd", x, learning_rate=schedules.step(1.0, 0.5, 1))
    opt.step(np.ones(3))          # the base rate 1.0 for the first update (k = 0)
    opt.step(np.ones(3))          # 0.5 after one update
    np.testing.assert_allclose(x, -0.5)


@pytest.mark.parametrize("lr, exc, match", [
    (-0.1, ValueError, r"learning_rate must be finite and >= 0, got -0\.1$"),
    (float("nan"), ValueError, r"learning_rate must be finite and >= 0, got nan$"),
    (np.float32(np.inf), ValueError, r"learning_rate must be finite and >= 0, got inf$"),
    ("0.1", TypeError, r"learning_rate must be a real number, got '0\.1'$"),
])
def test_a_steps_learning_rate_is_checked_before_anything_moves(lr, exc, match):
    parts = [np.ones(3), np.ones(2)]
    for x in (parts[0], parts):
        opt = numadam.Optimizer("adam", x)
        before = [p.copy() for p in parts]
        with pytest.raises(exc, match=match):
            opt.step(np.ones(3) if x is parts[0] else [np.ones(3), np.ones(2)],
                     learning_rate=lr)
        for p, b in zip(parts, before):
            np.testing.assert_array_equal(p, b)
        steps = opt.state.step if x is parts[0] else [s.step for s in opt.state]
        assert steps in (0, [0, 0])
        opt.step(np.ones(3) if x is parts[0] else [np.ones(3), np.ones(2)],
                 learning_rate=None)                 # the Optimizer's own rate
        np.testing.assert_allclose(parts[0], 1 - 1e-3)
        parts[0][:] = 1.0


def test_a_schedule_that_turns_negative_stops_the_optimizer_before_the_step():
    parts = [np.zeros(3), np.zeros(2)]
    opt = numadam.Optimizer("sgd", parts, learning_rate=lambda k: 0.1 if k < 2 else -0.1)
    for _ in range(2):
        opt.step([np.ones(3), np.ones(2)])
    with pytest.raises(ValueError, match=r"the learning_rate schedule's value must be "
                                         r"finite and >= 0, got -0\.1 at update count 2"):
        opt.step([np.ones(3), np.ones(2)])
    assert [s.step for s in opt.state] == [2, 2]
    np.testing.assert_allclose(parts[0], -0.2)


@pytest.mark.parametrize("compiled", [False, True])
def test_a_schedule_that_overflows_is_refused_before_the_run(compiled):
    A, b = _least_squares(n=60)
    calls = []

    def fun(x, A, b):
        calls.append(1)
        return ls_fun(x, A, b)

    schedule = schedules.exponential(0.1, 1e30, 1)       # inf from k = 11 on
    with pytest.raises(ValueError, match=r"the learning_rate schedule's value must be "
                                         r"finite and >= 0, got inf at update count 39"):
        numadam.minimize(ls_fun_nb if compiled else fun, np.zeros(5), args=(A, b),
                         jac=ls_jac_nb if compiled else ls_jac,
                         options=dict(learning_rate=schedule, maxiter=40,
                                      compiled=compiled))
    assert calls == []
    res = numadam.minimize(ls_fun, np.zeros(5), args=(A, b), jac=ls_jac,
                           options=dict(learning_rate=schedule, maxiter=5, gtol=0))
    assert res.nit == 5 and np.all(np.isfinite(res.x))


# ------------------------------------------------------------- averaging --

@pytest.mark.parametrize("kind", ["polyak", "ema"])
def test_iterate_averaging(kind):
    A, b = _least_squares()
    xs = []
    res = numadam.minimize(ls_fun, np.zeros(5), args=(A, b), jac=ls_jac,
                           callback=xs.append,
                           options={"average": kind, "average_decay": 0.9,
                                    "average_start": 3, "maxiter": 25, "gtol": 0,
                                    "learning_rate": 0.05})
    xs = np.array(xs)                 # x_1 ... x_25
    np.testing.assert_array_equal(res.x_last, xs[-1])
    tail = xs[3:]                     # averaged after step 3
    if kind == "polyak":
        expected = tail.mean(axis=0)
    else:
        wts = 0.9 ** np.arange(len(tail))[::-1]
        expected = (wts[:, None] * tail).sum(axis=0) / wts.sum()
    np.testing.assert_allclose(res.x, expected, rtol=1e-12)
    assert res.fun == ls_fun(res.x, A, b)


def test_averaging_continues_exactly_from_the_state():
    A, b = _least_squares()
    kw = dict(args=(A, b), jac=ls_jac)
    opts = {"average": "ema", "average_decay": 0.95, "gtol": 0, "learning_rate": 0.05}
    whole = numadam.minimize(ls_fun, np.zeros(5), options=dict(opts, maxiter=60), **kw)
    first = numadam.minimize(ls_fun, np.zeros(5), options=dict(opts, maxiter=25), **kw)
    second = numadam.minimize(ls_fun, first.x_last, options=dict(
        opts, maxiter=35, state=first.state), **kw)
    np.testing.assert_array_equal(second.x, whole.x)
    np.testing.assert_array_equal(second.x_last, whole.x_last)


@pytest.mark.parametrize("loop", ["python", "compiled"])
@pytest.mark.parametrize("split", [dict(maxiter=(11, 13)), dict(epochs=(2, 3))],
                         ids=["maxiter", "epochs"])
def test_a_minibatch_run_continues_its_batch_stream_exactly(loop, split):
    """A run split in two through ``options={"state": res.state}`` draws
    the batches the uninterrupted run draws, so it ends on its bits (the
    state also survives pickling in between)."""
    import pickle

    A, b = _least_squares(n=90)
    fun, jac = (ls_fun, ls_jac) if loop == "python" else (ls_fun_nb, ls_jac_nb)
    kw = dict(args=(A, b), jac=jac, method="adam")
    opts = dict(batch_size=16, seed=4, gtol=0, learning_rate=0.05)
    (key, (n1, n2)), = split.items()
    whole = numadam.minimize(fun, np.zeros(5), options=dict(opts, **{key: n1 + n2}), **kw)
    first = numadam.minimize(fun, np.zeros(5), options=dict(opts, **{key: n1}), **kw)
    state = pickle.loads(pickle.dumps(first.state))
    second = numadam.minimize(fun, first.x, options=dict(opts, state=state, **{key: n2}),
                              **kw)
    assert second.nit + first.nit == whole.nit
    np.testing.assert_array_equal(second.x, whole.x)
    assert first.state.stream["n"] == 90 and first.state.stream["batch_size"] == 16
    with pytest.raises(ValueError, match=r"options\['state'\] continues a minibatch run "
                                         r"over 90 rows in batches of 16, this run has 90 "
                                         r"rows in batches of 8"):
        numadam.minimize(fun, first.x, options=dict(opts, batch_size=8, state=state), **kw)
    # without its stream, the state draws afresh from the seed
    state.stream = None
    fresh = numadam.minimize(fun, first.x, options=dict(opts, state=state, **{key: n2}),
                             **kw)
    assert not np.array_equal(fresh.x, whole.x)


def test_a_noisy_objective_continues_its_generator_exactly():
    """numadam.RNG's generator is where the last evaluation found it (the
    Python loop keeps its state before each evaluation)."""
    def fun(x, rng):
        return float(x @ x)

    def jac(x, rng):
        return 2 * x + 0.1 * rng.standard_normal(x.shape[0])

    kw = dict(args=(numadam.RNG,), jac=jac, method="adam")
    opts = dict(seed=8, gtol=0, learning_rate=0.05)
    whole = numadam.minimize(fun, np.ones(4), options=dict(opts, maxiter=30), **kw)
    first = numadam.minimize(fun, np.ones(4), options=dict(opts, maxiter=13), **kw)
    second = numadam.minimize(fun, first.x, options=dict(opts, maxiter=17,
                                                         state=first.state), **kw)
    np.testing.assert_array_equal(second.x, whole.x)


# --------------------------------------------------------------- history --

def test_history_per_step_and_per_epoch():
    A, b = _least_squares(n=100)
    fs = []

    def fun(x, A, b):
        fs.append(ls_fun(x, A, b))
        return fs[-1]

    res = numadam.minimize(fun, np.zeros(5), args=(A, b), jac=ls_jac,
                           options={"batch_size": 25, "epochs": 3, "seed": 0,
                                    "history": "step", "gtol": 0})
    h = res.history
    assert len(h["loss"]) == res.nit + 1 == 13
    np.testing.assert_array_equal(h["loss"], fs[:13])
    assert np.isnan(h["learning_rate"]).sum() == 0 and h["learning_rate"][0] == 1e-3
    per_epoch = numadam.minimize(fun, np.zeros(5), args=(A, b), jac=ls_jac,
                                 options={"batch_size": 25, "epochs": 3, "seed": 0,
                                          "history": "epoch", "gtol": 0}).history
    assert len(per_epoch["loss"]) == 3
    np.testing.assert_allclose(per_epoch["loss"], h["loss"][:12].reshape(3, 4).mean(axis=1))


# -------------------------------------------------------------- progress --

def test_disp_shows_a_tqdm_bar_and_a_summary(capsys):
    pytest.importorskip("tqdm")
    A, b = _least_squares()
    numadam.minimize(ls_fun, np.zeros(5), args=(A, b), jac=ls_jac,
                     options={"disp": True, "maxiter": 300, "gtol": 0,
                              "learning_rate": 0.05})
    captured = capsys.readouterr()
    assert "Current function value" in captured.out
    assert "adam" in captured.err and "300/300" in captured.err


def test_the_progress_bar_leaves_the_first_steps_compilation_out_of_its_rate(capsys):
    pytest.importorskip("tqdm")
    from numadam._loop import Progress

    bar = Progress(1000, "adam")
    time.sleep(1.5)                  # as the first steps' compilation would
    bar.update(5, 1.0)
    for k in range(10, 1001, 5):
        bar.update(k, 1.0)
    bar.close()
    last = capsys.readouterr().err.split("\r")[-1]
    assert "1000/1000 [00:00<00:00" in last, last


def test_disp_without_tqdm_prints_progress_lines(capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    A, b = _least_squares()
    numadam.minimize(ls_fun, np.zeros(5), args=(A, b), jac=ls_jac,
                     options={"disp": True, "maxiter": 300, "gtol": 0,
                              "learning_rate": 0.05})
    out = capsys.readouterr().out
    assert "adam: step       300/300" in out
    assert out.count("adam: step") >= 5
    assert "Iterations: 300" in out


def test_compilation_is_a_phase_of_its_own_not_steps(capsys, monkeypatch):
    import sys

    from numba import njit

    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)

    @njit
    def fg(x):                       # a new function: its loop compiles
        return 0.5 * np.dot(x, x), x.copy()

    options = {"disp": True, "maxiter": 20, "gtol": 0, "compiled": "inline"}
    numadam.minimize(fg, np.ones(3), jac=True, options=options)
    lines = capsys.readouterr().out.splitlines()
    # the phase comes before any step, and is said once
    assert lines[0] == "  adam: compiling kernels..."
    assert sum("compiling" in line for line in lines) == 1
    assert lines[1].startswith("  adam: step")
    numadam.minimize(fg, np.ones(3), jac=True, options=options)
    out = capsys.readouterr().out
    assert "compiling" not in out and "adam: step        20/20" in out


def test_quiet_by_default(capsys):
    A, b = _least_squares()
    numadam.minimize(ls_fun, np.zeros(5), args=(A, b), jac=ls_jac, options={"maxiter": 50})
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# ----------------------------------------- scipy.sparse data in minibatches --

def _logistic_recording(seen):
    def fun(w, X, y):
        # copies: a dense batch lives in a buffer the next batch overwrites
        data = X.toarray() if hasattr(X, "toarray") else np.array(getattr(X, "a", X))
        seen.append((data, y.copy()))
        z = X @ w
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    def jac(w, X, y):
        z = X @ w
        return np.asarray(X.T @ (1.0 / (1.0 + np.exp(-z)) - y)).ravel() / X.shape[0]
    return fun, jac


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_scipy_sparse_args_are_sliced_into_the_same_minibatches_as_dense(fmt):
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(3)
    X = sp.random(90, 12, density=0.2, random_state=4, format=fmt)
    y = (rng.random(90) > 0.5).astype(float)
    dense_seen, sparse_seen = [], []
    kw = dict(method="adam", options=dict(batch_size=16, epochs=2, learning_rate=0.1,
                                          seed=7))
    fun, jac = _logistic_recording(dense_seen)
    a = numadam.minimize(fun, np.zeros(12), args=(X.toarray(), y), jac=jac, **kw)
    fun, jac = _logistic_recording(sparse_seen)
    b = numadam.minimize(fun, np.zeros(12), args=(X, y), jac=jac, **kw)
    assert b.success and b.nit == a.nit == 2 * 6
    assert len(sparse_seen) == len(dense_seen)
    for (Xd, yd), (Xs, ys) in zip(dense_seen, sparse_seen):
        np.testing.assert_array_equal(Xs, Xd)           # the same rows, in order
        np.testing.assert_array_equal(ys, yd)
    np.testing.assert_allclose(b.x, a.x, rtol=1e-12, atol=1e-15)


def test_any_row_indexable_argument_is_sliced_when_named():
    class Rows:
        """An array-like that is no NumPy array: a shape and rows to index."""

        def __init__(self, a):
            self.a = a
            self.shape = a.shape

        def __getitem__(self, rows):
            return Rows(self.a[rows])

        def __matmul__(self, w):
            return self.a @ w

        @property
        def T(self):
            return self.a.T

    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 3))
    y = (rng.random(40) > 0.5).astype(float)
    seen = []
    fun, jac = _logistic_recording(seen)
    kw = dict(jac=jac, method="adam",
              options=dict(batch_size=8, epochs=1, seed=1, batch_args=(0, 1)))
    b = numadam.minimize(fun, np.zeros(3), args=(Rows(X), y), **kw)
    fun, jac = _logistic_recording([])
    a = numadam.minimize(fun, np.zeros(3), args=(X, y), **kw)
    np.testing.assert_allclose(b.x, a.x, rtol=1e-12)
    assert all(s[0].shape[0] in (8, 40) for s in seen)
    with pytest.raises(ValueError, match=r"options\['batch_args'\] names args\[0\], which "
                                         r"is not a NumPy array with ndim >= 1, a "
                                         r"scipy.sparse matrix or an array-like"):
        numadam.minimize(fun, np.zeros(3), args=(object(), y), **kw)
