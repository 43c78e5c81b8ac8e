"""Side-by-side measurements against the tools users would otherwise reach for.

    python asv_bench/compare.py [--rounds 15] [--only a b c d] [--markdown]

Every comparison runs in this one process, interleaved: each round times
every contender once, in an order shuffled from round to round, and the
figures reported are medians over the rounds, with the median of the
per-round ratios. Shared, noisy machines move absolute
times by tens of percent from minute to minute; ratios taken within a round
move far less.

a. Rosenbrock n=2, 100,000 adam steps, the whole loop compiled (``@njit``
   fun and jac), against optax.adam in ``jax.jit(jax.lax.fori_loop(...))``
   with ``jax.grad`` (float64): the shared loop, which calls the objective
   through a function pointer, and the loop compiled for this objective
   alone (``compiled='inline'``); with two Numba references: Adam written by
   hand (``pow`` per step, no checks) and the dependency chain of one step
   alone (the step's scalars frozen, no checks), which bounds every loop
   from below.
b. minimize's own overhead per step in the Python-driven loop (fun and jac
   return precomputed values), against a hand-written NumPy Adam loop.
c. The dense adam step alone at N = 1e3, 1e5, 1e7, float64 and float32,
   against ``torch.optim.Adam(fused=True)`` and a Numba kernel that moves the
   same bytes (reads x, g, m, v; writes x, m, v) with no arithmetic.
d. Start-up: a new process that imports numadam and runs a small minimize
   (warm Numba cache), against ``python -c "import numba, scipy.optimize"``;
   and the same with an empty cache.
e. One epoch of minibatch adam on binary logistic regression, 200,000 x 100
   float64 data, batches of 256 (the same 781 batches for every contender),
   ``@njit`` fun and jac, against optax.adam in ``jax.jit(jax.lax.scan(...))``
   and a torch loop with autograd.
f. Sparse steps on an embedding-shaped problem: 100,000 x 100 float64
   parameters, 1,000 rows touched per step: numadam's lazy and catch-up adam
   steps against ``torch.optim.SparseAdam`` on the same (coalesced)
   gradients, a Numba kernel that moves the bytes of a lazy step (the
   touched rows of x, m, v and the gradient) with no arithmetic, and the
   dense steps of numadam and torch (fused).

Peers that are not installed are skipped. torch, jax and optax are never
dependencies of numadam: ``pip install torch==2.13.0 jax optax``.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

import numadam

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks.common import (  # noqa: E402  (the asv suite's helpers)
    arrays, cpu_model, embedding_gradients, logreg_data, logreg_functions,
    adam_rosen2_by_hand, adam_rosen2_chain, optax_logreg_epoch, rosen2, rosen2_der,
    rosen2_der_out, same_bytes, same_bytes_rows)

ROSEN_N_STEPS = 100_000


def _median_ratio(rows, a, b):
    return statistics.median(r[a] / r[b] for r in rows)


_order = np.random.default_rng(0)


def _round(contenders, measure):
    """One round: ``measure(fn)`` of every contender, in an order shuffled
    each round (a contender that runs after a parallel one may find that
    one's threads still spinning: shuffled, that falls on all alike)."""
    names = list(contenders)
    got = {}
    for j in _order.permutation(len(names)):
        got[names[j]] = measure(contenders[names[j]])
    return {k: got[k] for k in names}


def _timeit(fn, inner=1):
    t = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t) / inner


def _report(title, rows, unit, scale, baseline=None, note=""):
    names = list(rows[0])
    med = {k: statistics.median(r[k] for r in rows) for k in names}
    print(f"\n{title}{note}")
    for k in names:
        line = f"  {k:<32} {med[k] * scale:12.3f} {unit}"
        if baseline and k != baseline:
            line += f"   ratio to {baseline}: {_median_ratio(rows, k, baseline):.3f}"
        print(line)
    return med


# ------------------------------------------------------------------- a --

