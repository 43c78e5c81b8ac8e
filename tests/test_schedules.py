"""numadam's schedules count updates as torch.optim.lr_scheduler (stepped
once per update) and optax's schedules (called with the update count) do,
and give their sequences to 1e-12 over 1,000 updates (float64; optax with
JAX's 64-bit mode). The compiled loop evaluates them bitwise as Python
does."""

import math

import numpy as np
import pytest
from numba import njit

import numadam
from numadam import schedules

UPDATES = 1000
BASE = 0.1


def _torch_rates(make, base=BASE, updates=UPDATES):
    """The learning rate torch's scheduler ``make(opt)`` gives each of
    ``updates`` updates (``opt.step()`` then ``scheduler.step()``)."""
    torch = pytest.importorskip("torch")
    p = torch.zeros(1, requires_grad=True, dtype=torch.float64)
    opt = torch.optim.SGD([p], lr=base)
    sched = make(torch.optim.lr_scheduler, opt)
    rates = []
    for _ in range(updates):
        rates.append(opt.param_groups[0]["lr"])
        p.grad = torch.zeros(1, dtype=torch.float64)
        opt.step()
        sched.step()
    return np.array(rates)


def _ours(schedule, updates=UPDATES):
    return np.array([schedule(k) for k in range(updates)])


TORCH_CASES = {
    "constant": (lambda s, o: s.LambdaLR(o, lambda k: 1.0), schedules.constant(BASE)),
    "step": (lambda s, o: s.StepLR(o, step_size=70, gamma=0.7),
             schedules.step(BASE, 0.7, 70)),
    "multistep": (lambda s, o: s.MultiStepLR(o, milestones=[100, 250, 600], gamma=0.3),
                  schedules.multistep(BASE, [100, 250, 600], 0.3)),
    "exponential": (lambda s, o: s.ExponentialLR(o, gamma=0.997),
                    schedules.exponential(BASE, 0.997)),
    "cosine": (lambda s, o: s.CosineAnnealingLR(o, T_max=UPDATES, eta_min=1e-3),
               schedules.cosine(BASE, UPDATES, 1e-3)),
    "cosine_restarts": (lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=50, T_mult=2,
                                                                   eta_min=1e-4),
                        schedules.cosine_restarts(BASE, 50, 2, 1e-4)),
    "cosine_restarts_mult1": (lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=64),
                              schedules.cosine_restarts(BASE, 64)),
    "linear": (lambda s, o: s.LinearLR(o, start_factor=0.25, end_factor=1.0,
                                       total_iters=300),
               schedules.linear(0.25 * BASE, BASE, 300)),
    "polynomial": (lambda s, o: s.PolynomialLR(o, total_iters=800, power=2.0),
                   schedules.polynomial(BASE, 0.0, 2.0, 800)),
    "one_cycle": (lambda s, o: s.OneCycleLR(o, max_lr=1.0, total_steps=UPDATES,
                                            cycle_momentum=False),
                  schedules.one_cycle(1.0, UPDATES)),
    "one_cycle_linear_three_phase": (
        lambda s, o: s.OneCycleLR(o, max_lr=0.5, total_steps=UPDATES, pct_start=0.25,
                                  anneal_strategy="linear", three_phase=True,
                                  cycle_momentum=False),
        schedules.one_cycle(0.5, UPDATES, pct_start=0.25, anneal="linear",
                            three_phase=True)),
    "cyclic": (lambda s, o: s.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=40,
                                       step_size_down=60, cycle_momentum=False),
               schedules.cyclic(0.01, 0.1, 40, 60)),
    "cyclic_triangular2": (lambda s, o: s.CyclicLR(o, base_lr=0.01, max_lr=0.1,
                                                   step_size_up=50, mode="triangular2",
                                                   cycle_momentum=False),
                           schedules.cyclic(0.01, 0.1, 50, mode="triangular2")),
    "cyclic_exp_range": (lambda s, o: s.CyclicLR(o, base_lr=0.01, max_lr=0.1,
                                                 step_size_up=30, mode="exp_range",
                                                 gamma=0.999, cycle_momentum=False),
                         schedules.cyclic(0.01, 0.1, 30, mode="exp_range", gamma=0.999)),
}


@pytest.mark.parametrize("name", sorted(TORCH_CASES))
def test_torch_lr_schedulers_give_the_same_rates(name):
    make, ours = TORCH_CASES[name]
    want = _torch_rates(make)
    np.testing.assert_allclose(_ours(ours), want, rtol=1e-12, atol=1e-15, err_msg=name)
    assert ours(0) == pytest.approx(want[0], rel=1e-15)      # the first update's rate


