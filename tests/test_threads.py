"""The choice of serial or parallel kernels (numadam._kernels.threads)."""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from numba import njit

from reference import run as reference_run

import numadam
from numadam._kernels import threads


class FakeClock:
    """A clock that the fake kernels advance by their cost."""

    def __init__(self):
        self.now = 0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(threads, "_clock", c)
    monkeypatch.setattr(threads, "_collapsed_at", [-threads.COLLAPSE_MEMORY_NS])
    monkeypatch.setattr(threads, "_warm", set())
    monkeypatch.setattr(threads, "parallel_form", lambda k: k)
    return c


def kernel(clock, cost, calls, name):
    def run(*args):
        clock.now += cost[0]
        calls.append(name)
        return name
    return run


def pair(clock, serial_ns, parallel_ns):
    calls = []
    s, p = [serial_ns], [parallel_ns]
    a = threads.Adaptive(kernel(clock, s, calls, "s"), kernel(clock, p, calls, "p"))
    return a, s, p, calls


def test_probe_keeps_the_faster_form(clock):
    a, s, p, calls = pair(clock, 10_000, 4_000)
    assert a.probing
    for _ in range(8):
        a()
    # one uncounted call of each, then three of each in turn
    assert calls == ["s", "p"] + ["s", "p"] * 3
    assert not a.probing and a.parallel
    calls.clear()
    for _ in range(20):
        assert a() == "p"
    a2, *_ = pair(clock, 4_000, 4_000)
    for _ in range(8):
        a2()
    assert not a2.parallel          # a tie goes to the serial form


def test_slow_parallel_steps_start_a_new_probe(clock):
    a, s, p, calls = pair(clock, 10_000, 4_000)
    for _ in range(8):
        a()
    assert a.parallel
    p[0] = 8_000_000                # the cores got busy: a time slice per step
    calls.clear()
    for _ in range(threads.SLOW_STEPS - 1):
        a()
        assert not a.probing        # one slow step may be a hiccup
    a()
    assert a.probing
    while a.probing:
        a()
    # the parallel form's second hopeless time in the probe: it is not
    # sampled again
    assert calls == ["p"] * threads.SLOW_STEPS + ["s", "p", "s", "p", "s"]
    assert not a.parallel
    # a collapse seen: a new kernel starts serial, without a probe
    b, _, _, calls_b = pair(clock, 10_000, 4_000)
    assert not b.probing and not b.parallel
    b()
    assert calls_b == ["s"]


def test_probe_cost_is_a_small_share_of_the_time(clock):
    a, s, p, calls = pair(clock, 10_000, 30_000)
    for _ in range(8):
        a()
    assert not a.parallel
    calls.clear()
    n = 0
    while not a.probing:
        a()
        n += 1
    # three parallel samples cost 3 * 20 us more than serial ones: the next
    # probe comes after BUDGET times that much serial time
    assert n == threads.BUDGET * 3 * 20_000 // 10_000 + 1
    p[0] = 2_000                    # the load went: parallel wins again
    for _ in range(6):
        a()
    assert a.parallel


def test_follow_runs_the_chosen_form(clock):
    a, s, p, calls = pair(clock, 10_000, 4_000)
    other = a.follow(lambda: "serial", lambda: "parallel")
    assert other() == "serial"
    for _ in range(8):
        a()
    assert other() == "parallel"
    with threads.PARALLEL_LOCK:     # another thread's parallel kernel runs
        assert other() == "serial"
        assert a() == "s"