def target_a(rounds):
    x0 = np.array([-1.2, 1.0])
    opts = {"maxiter": ROSEN_N_STEPS, "gtol": 0.0, "learning_rate": 1e-3}
    contenders = {
        "numadam, jac_out": lambda: numadam.minimize(
            rosen2, x0, jac=rosen2_der_out, options=dict(opts, jac_out=True)),
        "numadam, jac returns g": lambda: numadam.minimize(
            rosen2, x0, jac=rosen2_der, options=opts),
        # the loop compiled for this objective alone, which it may inline
        "numadam inline, jac_out": lambda: numadam.minimize(
            rosen2, x0, jac=rosen2_der_out,
            options=dict(opts, jac_out=True, compiled="inline")),
        "numadam inline, jac returns g": lambda: numadam.minimize(
            rosen2, x0, jac=rosen2_der, options=dict(opts, compiled="inline")),
        "Numba loop by hand": lambda: adam_rosen2_by_hand(x0.copy(), ROSEN_N_STEPS),
        # the scalars of step 50, frozen: the chain's latency does not depend
        # on their values
        "one step's dependency chain": lambda: adam_rosen2_chain(
            x0.copy(), ROSEN_N_STEPS, 1e-3 / (1 - 0.9 ** 50), math.sqrt(1 - 0.999 ** 50)),
    }
    try:
        import jax
        import optax
    except ImportError:
        print("\na. optax is not installed: skipped")
        return None
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    opt = optax.adam(1e-3)
    grad = jax.grad(lambda x: 100.0 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2)

    @jax.jit
    def optax_run(x):
        def body(i, carry):
            x, s = carry
            u, s = opt.update(grad(x), s, x)
            return optax.apply_updates(x, u), s
        return jax.lax.fori_loop(0, ROSEN_N_STEPS, body, (x, opt.init(x)))

    jx0 = jnp.array(x0)
    contenders["optax (jit, fori_loop)"] = lambda: jax.block_until_ready(optax_run(jx0))
    for fn in contenders.values():
        fn()
    rows = [_round(contenders, lambda fn: _timeit(fn) / ROSEN_N_STEPS)
            for _ in range(rounds)]
    return _report("a. Rosenbrock n=2, 100,000 adam steps (time per step)", rows,
                   "ns", 1e9, baseline="optax (jit, fori_loop)")


# ------------------------------------------------------------------- b --

