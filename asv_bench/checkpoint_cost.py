"""What checkpoints cost a run: the compiled Rosenbrock loop with and without them.

    python asv_bench/checkpoint_cost.py [--rounds 21] [--steps 2000000]

The run of ``compare.py``'s row a (adam on Rosenbrock n=2, ``jac_out``,
gtol=0), long enough for several writes: without checkpoints, with the
default period (``checkpoint_every=60.0`` seconds: the loop returns to
Python about every 50 ms to look at the clock), and writing every 0.1 s.
The three take turns in an order shuffled every round, in one process; the
figures are medians of the per-step times and of the ratios to the run
without checkpoints. The CPU model is printed first.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks.common import cpu_model, rosen2, rosen2_der_out  # noqa: E402

import numadam  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--steps", type=int, default=2_000_000)
    args = parser.parse_args(argv)
    print(f"CPU: {cpu_model()}")
    x0 = np.array([-1.2, 1.0])
    base = {"maxiter": args.steps, "gtol": 0.0, "learning_rate": 1e-3, "jac_out": True}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "run.npz")
        kinds = {
            "no checkpoint": {},
            "checkpoint_every=60.0 (default)": {"checkpoint": path},
            "checkpoint_every=0.1": {"checkpoint": path, "checkpoint_every": 0.1},
        }

        def run(extra):
            return numadam.minimize(rosen2, x0, jac=rosen2_der_out,
                                    options=dict(base, **extra))

        reference = run({}).x
        for extra in kinds.values():            # loads or compiles the loops
            assert np.array_equal(run(extra).x, reference)
        times = {k: [] for k in kinds}
        order = np.random.default_rng(0)
        names = list(kinds)
        for _ in range(args.rounds):
            for j in order.permutation(len(names)):
                start = time.perf_counter()
                run(kinds[names[j]])
                times[names[j]].append((time.perf_counter() - start) / args.steps * 1e9)
    first = names[0]
    for name in names:
        ratio = statistics.median(a / b for a, b in zip(times[name], times[first]))
        print(f"  {name:<34} {statistics.median(times[name]):8.1f} ns/step   "
              f"ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
