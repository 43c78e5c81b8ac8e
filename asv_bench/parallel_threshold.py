"""Measure where the parallel (prange) update kernel starts to beat the serial one.

    python asv_bench/parallel_threshold.py [--methods adam sgd] [--repeat 200]

For each size it times one update step of both kernels side by side in this
process (best of ``--repeat``) and prints the ratio; the crossover is the
smallest size from which the parallel kernel stays faster.
Each rule's ``parallel_threshold`` (``numadam.methods[name].rule_impl()``)
holds the values measured on the project's 2-core reference machine.
"""

import argparse
import time

import numpy as np

import numadam


def best_time(opt, g, repeat):
    opt.step(g)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        opt.step(g)
        best = min(best, time.perf_counter() - t)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["adam", "sgd", "adagrad"])
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    sizes = [2 ** k for k in range(10, 21)]
    for method in args.methods:
        current = numadam.methods[method].rule_impl().parallel_threshold
        print(f"{method}: current threshold (float64, float32) {current}")
    for method in args.methods:
        for dtype in args.dtypes:
            crossover = None
            print(f"\n{method} {dtype}: n, serial us, parallel us, serial/parallel")
            for n in sizes:
                rng = np.random.default_rng(0)
                g = rng.standard_normal(n).astype(dtype)
                times = []
                for parallel in (False, True):
                    x = rng.standard_normal(n).astype(dtype)
                    opt = numadam.Optimizer(method, x, parallel=parallel,
                                            learning_rate=1e-9)
                    times.append(best_time(opt, g, args.repeat))
                ratio = times[0] / times[1]
                if ratio > 1.0 and crossover is None:
                    crossover = n
                elif ratio <= 1.0:
                    crossover = None
                print(f"{n:>9d} {1e6 * times[0]:10.2f} {1e6 * times[1]:10.2f} {ratio:8.2f}")
            print(f"parallel faster from n = {crossover}")


if __name__ == "__main__":
    main()