def _numpy_adam(fun, jac, x, steps, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    for t in range(1, steps + 1):
        fun(x)
        g = jac(x)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - lr / (1 - b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps)
    return x


def target_b(rounds, steps=50_000):
    g0 = np.array([0.5, -0.25])

    def fun(x):
        return 1.0

    def jac(x):
        return g0

    x0 = np.zeros(2)
    opts = {"maxiter": steps, "gtol": 0.0}
    contenders = {
        "fun + jac calls alone": lambda: [(fun(x0), jac(x0)) for _ in range(steps)],
        "numadam.minimize (Python loop)": lambda: numadam.minimize(
            fun, x0, jac=jac, options=opts),
        "hand-written NumPy Adam loop": lambda: _numpy_adam(fun, jac, x0, steps),
    }
    for fn in contenders.values():
        fn()
    rows = []
    for _ in range(rounds):
        r = _round(contenders, lambda fn: _timeit(fn) / steps)
        base = r["fun + jac calls alone"]
        rows.append({"numadam overhead per step": r["numadam.minimize (Python loop)"] - base,
                     "NumPy Adam loop overhead per step":
                         r["hand-written NumPy Adam loop"] - base})
    return _report("b. Python-driven loop: time per step beyond fun and jac", rows,
                   "us", 1e6, baseline="NumPy Adam loop overhead per step")


# ------------------------------------------------------------------- c --

def target_c(rounds, sizes=(10**3, 10**5, 10**7)):
    try:
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        torch = None
        print("\nc. torch is not installed: torch column skipped")
    results = {}
    for dtype in ("float64", "float32"):
        for n in sizes:
            x, g = arrays(n, dtype)
            opt = numadam.Optimizer("adam", x, learning_rate=1e-6)
            xb = x.copy()
            S = np.zeros((2, n), dtype)
            contenders = {"numadam Optimizer.step": lambda: opt.step(g),
                          "same-bytes kernel": lambda: same_bytes(xb, g, S)}
            if torch is not None:
                p = torch.tensor(x.copy(), requires_grad=True)
                p.grad = torch.from_numpy(g.copy())
                topt = torch.optim.Adam([p], lr=1e-6, fused=True)
                contenders["torch Adam(fused=True)"] = topt.step
            inner = max(1, int(2e5 // n))
            for fn in contenders.values():
                fn()
            rows = [_round(contenders, lambda fn: _timeit(fn, inner))
                    for _ in range(rounds)]
            med = _report(f"c. dense adam step, N={n:.0e}, {dtype}", rows, "us", 1e6,
                          baseline="numadam Optimizer.step")
            results[(dtype, n)] = (med, rows)
    return results


# ------------------------------------------------------------------- d --

_SMALL_RUN = textwrap.dedent("""
    import numpy as np, numadam
    numadam.minimize(lambda x: float(x @ x), np.ones(3), jac=lambda x: 2 * x,
                     options={"maxiter": 10})
""")


def _run_process(code, env=None):
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return time.perf_counter() - t


def target_d(rounds):
    _run_process(_SMALL_RUN)              # make sure the cache is warm
    contenders = {
        "import numba, scipy.optimize": lambda: _run_process(
            "import numba, scipy.optimize"),
        "import numadam + small minimize": lambda: _run_process(_SMALL_RUN),
    }
    rows = [{k: fn() for k, fn in contenders.items()} for _ in range(rounds)]
    med = _report("d. start-up, warm Numba cache (wall time of a new process)", rows,
                  "s", 1.0, baseline="import numba, scipy.optimize")
    cold = []
    for _ in range(max(3, rounds // 5)):
        cache = tempfile.mkdtemp(prefix="numadam-cold-")
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        try:
            cold.append({"cold cache: import + small minimize":
                         _run_process(_SMALL_RUN, env=env),
                         "warm cache: import + small minimize": _run_process(_SMALL_RUN)})
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    cmed = _report("d. start-up with an empty Numba cache", cold, "s", 1.0,
                   baseline="warm cache: import + small minimize")
    extra = (cmed["cold cache: import + small minimize"]
             - cmed["warm cache: import + small minimize"])
    print(f"  extra cost of an empty cache: {extra:.2f} s")
    return med, cmed


# ------------------------------------------------------------------- e --

def target_e(rounds, batch=256):
    X, y = logreg_data()
    n, d = X.shape
    steps = n // batch
    loss, grad, loss_grad = logreg_functions()
    opts = {"batch_size": batch, "seed": 0, "maxiter": steps, "gtol": 0.0,
            "learning_rate": 1e-3}

    def per_step(compiled, combined=False):
        # a minibatch minimize ends with one full-data evaluation for res.fun
        # and res.jac: the difference to a run of 0 steps leaves it out
        o = dict(opts, compiled=compiled)
        fun, jac = (loss_grad, True) if combined else (loss, grad)
        t0 = time.perf_counter()
        numadam.minimize(fun, np.zeros(d), args=(X, y), jac=jac, options=o)
        t1 = time.perf_counter()
        numadam.minimize(fun, np.zeros(d), args=(X, y), jac=jac,
                         options=dict(o, maxiter=0))
        t2 = time.perf_counter()
        return (t1 - t0) - (t2 - t1)

    contenders = {
        "numadam, compiled loop, fun + jac": lambda: per_step(True),
        "numadam, compiled loop, jac=True": lambda: per_step(True, True),
        "numadam, Python loop, fun + jac": lambda: per_step(False),
    }
    perm = np.random.default_rng(1).permutation(n)[:steps * batch].reshape(steps, batch)
    try:
        optax_epoch, w0 = optax_logreg_epoch(X, y, perm)
    except ImportError:
        print("\ne. optax is not installed: skipped")
    else:
        contenders["optax, jit(lax.scan)"] = lambda: optax_epoch(w0)
    try:
        import torch
    except ImportError:
        print("\ne. torch is not installed: skipped")
    else:
        tX, ty = torch.from_numpy(X), torch.from_numpy(y)
        tperm = torch.from_numpy(perm)

        def torch_epoch():
            w = torch.zeros(d, dtype=torch.float64, requires_grad=True)
            opt = torch.optim.Adam([w], lr=1e-3)
            for idx in tperm:
                opt.zero_grad()
                z = tX[idx] @ w
                loss_ = torch.nn.functional.binary_cross_entropy_with_logits(z, ty[idx])
                loss_.backward()
                opt.step()
        contenders["torch, autograd loop"] = torch_epoch
    for fn in contenders.values():
        fn()
    rows = []
    for _ in range(max(3, rounds // 3)):
        row = {}
        for k, fn in contenders.items():
            if k.startswith("numadam"):
                row[k] = fn() / steps
            else:
                row[k] = _timeit(fn) / steps
        rows.append(row)
    baseline = "optax, jit(lax.scan)" if "optax, jit(lax.scan)" in contenders else None
    return _report(f"e. minibatch adam, logistic regression {n} x {d}, batch {batch} "
                   "(time per step)", rows, "us", 1e6, baseline=baseline)


# ------------------------------------------------------------------- f --

def target_f(rounds, rows=100_000, cols=100, touched=1_000, n_grads=20):
    grads = embedding_gradients(rows, cols, touched, n_grads)
    n = rows * cols
    opts = {"learning_rate": 1e-3}
    lazy = numadam.Optimizer("adam", np.zeros(n), sparse="lazy", **opts)
    catchup = numadam.Optimizer("adam", np.zeros(n), sparse="catchup", **opts)
    dense = numadam.Optimizer("adam", np.zeros(n), **opts)
    g_dense = numadam.SparseGradient(*grads[0]).todense(n)
    counter = {"k": 0}

    def stepper(opt):
        def run():
            k = counter["k"] = counter["k"] + 1
            opt.step(grads[k % n_grads])
        return run

    xs, Ss = np.zeros(n), np.zeros((2, n))

    def floor():
        k = counter["k"] = counter["k"] + 1
        same_bytes_rows(xs, *grads[k % n_grads], Ss)

    contenders = {"numadam lazy": stepper(lazy), "numadam catch-up": stepper(catchup),
                  "same-bytes rows kernel": floor,
                  "numadam dense step": lambda: dense.step(g_dense)}
    try:
        import torch
    except ImportError:
        print("\nf. torch is not installed: torch columns skipped")
    else:
        p = torch.zeros((rows, cols), dtype=torch.float64, requires_grad=True)
        topt = torch.optim.SparseAdam([p], lr=1e-3)
        tgrads = [torch.sparse_coo_tensor(torch.from_numpy(r)[None], torch.from_numpy(v),
                                          (rows, cols), check_invariants=True).coalesce()
                  for r, v in grads]

        def torch_sparse():
            k = counter["k"] = counter["k"] + 1
            p.grad = tgrads[k % n_grads]
            topt.step()

        pd = torch.zeros(n, dtype=torch.float64, requires_grad=True)
        pd.grad = torch.from_numpy(g_dense)
        tdense = torch.optim.Adam([pd], lr=1e-3, fused=True)
        contenders["torch SparseAdam"] = torch_sparse
        contenders["torch Adam(fused=True), dense"] = tdense.step
    for fn in contenders.values():
        fn()
    rows_ = [_round(contenders, lambda fn: _timeit(fn, 20))
             for _ in range(max(5, rounds // 2))]
    med = _report(f"f. sparse adam steps, {rows} x {cols} parameters, {touched} rows "
                  "per step (time per step)", rows_, "us", 1e6,
                  baseline="numadam lazy")
    print(f"  catch-up / lazy: {_median_ratio(rows_, 'numadam catch-up', 'numadam lazy'):.2f}")
    return med


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", nargs="+", default=["a", "b", "c", "d", "e", "f"],
                        choices=["a", "b", "c", "d", "e", "f"])
    args = parser.parse_args(argv)
    import platform

    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs")
    print(f"numadam {numadam.__version__}, numpy {np.__version__}, "
          f"python {platform.python_version()}")
    targets = {"a": target_a, "b": target_b, "c": target_c, "d": target_d,
               "e": target_e, "f": target_f}
    for key in args.only:
        targets[key](args.rounds)


if __name__ == "__main__":
    main()
