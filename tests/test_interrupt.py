"""Ctrl-C during a run: the run stops at its next step within half a second
and keeps its result, which continues the run bitwise."""

import math
import signal
import threading
import time

import numpy as np
import pytest
from scipy.optimize import rosen as py_rosen
from scipy.optimize import rosen_der as py_rosen_der

import numadam
from numadam._interrupt import GRACE
from numadam.problems import rosen, rosen_der

X0 = np.linspace(-1.0, 1.0, 40)
LATENCY = 0.5          # seconds from the signal to the caller's except clause


@pytest.fixture(autouse=True)
def default_sigint():
    """Python's own SIGINT handler, as in a script (a test runner may have
    another); the handler numadam finds is the one it must put back."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")   # pragma: no cover
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    signal.signal(signal.SIGINT, before)


def ctrl_c_after(seconds):
    """Send SIGINT to the main thread after ``seconds``, as Ctrl-C in a
    terminal would; returns a list that receives the time it was sent."""
    sent = []
    main = threading.main_thread().ident

    def fire():
        sent.append(time.monotonic())
        signal.pthread_kill(main, signal.SIGINT)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return sent


def interrupted(fun, x0, after=0.3, **kw):
    """The result an Interrupted run carries, and the seconds from the
    signal to the caller's except clause."""
    sent = ctrl_c_after(after)
    with pytest.raises(numadam.Interrupted) as info:
        numadam.minimize(fun, x0, **kw)
    caught = time.monotonic()
    assert isinstance(info.value, KeyboardInterrupt)
    return info.value.result, caught - sent[0]


OPTS = dict(maxiter=10 ** 9, gtol=0.0, learning_rate=1e-4)


@pytest.mark.parametrize("fun, jac", [(py_rosen, py_rosen_der), (rosen, rosen_der)],
                         ids=["python", "compiled"])
def test_ctrl_c_keeps_the_result_and_it_continues_the_run(fun, jac):
    numadam.minimize(fun, X0, jac=jac, options=dict(OPTS, maxiter=3))  # loads kernels
    res, latency = interrupted(fun, X0, jac=jac, options=OPTS)
    assert latency < LATENCY
    assert res.status == 98 and not res.success
    assert res.message.startswith(f"Interrupted (Ctrl-C) at step {res.nit}: x is the "
                                  f"iterate of step {res.nit}, with its function value")
    assert res.nit > 0 and res.state.step == res.nit
    assert res.fun == fun(res.x)
    np.testing.assert_array_equal(res.jac, jac(res.x))
    assert res.nfev == res.nit + 1
    # the run continues from there as if it had not stopped
    rest = numadam.minimize(fun, res.x, jac=jac,
                            options=dict(OPTS, maxiter=25, state=res.state))
    whole = numadam.minimize(fun, X0, jac=jac, options=dict(OPTS, maxiter=res.nit + 25))
    np.testing.assert_array_equal(rest.x, whole.x)
    assert rest.state == whole.state


@pytest.mark.parametrize("compiled", [False, True])
def test_an_interrupted_minibatch_run_continues_on_the_same_batches(compiled):
    from test_stochastic import _least_squares, ls_fun_nb, ls_jac_nb

    A, b = _least_squares(n=10_000, d=5)
    opts = dict(batch_size=7, seed=3, gtol=0.0, learning_rate=1e-3, compiled=compiled)
    kw = dict(args=(A, b), jac=ls_jac_nb)
    numadam.minimize(ls_fun_nb, np.zeros(5), options=dict(opts, maxiter=3), **kw)
    res, latency = interrupted(ls_fun_nb, np.zeros(5), options=dict(opts, epochs=10 ** 6),
                               **kw)
    assert latency < LATENCY and res.nit > 0 and res.status == 98
    # res.fun is the full-data objective at res.x, as for any minibatch run
    assert res.fun == pytest.approx(ls_fun_nb(res.x, A, b), rel=1e-12)
    rest = numadam.minimize(ls_fun_nb, res.x,
                            options=dict(opts, maxiter=30, state=res.state), **kw)
    whole = numadam.minimize(ls_fun_nb, np.zeros(5),
                             options=dict(opts, maxiter=res.nit + 30), **kw)
    np.testing.assert_array_equal(rest.x, whole.x)


def test_a_slow_objective_is_interrupted_after_the_grace_period():
    calls = []

    def fun(x):
        calls.append(1)
        if len(calls) == 6:
            time.sleep(30)                  # a long evaluation at step 5
        return py_rosen(x)

    res, latency = interrupted(fun, X0, jac=py_rosen_der, after=0.5, options=OPTS)
    assert GRACE <= latency < LATENCY
    assert res.nit == 5 and res.state.step == 5 and res.status == 98
    assert "while evaluating the iterate of step 5" in res.message
    assert math.isnan(res.fun) and np.isnan(res.jac).all()
    assert np.isfinite(res.x).all()
    # x is the iterate of step 5, and the state continues from it
    rest = numadam.minimize(py_rosen, res.x, jac=py_rosen_der,
                            options=dict(OPTS, maxiter=10, state=res.state))
    whole = numadam.minimize(py_rosen, X0, jac=py_rosen_der, options=dict(OPTS, maxiter=15))
    np.testing.assert_array_equal(rest.x, whole.x)


def test_an_objective_that_ends_within_the_grace_period_is_let_finish():
    def fun(x):
        time.sleep(0.05)
        return py_rosen(x)

    res, latency = interrupted(fun, X0, jac=py_rosen_der, after=0.2, options=OPTS)
    assert latency < LATENCY
    assert res.fun == py_rosen(res.x) and "with its function value" in res.message


