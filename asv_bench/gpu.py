"""The dense adam step on an NVIDIA GPU, side by side with torch, in one run.

    python asv_bench/gpu.py [--sizes 1e6 1e7 1e8] [--rounds 15] [--markdown]

For float32 arrays of N = 1e6, 1e7 and 1e8 elements on one card, in one
process, interleaved round by round:

- ``numadam``: ``numadam.Optimizer("adam", x)`` on a device array, one
  ``step(g)`` per iteration (one kernel launch; the step's scalars come from
  the host as arguments);
- ``torch fused``: ``torch.optim.Adam([p], fused=True)`` on a CUDA tensor of
  the same size, one ``step()`` per iteration;
- ``copy``: a device-to-device copy of N float32 values (``torch``'s
  ``dst.copy_(src)``, else Numba's ``copy_to_device``), which reads and
  writes 8 bytes per element: the card's practical bandwidth.

Each figure is the median over rounds of (wall time of ``inner`` iterations
between two device synchronisations) / ``inner``. The effective bandwidth of
an adam step counts 28 bytes per element (read x, g, m, v: 16; write x, m,
v: 12) and is reported as a fraction of the copy's bandwidth. Targets: at
least 0.90 of the copy at 1e8, and not slower than torch fused at any size.

Needs numba-cuda (``pip install 'numadam[cuda]'``) and a GPU; torch with CUDA
for its columns (CuPy is not needed). Peers that are missing are skipped.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import numadam

BYTES_ADAM = 28
BYTES_COPY = 8


def _timer(fn, sync, inner):
    def run():
        sync()
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        return (time.perf_counter() - t) / inner
    return run


def measure(n, rounds, torch):
    from numba import cuda

    rng = np.random.default_rng(0)
    x_host = rng.standard_normal(n, dtype=np.float32)
    g_host = (rng.standard_normal(n, dtype=np.float32) * np.float32(1e-3))
    x = cuda.to_device(x_host)
    g = cuda.to_device(g_host)
    opt = numadam.Optimizer("adam", x, learning_rate=1e-6)
    contenders = {"numadam": lambda: opt.step(g)}
    if torch is not None:
        p = torch.tensor(x_host, device="cuda", requires_grad=True)
        p.grad = torch.tensor(g_host, device="cuda")
        topt = torch.optim.Adam([p], lr=1e-6, fused=True)
        src = torch.empty(n, dtype=torch.float32, device="cuda")
        dst = torch.empty_like(src)
        contenders["torch fused"] = topt.step
        contenders["copy"] = lambda: dst.copy_(src)

        def sync():
            cuda.synchronize()
            torch.cuda.synchronize()
    else:
        src = cuda.device_array(n, np.float32)
        dst = cuda.device_array(n, np.float32)
        contenders["copy"] = lambda: dst.copy_to_device(src)
        sync = cuda.synchronize
    inner = max(5, int(2e8 // n))
    timers = {k: _timer(fn, sync, inner) for k, fn in contenders.items()}
    for t in timers.values():       # warm-up: compilation, allocations
        t()
    rows = [{k: t() for k, t in timers.items()} for _ in range(rounds)]
    return rows


def report(n, rows, markdown):
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    gbs = {k: (BYTES_COPY if k == "copy" else BYTES_ADAM) * n / med[k] / 1e9 for k in med}
    out = {"n": n, "us": {k: med[k] * 1e6 for k in med}, "GB/s": gbs}
    if "torch fused" in med:
        out["numadam / torch"] = statistics.median(r["numadam"] / r["torch fused"]
                                                   for r in rows)
    out["fraction of copy bandwidth"] = gbs["numadam"] / gbs["copy"]
    if markdown:
        ratio = out.get("numadam / torch")
        print(f"| {n:.0e} | {out['us']['numadam']:.1f} | "
              f"{out['us'].get('torch fused', float('nan')):.1f} | "
              f"{'-' if ratio is None else f'{ratio:.2f}'} | {gbs['numadam']:.0f} | "
              f"{gbs['copy']:.0f} | {out['fraction of copy bandwidth']:.2f} |")
    else:
        print(f"\nN = {n:.0e} (float32, adam)")
        for k in med:
            print(f"  {k:<12} {med[k] * 1e6:12.1f} us   {gbs[k]:8.0f} GB/s")
        if "numadam / torch" in out:
            print(f"  numadam / torch fused (median of per-round ratios): "
                  f"{out['numadam / torch']:.3f}")
        print(f"  numadam's effective bandwidth / copy bandwidth: "
              f"{out['fraction of copy bandwidth']:.3f}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7, 1e8])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--markdown", action="store_true",
                    help="print table rows for the Performance page")
    args = ap.parse_args(argv)
    try:
        from numba import cuda
    except ImportError:
        sys.exit("numba-cuda is not installed: pip install 'numadam[cuda]'")
    if not cuda.is_available() or cuda.jit.__module__.startswith("numba.cuda.simulator"):
        sys.exit("no CUDA GPU found (numba.cuda.is_available() is False)")
    try:
        import torch
        if not torch.cuda.is_available():
            torch = None
    except ImportError:
        torch = None
    dev = cuda.get_current_device()
    import numba
    versions = f"numba {numba.__version__}"
    if torch is not None:
        versions += f", torch {torch.__version__}"
    print(f"device: {dev.name.decode() if isinstance(dev.name, bytes) else dev.name}; "
          f"{versions}")
    if torch is None:
        print("torch with CUDA is not available: its column is skipped")
    if args.markdown:
        print("| N | numadam (us) | torch fused (us) | numadam / torch | numadam GB/s "
              "| copy GB/s | fraction of copy |")
        print("|---|---|---|---|---|---|---|")
    results = [report(int(n), measure(int(n), args.rounds, torch), args.markdown)
               for n in args.sizes]
    return results


if __name__ == "__main__":
    main()
