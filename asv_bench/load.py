"""The dense adam step under CPU load: numadam's default kernel against the forced ones and torch.

    python asv_bench/load.py [--loads 0 1 2] [--sizes 4096 65536 1000000 10000000]
                             [--seconds 1.5] [--compare] [--json PATH]

For each number K of competitors (processes spinning in ``while True: pass``,
started before the measurements and killed after them) and each size N, the
float64 adam step is timed step by step: numadam's default choice of kernel
(a new Optimizer after one step, so that the steps in which it chooses are
measured), the serial and the parallel kernel forced (after warm-up steps),
and torch.optim.Adam(fused=True) (foreach where fused is not supported on the
CPU) with as many threads as usable CPUs. The kinds take turns, one step
each in an order shuffled every round, so that all see the same load, for
about ``--seconds`` each (30 to 2,000 steps); the tables give the median and
the 95th percentile per step, and the default's over the better forced
kernel's median, and the mean (the time a run spends per step). The targets
checked at the end:

* default median <= 1.2 x the better forced median, at every N and K;
* default 95th percentile <= 2 x the better forced median, at every N and K;
* default median < torch's median at every N with K = 2.

``--compare`` also times ``python -m numadam compare`` (its default runs;
``--compare-short``: adam for 5 epochs) with two competitors, in the default
environment and with NUMBA_NUM_THREADS=1 (target: the ratio of wall times
<= 1.3). ``--json PATH`` writes every figure.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numba

from numadam._kernels.threads import usable_cpus  # the threads of numadam's kernels

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks.common import arrays, cpu_model  # noqa: E402  (the asv suite's helpers)
from benchmarks.load import (  # noqa: E402
    compile_kernels, competitors, interleaved_times, median_p95_us, numadam_step, torch_step)

KINDS = ["default", "serial", "parallel", "torch"]
MEDIAN_TARGET = 1.2
P95_TARGET = 2.0
COMPARE_TARGET = 1.3
COMPARE_ARGS = ["compare", "--out", ""]
COMPARE_SHORT = ["--methods", "adam", "--epochs", "5"]


def threading_layer():
    try:
        return numba.threading_layer()
    except ValueError:
        return "none loaded"


def setup_torch():
    """torch with one thread per usable CPU and its Adam mode, or (None, None)."""
    try:
        import torch
    except ImportError:
        return None, None
    torch.set_num_threads(usable_cpus())
    x, g = arrays(1_000, "float64")
    return torch, torch_step(x, g)[1]


def measure(kinds, x, g, seconds):
    """Median and 95th percentile per step of each kind, stepped in turn."""
    steps = {kind: torch_step(x.copy(), g)[0] if kind == "torch"
             else numadam_step(kind, x.copy(), g) for kind in kinds}
    out = {}
    for kind, times in interleaved_times(steps, seconds, 30, 2000).items():
        med, p95 = median_p95_us(times)
        out[kind] = {"median_us": med, "p95_us": p95, "mean_us": float(times.mean()) / 1e3,
                     "steps": len(times)}
    return out


def print_table(k, rows):
    print(f"\nK = {k} competitor{'s' if k != 1 else ''} (microseconds per step; "
          "best = min(serial, parallel) median)")
    head = (f"{'N':>10} {'default med':>12} {'default p95':>12} {'serial med':>11} "
            f"{'parallel med':>12} {'torch med':>10} {'med/best':>9} {'p95/best':>9}")
    print(head)
    print("-" * len(head))
    for n, r in rows.items():
        torch_med = f"{r['torch']['median_us']:10.1f}" if "torch" in r else f"{'-':>10}"
        print(f"{n:>10d} {r['default']['median_us']:12.1f} {r['default']['p95_us']:12.1f} "
              f"{r['serial']['median_us']:11.1f} {r['parallel']['median_us']:12.1f} "
              f"{torch_med} {r['median_ratio']:9.2f} {r['p95_ratio']:9.2f}")
    print("means (the time a run spends per step): " + "; ".join(
        f"N={n}: " + ", ".join(f"{kind} {v['mean_us']:.1f}" for kind, v in r.items()
                               if isinstance(v, dict) and "mean_us" in v)
        for n, r in rows.items()))


def check(name, figures, limit, strict=False):
    """Print whether every ratio in ``figures`` ((K, N) -> ratio) is within
    ``limit``; return the verdict."""
    if not figures:
        print(f"  {name}: not measured")
        return {"holds": None}
    bad = {kn: r for kn, r in figures.items() if (r >= limit if strict else r > limit)}
    (wk, wn), worst = max(figures.items(), key=lambda kv: kv[1])
    verdict = "does not hold" if bad else "holds"
    print(f"  {name}: {verdict} (largest {worst:.2f} at N={wn}, K={wk})")
    for (k, n), r in sorted(bad.items()):
        print(f"      N={n}, K={k}: {r:.2f}")
    return {"holds": not bad, "largest": worst, "at": {"K": wk, "N": wn},
            "failures": [{"K": k, "N": n, "ratio": r} for (k, n), r in sorted(bad.items())]}


def run_compare_once(env, cwd, argv):
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "numadam", *argv], env=env, cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"python -m numadam compare failed ({proc.returncode}):\n"
                           + proc.stderr[-2000:])
    rows = re.findall(r"^(\S.*?)\s{2,}(\w+)\s+\S+\s+\S+\s+([\d.]+)$", proc.stdout, re.M)
    return wall, {f"{model} {method}": float(ms) for model, method, ms in rows}


def run_compare(k=2, short=False):
    argv = COMPARE_ARGS + (COMPARE_SHORT if short else [])
    env = dict(os.environ)
    inherited = env.pop("NUMBA_NUM_THREADS", None)
    envs = {"default": env, "NUMBA_NUM_THREADS=1": dict(env, NUMBA_NUM_THREADS="1")}
    cmd = " ".join(["python -m numadam", *COMPARE_ARGS[:-1], "''", *argv[3:]])
    print(f"\n{cmd}, K = {k} competitors (after one untimed run without "
          "competitors, for Numba's cache)")
    if inherited is not None:
        print(f"  (NUMBA_NUM_THREADS={inherited} of this environment removed for the default)")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_compare_once(env, tmp, argv)
        with competitors(k):
            for name, e in envs.items():
                wall, ms = run_compare_once(e, tmp, argv)
                out[name] = {"wall_s": wall, "ms_per_epoch": ms}
    for name, r in out.items():
        epochs = ", ".join(f"{m} {v:.2f}" for m, v in r["ms_per_epoch"].items())
        print(f"  {name:<20} wall {r['wall_s']:7.2f} s   ms/epoch: {epochs}")
    ratio = out["default"]["wall_s"] / out["NUMBA_NUM_THREADS=1"]["wall_s"]
    holds = ratio <= COMPARE_TARGET
    print(f"  wall time default / NUMBA_NUM_THREADS=1: {ratio:.2f}; target <= "
          f"{COMPARE_TARGET}: {'holds' if holds else 'does not hold'}")
    return {"command": cmd, "loads": k, "runs": out, "ratio": ratio, "holds": holds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", nargs="+", type=int, default=[0, 1, 2],
                        help="numbers of competitor processes (default 0 1 2)")
    parser.add_argument("--sizes", nargs="+", type=int,
                        default=[4_096, 65_536, 1_000_000, 10_000_000],
                        help="array sizes (default 4096 65536 1000000 10000000)")
    parser.add_argument("--seconds", type=float, default=1.5,
                        help="time per measurement (default 1.5)")
    parser.add_argument("--compare", action="store_true",
                        help="also time python -m numadam compare under two competitors")
    parser.add_argument("--compare-short", action="store_true",
                        help="with --compare: adam alone, 5 epochs")
    parser.add_argument("--json", metavar="PATH", help="write all figures to this file")
    args = parser.parse_args()

    compile_kernels()
    torch, torch_mode = setup_torch()
    kinds = KINDS if torch is not None else KINDS[:-1]
    info = {"cpu": cpu_model(), "usable_cpus": usable_cpus(),
            "numba_threading_layer": threading_layer(),
            "numba_num_threads": numba.get_num_threads(),
            "load_average": os.getloadavg(),
            "torch": None if torch is None else {"version": torch.__version__, "mode": torch_mode,
                                                 "threads": torch.get_num_threads()}}
    print(f"CPU: {info['cpu']}")
    print(f"usable CPUs: {info['usable_cpus']}; load average before the competitors: "
          + " ".join(f"{v:.2f}" for v in info["load_average"]))
    print(f"numba {numba.__version__}: threading layer {info['numba_threading_layer']}, "
          f"{info['numba_num_threads']} threads")
    if torch is None:
        print("torch: not installed (torch column skipped)")
    else:
        note = "" if torch_mode == "fused" else " (fused is not supported on the CPU)"
        print(f"torch {torch.__version__}: Adam {torch_mode}{note}, "
              f"{torch.get_num_threads()} threads")

    data = {n: arrays(n, "float64") for n in args.sizes}
    results = {}
    for k in args.loads:
        rows = {}
        with competitors(k):
            for n, (x, g) in data.items():
                rows[n] = measure(kinds, x, g, args.seconds)
        for r in rows.values():
            best = min(r["serial"]["median_us"], r["parallel"]["median_us"])
            r["median_ratio"] = r["default"]["median_us"] / best
            r["p95_ratio"] = r["default"]["p95_us"] / best
        results[k] = rows
        print_table(k, rows)

    print("\ntargets (best forced = min(serial median, parallel median)):")
    targets = {
        "median": check(f"default median <= {MEDIAN_TARGET} x best forced, every N and K",
                        {(k, n): r["median_ratio"] for k, rows in results.items()
                         for n, r in rows.items()}, MEDIAN_TARGET),
        "p95": check(f"default p95 <= {P95_TARGET} x best forced, every N and K",
                     {(k, n): r["p95_ratio"] for k, rows in results.items()
                      for n, r in rows.items()}, P95_TARGET),
        "torch": check("default median < torch median at K=2, every N (default / torch)",
                       {(2, n): r["default"]["median_us"] / r["torch"]["median_us"]
                        for n, r in results.get(2, {}).items() if "torch" in r},
                       1.0, strict=True),
    }

    compare = run_compare(short=args.compare_short) if args.compare else None

    if args.json:
        out = dict(info, seconds=args.seconds, targets=targets, compare=compare,
                   results=[dict(loads=k, n=n, **r)
                            for k, rows in results.items() for n, r in rows.items()])
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