def test_a_torch_warm_up_joined_to_a_decay():
    """torch's SequentialLR of a LinearLR warm-up and a cosine decay (its
    milestone starts the second scheduler at 0) is numadam's warmup."""
    def make(s, o):
        warm = s.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=100)
        decay = s.CosineAnnealingLR(o, T_max=UPDATES - 100, eta_min=1e-3)
        return s.SequentialLR(o, [warm, decay], milestones=[100])

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # torch's epoch-argument notice
        want = _torch_rates(make)
    ours = schedules.warmup(schedules.cosine(BASE, UPDATES - 100, 1e-3), 100,
                            init=0.1 * BASE)
    np.testing.assert_allclose(_ours(ours), want, rtol=1e-12, atol=1e-15)


def _optax_rates(schedule, updates=UPDATES):
    jax = pytest.importorskip("jax")
    pytest.importorskip("optax")
    import jax.numpy as jnp

    with jax.enable_x64(True):
        return np.array([float(schedule(jnp.asarray(k, dtype=jnp.int64)))
                         for k in range(updates)])


def _optax_cases():
    optax = pytest.importorskip("optax")
    return {
        "constant": (optax.constant_schedule(BASE), schedules.constant(BASE)),
        "exponential": (optax.exponential_decay(BASE, 25, 0.9),
                        schedules.exponential(BASE, 0.9, 25)),
        "staircase": (optax.exponential_decay(BASE, 25, 0.9, staircase=True),
                      schedules.step(BASE, 0.9, 25)),
        "cosine": (optax.cosine_decay_schedule(BASE, 700, alpha=0.05),
                   schedules.cosine(BASE, 700, 0.05 * BASE)),
        "linear": (optax.linear_schedule(0.0, BASE, 250),
                   schedules.linear(0.0, BASE, 250)),
        "polynomial": (optax.polynomial_schedule(BASE, 1e-3, 3.0, 900),
                       schedules.polynomial(BASE, 1e-3, 3.0, 900)),
        "piecewise": (optax.piecewise_constant_schedule(BASE, {100: 0.5, 400: 0.5}),
                      schedules.multistep(BASE, [100, 400], 0.5)),
        "join": (optax.join_schedules([optax.constant_schedule(0.05),
                                       optax.exponential_decay(BASE, 10, 0.95),
                                       optax.cosine_decay_schedule(0.02, 300)],
                                      [150, 500]),
                 schedules.join([0.05, schedules.exponential(BASE, 0.95, 10),
                                 schedules.cosine(0.02, 300)], [150, 500])),
        "warmup_cosine": (optax.warmup_cosine_decay_schedule(0.0, BASE, 80, UPDATES,
                                                             end_value=1e-4),
                          schedules.warmup(schedules.cosine(BASE, UPDATES - 80, 1e-4),
                                           80)),
    }


@pytest.mark.parametrize("name", ["constant", "exponential", "staircase", "cosine",
                                  "linear", "polynomial", "piecewise", "join",
                                  "warmup_cosine"])
def test_optax_schedules_give_the_same_rates(name):
    theirs, ours = _optax_cases()[name]
    np.testing.assert_allclose(_ours(ours), _optax_rates(theirs), rtol=1e-12,
                               atol=1e-15, err_msg=name)


def test_the_papers_inverse_square_root():
    """alpha / sqrt(t) for update t = k + 1."""
    ours = schedules.inverse_sqrt(0.01)
    for k in range(50):
        assert ours(k) == 0.01 / math.sqrt(k + 1)


@njit(cache=True)
def _quad(x):
    return 0.5 * (x @ x)


@njit(cache=True)
def _quad_grad(x):
    return x.copy()


