"""What the memory system allows a sparse step on this machine.

    python asv_bench/sparse_floor.py [--rounds 15]

The embedding problem of ``compare.py``'s target f (100,000 x 100 float64,
1,000 random rows per step) moves 5.6 MB per lazy step: the touched rows of
x, m and v are read and written, and the gradient is read. This script times,
side by side in one process, kernels that move exactly those bytes with no
arithmetic, laid out and scheduled in different ways, and a streaming kernel
over whole arrays for the machine's bandwidth when addresses are sequential:

- ``rows``: x, m, v as separate arrays (numadam's layout), two threads;
- ``rows, one thread``: the same on one core;
- ``rows, whole rows prefetched``: every cache line of the rows of x, m, v
  eight rows ahead prefetched;
- ``rows, m and v interleaved``: m and v of a row adjacent in memory, one
  block of 1,600 bytes instead of two of 800;
- ``stream``: read and write three whole 80 MB arrays.

If prefetching and layout do not move the time of the rows kernel, the
step is bound by how fast the memory system serves random blocks of this
size, and no kernel that must move these bytes can be faster.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np
from numba import njit, prange, uint64

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks.common import embedding_gradients, same_bytes_rows  # noqa: E402
from numadam._kernels.sparse import prefetch  # noqa: E402

ROWS, COLS, TOUCHED = 100_000, 100, 1_000
AHEAD = 8


@njit(inline="always")
def move_row(x, idx, val, S, j):
    """The bytes of row ``idx[j]`` as the rows kernel moves them."""
    r = val.shape[1]
    base = uint64(idx[j]) * uint64(r)
    for q in range(r):
        i = base + uint64(q)
        a = x[i]
        c = S[0, i]
        S[0, i] = S[1, i]
        S[1, i] = c
        x[i] = val[j, q] if a != a else a


@njit(cache=True)
def rows_serial(x, idx, val, S):
    for j in range(idx.shape[0]):
        move_row(x, idx, val, S, j)


@njit(parallel=True, cache=True)
def rows_prefetched(x, idx, val, S):
    r = val.shape[1]
    k = idx.shape[0]
    for j in prange(k):
        if j + AHEAD < k:
            ahead = uint64(idx[j + AHEAD]) * uint64(r)
            # a line every 8 values, and the row's last value (rows do not
            # start on a line)
            for q in range(0, r + 7, 8):
                p = ahead + uint64(min(q, r - 1))
                prefetch(x, p)
                prefetch(S[0], p)
                prefetch(S[1], p)
        move_row(x, idx, val, S, j)


@njit(parallel=True, cache=True)
def rows_interleaved(x, idx, val, S3):
    r = val.shape[1]
    for j in prange(idx.shape[0]):
        row = uint64(idx[j])
        base = row * uint64(r)
        for q in range(r):
            i = base + uint64(q)
            a = x[i]
            c = S3[row, 0, q]
            S3[row, 0, q] = S3[row, 1, q]
            S3[row, 1, q] = c
            x[i] = val[j, q] if a != a else a


@njit(parallel=True, cache=True)
def stream(x, m, v):
    for i in prange(x.shape[0]):
        x[i] += 1.0
        m[i] += 1.0
        v[i] += 1.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    n = ROWS * COLS
    grads = embedding_gradients(ROWS, COLS, TOUCHED, 20)
    x = np.zeros(n)
    S = np.zeros((2, n))
    S3 = np.zeros((ROWS, 2, COLS))
    counter = [0]

    def rows_kernel(kernel, state):
        def run():
            idx, val = grads[counter[0] % len(grads)]
            counter[0] += 1
            kernel(x, idx, val, state)
        return run

    contenders = {
        "rows": rows_kernel(same_bytes_rows, S),
        "rows, one thread": rows_kernel(rows_serial, S),
        "rows, whole rows prefetched": rows_kernel(rows_prefetched, S),
        "rows, m and v interleaved": rows_kernel(rows_interleaved, S3),
    }
    step_bytes = TOUCHED * COLS * 8 * 7
    for fn in contenders.values():
        fn()
    stream(x, S[0], S[1])
    times = {name: [] for name in contenders}
    streams = []
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            t = time.perf_counter()
            for _ in range(20):
                fn()
            times[name].append((time.perf_counter() - t) / 20)
        t = time.perf_counter()
        stream(x, S[0], S[1])
        streams.append(time.perf_counter() - t)
    print(f"{TOUCHED} random rows of {COLS} float64 per step, "
          f"{step_bytes / 1e6:.1f} MB moved per step")
    base = statistics.median(times["rows"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:30s} {med * 1e6:8.1f} us  {step_bytes / med / 1e9:5.1f} GB/s"
              f"  ratio to rows: {med / base:.2f}")
    stream_bw = 6 * n * 8 / statistics.median(streams) / 1e9
    print(f"  {'stream (sequential)':30s} {'':8s}     {stream_bw:5.1f} GB/s")


if __name__ == "__main__":
    main()
