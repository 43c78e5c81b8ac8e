"""The dense step kernel reads its layout and clipping at run time: measure
what that costs.

    python asv_bench/step_layout.py

numadam's dense step kernel finds out from the number of rows of its state
array whether it saves the previous iterate and whether it projects onto
bounds, so that one compiled kernel serves ``minimize`` and ``Optimizer``,
bounded or not; and from ``P`` whether it clips the gradient (option
``clip_norm``: a first pass sums the gradient's squares, and the element
loop reads the gradient times the step's factor, 1 when nothing is
clipped). This script builds, beside it, kernels specialised on each layout
at compile time, without the first pass (the earlier design), and times
both side by side in one process, interleaved round by round; it prints the
median per-round ratio of the run-time kernel to the specialised one with
clipping off, and (``clip on``) with a clip_norm that scales every step's
gradient. Rows at n = 2 time the kernels called from a compiled loop, as
the compiled minimize loop calls them, where the per-step overhead shows.
"""

import functools
import time

import numpy as np
from numba import njit, prange

import numadam
from numadam._engine import Engine
from numadam._kernels import cpu
from numadam._rules import get_rule, round_scalars
from numadam._rules._math import clip


def specialised_kernel(rule_name, F, parallel, bounded, backup):
    """The step kernel with its layout fixed when it is compiled."""
    rule = get_rule(rule_name)
    coefficients = rule.coefficients
    update = rule.update
    loop = prange if parallel else range
    off, H, A = cpu.layout(rule_name, bounded, backup)
    lo_row = int(backup)

    @njit(parallel=parallel, error_model="numpy", nogil=True)
    def step(x, g, W, P, lr):
        cf = P[H + A:]
        T = x.dtype.type
        coefficients(P[:H], P[H:H + A], lr, F, cf, T)
        c = round_scalars(cf, T)
        S = W[off:]
        for i in loop(x.shape[0]):
            xn = update(i, x, g[i], S, c, F)
            if backup:
                W[0, i] = x[i]
            if bounded:
                xn = clip(xn, W, lo_row, lo_row + 1, i)
            x[i] = xn

    return step


@functools.cache
def compiled_loop(kernel):
    """``run(x, g, W, P, lr, m)``: ``m`` steps from compiled code."""
    @njit(error_model="numpy", nogil=True)
    def run(x, g, W, P, lr, m):
        for _ in range(m):
            kernel(x, g, W, P, lr)
    return run


def compare(method, n, dtype, backup, bounded, rounds=11):
    spec = numadam.methods[method]
    values = spec.resolve({})
    F = spec.rule_impl().flags(values)
    parallel = cpu.use_parallel(n, None, spec.rule, dtype)
    runtime = cpu.step_kernel(spec.rule, F, parallel)
    kernels = {"specialised": specialised_kernel(spec.rule, F, parallel, bounded, backup),
               "run-time": runtime, "clip on": runtime}
    rng = np.random.default_rng(0)
    arrays = {}
    tiny = n <= 16
    reps = 200_000 if tiny else max(1, int(2e7 // n))
    for name, kernel in kernels.items():
        x = rng.standard_normal(n).astype(dtype)
        g = rng.standard_normal(n).astype(dtype)
        lo = np.full(n, -10.0, dtype) if bounded else None
        clip = {"clip_norm": 1e-3} if name == "clip on" else {}
        e = Engine(spec, x, dict(values, **clip), lo, None if lo is None else -lo,
                   backup=backup)
        arrays[name] = (x, g, e.W, e.P)
        kernel(*arrays[name], 1e-3)                # compile, warm up
        if tiny:
            compiled_loop(kernel)(*arrays[name], 1e-3, 1)
    times = {name: [] for name in kernels}
    for _ in range(rounds):
        for name, kernel in kernels.items():
            args = arrays[name]
            start = time.perf_counter()
            if tiny:
                compiled_loop(kernel)(*args, 1e-3, reps)
            else:
                for _ in range(reps):
                    kernel(*args, 1e-3)
            times[name].append((time.perf_counter() - start) / reps)
    base = np.array(times["specialised"])
    ratio = np.median(np.array(times["run-time"]) / base)
    clip_ratio = np.median(np.array(times["clip on"]) / base)
    print(f"{method:<5} n={n:>10,} {np.dtype(dtype).name:<7} backup={backup!s:<5} "
          f"bounds={bounded!s:<5} parallel={parallel!s:<5} "
          f"{np.median(times['run-time']) * 1e6:10.3f} us  ratio {ratio:.3f}  "
          f"clip on {clip_ratio:.3f}", flush=True)


def main():
    compare("adam", 2, np.float64, True, False)
    for n in (1_000, 100_000, 10_000_000):
        for dtype in (np.float64, np.float32):
            for backup, bounded in ((False, False), (True, False), (True, True)):
                compare("adam", n, dtype, backup, bounded)
    compare("sgd", 100_000, np.float64, True, False)


if __name__ == "__main__":
    main()