@pytest.mark.parametrize("schedule", [
    schedules.join([schedules.warmup(schedules.one_cycle(1e-2, 60), 10),
                    schedules.cosine_restarts(1e-2, 7, 2),
                    schedules.cyclic(1e-3, 1e-2, 4, mode="triangular2")], [70, 110]),
    schedules.multistep(1e-2, [5, 50, 90], 0.5),
], ids=["join-of-kinds", "multistep"])
def test_the_compiled_loop_takes_the_rates_python_gives(schedule):
    opts = dict(learning_rate=schedule, maxiter=150, gtol=0, history="step")
    compiled = numadam.minimize(_quad, np.ones(3), jac=_quad_grad, method="sgd",
                                options=opts)
    python = numadam.minimize(lambda x: _quad(x), np.ones(3), jac=lambda x: _quad_grad(x),
                              method="sgd", options=opts)
    want = _ours(schedule, 150)
    np.testing.assert_array_equal(compiled.history["learning_rate"][:150], want)
    np.testing.assert_array_equal(python.history["learning_rate"][:150], want)
    np.testing.assert_array_equal(compiled.x, python.x)
    assert "join" in repr(schedule) or "multistep" in repr(schedule)


@njit(cache=True)
def _bumpy(x):
    return 0.5 * (x @ x) + np.sin(5.0 * x[0])


@njit(cache=True)
def _bumpy_grad(x):
    g = x.copy()
    g[0] += 5.0 * np.cos(5.0 * x[0])
    return g


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
@pytest.mark.parametrize("options", [dict(factor=0.5, patience=5, cooldown=2, min_lr=1e-3),
                                     dict(factor=0.3, patience=3, threshold=0.05,
                                          threshold_mode="abs")],
                         ids=["rel-cooldown", "abs"])
def test_reduce_on_plateau_gives_torchs_rates_for_the_losses_it_saw(compiled, options):
    """torch's ReduceLROnPlateau, stepped with each loss the run recorded,
    gives the rates the run used (after each update, the loss at the iterate
    it started from)."""
    torch = pytest.importorskip("torch")
    sched = schedules.reduce_on_plateau(0.1, **options)
    fun, jac = (_bumpy, _bumpy_grad) if compiled else (lambda x: _bumpy(x),
                                                       lambda x: _bumpy_grad(x))
    res = numadam.minimize(fun, np.full(3, 2.0), jac=jac, method="sgd",
                           options=dict(learning_rate=sched, maxiter=300, gtol=0,
                                        history="step"))
    loss, lr = res.history["loss"], res.history["learning_rate"][:300]
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **options)
    want = []
    for k in range(300):
        want.append(opt.param_groups[0]["lr"])
        theirs.step(float(loss[k]))
    np.testing.assert_array_equal(lr, want)
    assert len(set(lr)) > 2                              # it did reduce, more than once
    assert sched(0) == 0.1                               # the schedule itself is untouched


def test_reduce_on_plateau_watches_the_smoothed_loss_alike_in_both_loops():
    from test_stochastic import _least_squares, ls_fun_nb, ls_jac_nb

    A, b = _least_squares(n=64, d=3, seed=2)
    kw = dict(args=(A, b), jac=ls_jac_nb)
    opts = dict(learning_rate=schedules.reduce_on_plateau(0.2, patience=2,
                                                          threshold=0.01),
                batch_size=8, epochs=6, seed=1, gtol=0, history="step")
    compiled = numadam.minimize(ls_fun_nb, np.zeros(3), options=opts, **kw)
    python = numadam.minimize(ls_fun_nb, np.zeros(3), options=dict(opts, compiled=False),
                              **kw)
    rates = compiled.history["learning_rate"][:-1]
    np.testing.assert_array_equal(rates, python.history["learning_rate"][:-1])
    assert rates[0] == 0.2 and rates[-1] == pytest.approx(0.02)     # reduced once
    np.testing.assert_array_equal(compiled.x, python.x)


def test_reduce_on_plateau_is_refused_where_no_loss_is_seen():
    sched = schedules.reduce_on_plateau(0.1)
    with pytest.raises(ValueError, match=r"reduce_on_plateau watches the loss of a "
                                         r"numadam.minimize run"):
        numadam.Optimizer("adam", np.ones(3), learning_rate=sched)
    opt = numadam.Optimizer("adam", np.ones(3))
    with pytest.raises(ValueError, match=r"reduce_on_plateau"):
        opt.param_groups[0]["lr"] = sched
    for make in (lambda: schedules.warmup(sched, 5),
                 lambda: schedules.join([0.1, sched], [5])):
        with pytest.raises(ValueError, match=r"reduce_on_plateau cannot be joined"):
            make()
    with pytest.raises(ValueError, match=r"threshold_mode must be"):
        schedules.reduce_on_plateau(0.1, threshold_mode="percent")
    with pytest.raises(ValueError, match=r"factor must be < 1"):
        schedules.reduce_on_plateau(0.1, factor=1.0)