def test_cgroup_quota(tmp_path):
    proc = tmp_path / "cgroup"
    root = tmp_path / "fs"
    (root / "a" / "b").mkdir(parents=True)
    proc.write_text("0::/a/b\n")
    assert threads.cgroup_quota(str(proc), str(root)) is None
    (root / "a" / "cpu.max").write_text("150000 100000\n")
    (root / "a" / "b" / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_quota(str(proc), str(root)) == 1.5
    proc.write_text("4:cpu,cpuacct:/c\n")
    d = root / "cpu,cpuacct" / "c"
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text("300000\n")
    (d / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_quota(str(proc), str(root)) == 3.0
    (d / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_quota(str(proc), str(root)) is None


def test_usable_cpus_follow_affinity_and_numba_threads():
    code = textwrap.dedent("""
        import os
        os.sched_setaffinity(0, {0})
        from numadam._kernels import threads, cpu
        print(threads.usable_cpus(), cpu.parallel_mode(10**6), cpu.parallel_mode(10**6, True))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["1", "False", "True"]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPUs")
def test_default_is_measured_above_the_threshold():
    x = np.zeros(1 << 17)
    opt = numadam.Optimizer("adam", x)
    assert isinstance(opt._engine.kernel, threads.Adaptive)
    small = numadam.Optimizer("adam", np.zeros(100))
    assert not small.parallel and not isinstance(small._engine.kernel, threads.Adaptive)
    forced = numadam.Optimizer("adam", np.zeros(100), parallel=True)
    assert forced.parallel


def test_measured_kernels_give_the_forced_ones_numbers():
    rng = np.random.default_rng(0)
    n = 1 << 16
    g = rng.standard_normal((40, n))
    xs = []
    for parallel in (None, False, True):
        x = np.ones(n)
        opt = numadam.Optimizer("adam", x, parallel=parallel, learning_rate=1e-2)
        for row in g:
            opt.step(row)
        xs.append(x)
    np.testing.assert_array_equal(xs[0], xs[1])
    np.testing.assert_allclose(xs[0], xs[2], rtol=1e-14, atol=0)


@njit
def half_square_fg(x):
    return 0.5 * np.dot(x, x), x.copy()


def test_minimize_in_both_loops_matches_the_reference():
    # above the parallel threshold: the measured choice in the Python loop,
    # and the compiled loop's slices choosing between its two loops
    n = 1 << 14
    x0 = np.linspace(-1.0, 1.0, n)
    ref = reference_run("adam", x0, lambda x: x.copy(), 300, learning_rate=1e-2).x
    for fg in (half_square_fg, half_square_fg.py_func):
        res = numadam.minimize(fg, x0, jac=True, method="adam",
                               options=dict(maxiter=300, learning_rate=1e-2, gtol=0))
        np.testing.assert_allclose(res.x, ref, rtol=1e-13, atol=1e-15)
        assert res.nit == 300 and res.status == 0


CONCURRENT = textwrap.dedent("""
    import threading
    import numpy as np
    from numba import njit
    import numadam

    @njit
    def quadratic_fg(x):
        return 0.5 * np.dot(x, x), x.copy()

    n = 1 << 16
    results = {}

    def work(j, parallel):
        x0 = np.full(n, 1.0 + j)
        res = numadam.minimize(quadratic_fg, x0, jac=True, method="adam",
                               options=dict(maxiter=200, parallel=parallel,
                                            learning_rate=1e-2, gtol=0,
                                            compiled=j % 2 == 0))
        results[j] = res.x

    ts = [threading.Thread(target=work, args=(j, [None, True][j % 2]))
          for j in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for j in range(8):
        x = np.full(n, 1.0 + j)
        ref = numadam.minimize(quadratic_fg, x, jac=True, method="adam",
                               options=dict(maxiter=200, parallel=False,
                                            learning_rate=1e-2, gtol=0)).x
        np.testing.assert_allclose(results[j], ref, rtol=1e-13)
    print("ok", len(results))
""")


@pytest.mark.parametrize("layer", ["workqueue", "omp"])
def test_concurrent_minimize_never_aborts(layer):
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer, NUMBA_NUM_THREADS="4")
    r = subprocess.run([sys.executable, "-c", CONCURRENT], capture_output=True,
                       text=True, timeout=600, env=env)
    if layer != "workqueue" and "No threading layer could be loaded" in r.stderr:
        pytest.skip(f"Numba's {layer} threading layer is not installed")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["ok", "8"]


def test_lock_is_free_after_runs():
    assert not threads.PARALLEL_LOCK.locked()
    done = []

    def work():
        x = np.zeros(1 << 15)
        opt = numadam.Optimizer("adam", x, parallel=True)
        for _ in range(20):
            opt.step(np.ones_like(x))
        done.append(x[0])

    ts = [threading.Thread(target=work) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(done) == 3 and len(set(done)) == 1
    assert not threads.PARALLEL_LOCK.locked()


@njit
def least_squares_fg(w, X, y):
    r = X @ w - y
    return 0.5 * np.dot(r, r) / X.shape[0], X.T @ r / X.shape[0]


def test_minibatch_gathers_follow_the_option():
    from numadam._stochastic import Batching

    rng = np.random.default_rng(3)
    X = rng.standard_normal((2000, 40))
    y = rng.standard_normal(2000)
    kinds = {p: Batching((X, y), (0, 1), 256, np.random.default_rng(0), p).gathers
             for p in (None, True, False)}
    if threads.usable_cpus() > 1:
        assert isinstance(kinds[None][0], threads.Adaptive)   # 80 KB a batch
    assert all(isinstance(g, threads.Forced) for g in kinds[True])
    assert not any(isinstance(g, (threads.Adaptive, threads.Forced)) for g in kinds[False])
    small = Batching((X, y), (0, 1), 8, np.random.default_rng(0), None).gathers
    assert not any(isinstance(g, (threads.Adaptive, threads.Forced)) for g in small)
    # the same batches and steps whichever way the gathers and steps run, in
    # both loops
    runs = [numadam.minimize(fg, np.zeros(40), args=(X, y), jac=True, method="adam",
                             options=dict(batch_size=256, epochs=3, seed=5,
                                          parallel=p, gtol=0))
            for fg in (least_squares_fg, least_squares_fg.py_func)
            for p in (None, False, True)]
    for r in runs[1:]:
        np.testing.assert_allclose(r.x, runs[0].x, rtol=1e-13, atol=1e-15)
        assert r.nit == runs[0].nit == 3 * 8


FRESH_MINIBATCH = textwrap.dedent("""
    import numpy as np
    from numba import njit
    import numadam

    @njit
    def fg(w, X, y):
        r = X @ w - y
        return 0.5 * np.dot(r, r) / X.shape[0], X.T @ r / X.shape[0]

    rng = np.random.default_rng(0)
    X = rng.standard_normal((4000, 100))
    y = rng.standard_normal(4000)
    res = numadam.minimize(fg, np.zeros(100), args=(X, y), jac=True, method="adam",
                           options=dict(batch_size=256, maxiter=50, gtol=0, seed=1))
    print("ok", res.nit)
""")


def test_a_new_process_runs_a_compiled_loop_with_parallel_gathers():
    # the loop links the parallel gathers in; loaded from Numba's disk cache
    # (at the latest in the second process) before Numba's threads start, it
    # crashed the process
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", FRESH_MINIBATCH], capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.split() == ["ok", "50"]