def test_on_interrupt_return_returns_the_result():
    sent = ctrl_c_after(0.3)
    res = numadam.minimize(py_rosen, X0, jac=py_rosen_der,
                           options=dict(OPTS, on_interrupt="return"))
    assert time.monotonic() - sent[0] < LATENCY
    assert res.status == 98 and res.nit > 0 and res.fun == py_rosen(res.x)


def test_ctrl_c_in_the_callback_ends_at_that_iterate():
    seen = []

    def callback(intermediate_result):
        seen.append(intermediate_result.nit)
        if len(seen) == 4:
            time.sleep(30)

    res, latency = interrupted(py_rosen, X0, jac=py_rosen_der, callback=callback,
                               after=0.5, options=OPTS)
    assert latency < LATENCY
    assert res.nit == seen[-1] and res.fun == py_rosen(res.x)
    assert "with its function value" in res.message


def test_ctrl_c_after_the_run_ended_still_interrupts_and_keeps_the_result(monkeypatch):
    # the signal comes while the run builds its result: the finished result
    # is kept in the KeyboardInterrupt that the caller gets
    import numadam._minimize as m

    real = m._run

    def run_then_ctrl_c(*args):
        res = real(*args)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        time.sleep(0.01)
        return res

    monkeypatch.setattr(m, "_run", run_then_ctrl_c)
    with pytest.raises(numadam.Interrupted) as info:
        numadam.minimize(py_rosen, X0, jac=py_rosen_der, options=dict(maxiter=20))
    assert info.value.result.nit == 20 and info.value.result.status == 1


def test_runs_outside_the_main_thread_leave_signals_alone():
    out = {}

    def work():
        out["res"] = numadam.minimize(py_rosen, X0, jac=py_rosen_der,
                                      options=dict(maxiter=50))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(60)
    assert out["res"].nit == 50
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_handler_of_the_users_is_left_in_place():
    calls = []
    signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        def fun(x):
            if not calls:
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            return py_rosen(x)

        res = numadam.minimize(fun, X0, jac=py_rosen_der, options=dict(maxiter=30))
        assert res.nit == 30 and calls == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_ctrl_c_in_a_device_run():
    cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    if not cuda.is_available():  # pragma: no cover - a broken driver
        pytest.skip("no CUDA GPU and no simulator")
    from test_cuda import X0 as D0
    from test_cuda import device_problem

    fun, jac = device_problem()
    calls = []

    def jac_then_ctrl_c(x):
        calls.append(1)
        if len(calls) == 4:                  # while evaluating x_3
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        return jac(x)

    opts = dict(maxiter=1000, gtol=0.0, learning_rate=0.1)
    with pytest.raises(numadam.Interrupted) as info:
        numadam.minimize(fun, cuda.to_device(D0), jac=jac_then_ctrl_c, options=opts)
    res = info.value.result
    # the evaluation ended within the grace period: x_3 is the result
    assert res.status == 98 and res.nit == 3 and res.state.step == 3
    want = numadam.minimize(fun, cuda.to_device(D0), jac=jac, options=dict(opts, maxiter=3))
    np.testing.assert_array_equal(res.x.copy_to_host(), want.x.copy_to_host())
    assert res.fun == want.fun


def test_ctrl_c_at_random_moments_always_leaves_a_result_that_continues_the_run():
    """Signals at random times (during set-up, compilation, evaluations,
    steps, epochs' draws, the result's building), in both loops, dense and
    minibatch: every run raises Interrupted (or ends first), and the result
    it carries continues to the uninterrupted run's bits."""
    from test_stochastic import _least_squares, ls_fun, ls_fun_nb, ls_jac, ls_jac_nb

    A, b = _least_squares(n=200, d=5)
    cases = [
        (ls_fun, ls_jac, dict()),
        (ls_fun_nb, ls_jac_nb, dict()),
        (ls_fun, ls_jac, dict(batch_size=9, seed=2)),
        (ls_fun_nb, ls_jac_nb, dict(batch_size=9, seed=2, method="nadam")),
    ]
    total = 20_000
    rng = np.random.default_rng(7)
    for trial in range(16):
        fun, jac, extra = cases[trial % len(cases)]
        method = extra.get("method", "adam")
        opts = dict(gtol=0.0, learning_rate=1e-3,
                    **{k: v for k, v in extra.items() if k != "method"})
        kw = dict(args=(A, b), jac=jac, method=method)
        sent = ctrl_c_after(float(rng.uniform(0.0, 0.06)))
        try:
            res = numadam.minimize(fun, np.zeros(5), options=dict(opts, maxiter=total),
                                   **kw)
        except numadam.Interrupted as exc:
            res = exc.result
        else:            # the run ended first: the signal still comes
            with pytest.raises(KeyboardInterrupt):
                time.sleep(1.0)
        assert time.monotonic() - sent[0] < 1.0
        assert res.state.step == res.nit and np.isfinite(res.x).all()
        if res.status == 98 and "while evaluating" not in res.message:
            assert res.fun == pytest.approx(fun(res.x, A, b), rel=1e-12)
        rest = numadam.minimize(fun, res.x, **kw, options=dict(
            opts, maxiter=total - res.nit, state=res.state))
        whole = numadam.minimize(fun, np.zeros(5), **kw, options=dict(opts, maxiter=total))
        np.testing.assert_array_equal(rest.x, whole.x)
