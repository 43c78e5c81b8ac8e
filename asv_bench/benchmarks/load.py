"""The dense adam step while other processes keep the CPUs busy.

Each competitor is a Python process spinning in ``while True: pass``; on
Linux it also dies with the process that started it, so a benchmark killed
by a timeout leaves none behind.
"""

import contextlib
import os
import subprocess
import sys
import time

import numpy as np

import numadam

from .common import arrays

KINDS = ["default", "serial", "parallel"]
PARALLEL = {"default": None, "serial": False, "parallel": True}

_COMPETITOR = """\
import ctypes, os, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    if os.getppid() != {parent}:
        sys.exit()
while True: pass
"""


def start_competitors(k, settle=0.25):
    """Start ``k`` busy processes; return them once they are running."""
    procs = []
    try:
        for _ in range(k):
            procs.append(subprocess.Popen(
                [sys.executable, "-c", _COMPETITOR.format(parent=os.getpid())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        if procs:
            time.sleep(settle)
    except BaseException:
        stop_competitors(procs)
        raise
    return procs


def stop_competitors(procs):
    """Kill the processes and wait for them."""
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()
    procs.clear()


@contextlib.contextmanager
def competitors(k):
    """``k`` busy processes for the duration of the block."""
    procs = start_competitors(k)
    try:
        yield procs
    finally:
        stop_competitors(procs)


def compile_kernels():
    """Compile the serial and the parallel float64 adam kernels, on a size
    that no benchmark uses."""
    x, g = arrays(1_000, "float64")
    for kind in ("serial", "parallel"):
        numadam_step(kind, x, g)()


def numadam_step(kind, x, g, warmup=3):
    """The step of a new adam Optimizer on ``x``: ``kind`` is "default"
    (numadam's own choice of kernel, after one step), "serial" or "parallel"
    (forced, after ``warmup`` steps)."""
    opt = numadam.Optimizer("adam", x, parallel=PARALLEL[kind], learning_rate=1e-9)
    for _ in range(1 if kind == "default" else warmup):
        opt.step(g)
    return lambda: opt.step(g)


def torch_step(x, g, warmup=3):
    """The step of torch.optim.Adam on a copy of ``x``, fused where the
    installed torch supports it on the CPU, else foreach. Returns the step
    and "fused" or "foreach"; raises ImportError without torch."""
    import torch

    p = torch.tensor(x, requires_grad=True)
    p.grad = torch.from_numpy(g)
    try:
        opt = torch.optim.Adam([p], lr=1e-9, fused=True)
        opt.step()
        mode = "fused"
    except (RuntimeError, ValueError):
        opt = torch.optim.Adam([p], lr=1e-9, foreach=True)
        opt.step()
        mode = "foreach"
    for _ in range(warmup - 1):
        opt.step()
    return opt.step, mode


def step_times(step, seconds, min_steps, max_steps):
    """Time consecutive calls of ``step`` one by one, for about ``seconds``
    but at least ``min_steps`` and at most ``max_steps`` calls; return the
    times in nanoseconds."""
    clock = time.perf_counter_ns
    times = np.empty(max_steps, np.int64)
    budget = int(seconds * 1e9)
    start = clock()
    for i in range(max_steps):
        t = clock()
        step()
        t2 = clock()
        times[i] = t2 - t
        if i + 1 >= min_steps and t2 - start >= budget:
            return times[:i + 1]
    return times


def interleaved_times(steps, seconds, min_steps, max_steps, seed=0):
    """Time the calls of the ``steps`` (a dict of name: step) in turn, one
    call of each per round in an order shuffled each round (a step that
    follows a parallel one may find its threads still spinning: shuffled,
    that falls on every step alike), so that all see the same load, for about
    ``seconds`` per step but at least ``min_steps`` and at most ``max_steps``
    rounds; return the times in nanoseconds by name."""
    clock = time.perf_counter_ns
    names = list(steps)
    order = np.arange(len(names))
    rng = np.random.default_rng(seed)
    times = np.empty((len(names), max_steps), np.int64)
    budget = int(seconds * len(names) * 1e9)
    start = clock()
    for i in range(max_steps):
        rng.shuffle(order)
        for j in order:
            step = steps[names[j]]
            t = clock()
            step()
            times[j, i] = clock() - t
        if i + 1 >= min_steps and clock() - start >= budget:
            return {name: times[j, :i + 1] for j, name in enumerate(names)}
    return {name: times[j] for j, name in enumerate(names)}


def median_p95_us(times_ns):
    """Median and 95th percentile of times in ns, in microseconds."""
    return (float(np.median(times_ns)) / 1e3,
            float(np.percentile(times_ns, 95)) / 1e3)


class LoadedAdamStep:
    """One adam step (float64) with ``loads`` busy processes competing for
    the CPUs: numadam's default choice of kernel, timed from a new
    Optimizer's second step on, and the forced serial and parallel kernels."""

    params = ([0, 2], [4_096, 65_536, 1_000_000], KINDS)
    param_names = ["loads", "n", "kind"]
    timeout = 120

    def setup(self, loads, n, kind):
        compile_kernels()
        x, self.g = arrays(n, "float64")
        self.procs = start_competitors(loads)
        try:
            self.step = numadam_step(kind, x, self.g)
        except BaseException:
            stop_competitors(self.procs)
            raise

    def teardown(self, loads, n, kind):
        stop_competitors(self.procs)

    def _times(self):
        return step_times(self.step, 1.0, 30, 200)

    def track_median_us(self, loads, n, kind):
        return median_p95_us(self._times())[0]

    def track_p95_us(self, loads, n, kind):
        return median_p95_us(self._times())[1]

    track_median_us.unit = "us"
    track_p95_us.unit = "us"
