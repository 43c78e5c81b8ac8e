"""Command line: ``python -m numadam [demo | compare] [options]``.

``demo`` (the default) runs every method on the built-in problems
(Rosenbrock and an ill-conditioned convex quadratic) and prints a table of
the final objective, the steps taken and the time per run, with scipy's
L-BFGS-B alongside for reference.

``compare`` runs the Adam paper's comparison on real data (logistic
regression and a small MLP on scikit-learn's digits and on a generated
sparse bag-of-words set; adam, adagrad, rmsprop and sgd with Nesterov
momentum; minibatches of 128), prints a table of the final training loss,
the test accuracy and the time per epoch, and writes a convergence plot.
It needs the ``examples`` extra: ``pip install "numadam[examples]"``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from . import __version__, minimize, problems
from ._registry import METHODS

DESCRIPTION = """\
Adam and its relatives behind scipy's minimize, on Numba kernels.

commands:
  demo     (the default) every method on the built-in problems, with scipy's
           L-BFGS-B for reference
  compare  the Adam paper's comparison on real data (needs numadam[examples])
  sparse   the sparse modes (dense, lazy, catch-up) on bag-of-words logistic
           regression

Ctrl-C stops a run and ends the command with status 130."""


def _plot_possible(command, out):
    """Whether the plot ``out`` can be drawn (matplotlib importable), said
    before any training; True when no plot is asked for."""
    if not out:
        return True
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"python -m numadam {command}: error: --out {out!r} needs matplotlib, "
              "which is not installed: pip install \"numadam[examples]\", or pass "
              "--out '' for no plot", file=sys.stderr)
        return False
    return True


def _demo(args):
    dtype = np.dtype(args.dtype)
    probs = [problems.rosenbrock(2), problems.quadratic(args.n, cond=args.cond)]
    header = (f"{'problem':<12} {'method':<9} {'final f - f*':>13} {'steps':>7} "
              f"{'time [ms]':>10}  status")
    print(f"numadam demo: every method from the standard start, {dtype}, "
          f"gtol={args.gtol:g}, maxiter={args.maxiter}")
    print(header)
    print("-" * len(header))
    for prob in probs:
        pr = prob.astype(dtype)
        for method in METHODS:
            options = dict(problems.METHOD_SETTINGS[method], maxiter=args.maxiter,
                           gtol=args.gtol)
            # a one-step run first, so that the table shows run time, not the
            # one-off compilation (or cache load) of the kernels
            minimize(pr.fun, pr.x0, args=pr.args, method=method, jac=pr.jac,
                     options=dict(options, maxiter=1))
            start = time.perf_counter()
            res = minimize(pr.fun, pr.x0, args=pr.args, method=method, jac=pr.jac,
                           options=options)
            elapsed = time.perf_counter() - start
            outcome = ("converged" if res.success else
                       "maxiter" if res.status == 1 else res.message)
            print(f"{pr.name:<12} {method:<9} {res.fun - pr.fopt:>13.3e} "
                  f"{res.nit:>7d} {1e3 * elapsed:>10.2f}  {res.status} {outcome}")
        x0 = pr.x0.astype(np.float64)
        minimize(pr.fun, x0, args=pr.args, method="L-BFGS-B", jac=pr.jac)
        start = time.perf_counter()
        res = minimize(pr.fun, x0, args=pr.args, method="L-BFGS-B", jac=pr.jac)
        elapsed = time.perf_counter() - start
        print(f"{pr.name:<12} {'L-BFGS-B':<9} {res.fun - pr.fopt:>13.3e} {res.nit:>7d} "
              f"{1e3 * elapsed:>10.2f}  {res.status} (scipy, for reference)")
    return 0


def _compare(args):
    from . import experiments

    if not _plot_possible("compare", args.out):
        return 2
    print(f"numadam compare: {', '.join(args.methods)} on {', '.join(args.problem)}; "
          f"{args.epochs} epochs, minibatches of {args.batch_size}, seed {args.seed}")
    rows, _ = experiments.run_comparison(
        problems=args.problem, methods=args.methods, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed, out=args.out or None,
        compiled=args.compiled)
    header = (f"{'model':<34} {'method':<8} {'train loss':>11} {'test acc':>9} "
              f"{'ms/epoch':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['problem']:<34} {r['method']:<8} {r['train_loss']:>11.5f} "
              f"{r['test_accuracy']:>9.4f} {r['ms_per_epoch']:>9.2f}")
    if args.out:
        print(f"convergence plot written to {args.out}")
    return 0


def _sparse(args):
    from . import experiments

    if not _plot_possible("sparse", args.out):
        return 2
    print(f"numadam sparse: {args.method} on bag-of-words logistic regression with "
          f"sparse gradients, {args.epochs} epochs, minibatches of {args.batch_size}")
    curves = experiments.sparse_comparison(
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
        method=args.method, learning_rate=args.learning_rate, out=args.out or None)
    gap = curves["lazy"][-1] - curves["dense"][-1]
    print(f"{'mode':<8} {'final training loss':>20}")
    for mode, loss in curves.items():
        print(f"{mode:<8} {loss[-1]:>20.6f}")
    if gap != 0:
        closed = (curves["lazy"][-1] - curves["catchup"][-1]) / gap
        print(f"catch-up closes {100 * closed:.0f}% of the gap between lazy and dense")
    if args.out:
        print(f"plot written to {args.out}")
    return 0


def _number(kind, least, strict=False, what=None):
    """An argparse type: ``kind`` (int or float), finite, at least ``least``
    (above it with ``strict``), with an error naming what is allowed."""
    allowed = what or (f"{'an integer' if kind is int else 'a number'} "
                       f"{'>' if strict else '>='} {least}")

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
        if not math.isfinite(value) or value < least or (strict and value == least):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
        return value
    return parse


_COUNT = _number(int, 1)
_SEED = _number(int, 0)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m numadam", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"numadam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{demo,compare,sparse}")
    from .experiments import PAPER_SETTINGS, PROBLEMS

    cmp = sub.add_parser("compare", help="the Adam paper's comparison on real data")
    cmp.add_argument("--problem", nargs="+", choices=list(PROBLEMS),
                     default=["digits-logistic", "digits-mlp", "bow-logistic"],
                     help="models and data (default: digits-logistic digits-mlp "
                          "bow-logistic)")
    cmp.add_argument("--methods", nargs="+", choices=list(PAPER_SETTINGS),
                     default=list(PAPER_SETTINGS), help="methods (default: all four)")
    cmp.add_argument("--epochs", type=_COUNT, default=30, help="epochs (default 30)")
    cmp.add_argument("--batch-size", type=_COUNT, default=128,
                     help="minibatch size (default 128)")
    cmp.add_argument("--seed", type=_SEED, default=0, help="seed of the data and "
                     "the minibatches (default 0)")
    cmp.add_argument("--out", default="numadam-compare.png",
                     help="where to write the convergence plot (PNG; '' for none)")
    cmp.add_argument("--compiled", action="store_true",
                     help="run the compiled loop (compiles first, per model and "
                          "method)")
    spr = sub.add_parser("sparse", help="the sparse modes (dense, lazy, catch-up) "
                         "on bag-of-words logistic regression")
    spr.add_argument("--method", default="adam",
                     choices=[name for name, spec in METHODS.items()
                              if "lazy" in spec.sparse_modes],
                     help="method (default adam)")
    spr.add_argument("--learning-rate", type=_number(float, 0.0, strict=True),
                     default=1e-2, help="learning rate (default 0.01)")
    spr.add_argument("--epochs", type=_COUNT, default=20, help="epochs (default 20)")
    spr.add_argument("--batch-size", type=_COUNT, default=128,
                     help="minibatch size (default 128)")
    spr.add_argument("--seed", type=_SEED, default=0,
                     help="seed of the data and the minibatches (default 0)")
    spr.add_argument("--out", default="numadam-sparse.png",
                     help="where to write the plot (PNG; '' for none)")
    demo = sub.add_parser("demo", help="run every method on the built-in problems")
    for p in (parser, demo):
        p.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                       help="floating-point type of the runs (default float64)")
        p.add_argument("--maxiter", type=_SEED, default=50_000,
                       help="step budget per run (default 50000)")
        p.add_argument("--gtol", type=_number(float, 0.0), default=1e-6,
                       help="gradient tolerance (default 1e-6)")
        p.add_argument("--n", type=_COUNT, default=20,
                       help="size of the quadratic problem (default 20)")
        p.add_argument("--cond", type=_number(float, 1.0), default=100.0,
                       help="condition number of the quadratic (default 100)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = {"compare": _compare, "sparse": _sparse}.get(args.command, _demo)
    try:
        return command(args)
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
