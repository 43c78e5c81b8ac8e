"""Time the first call of the compiled loop for a new objective, with the
kernels it calls already compiled (as they are after any earlier run of the
method, or from Numba's disk cache).

    NUMBA_CACHE_DIR=$(mktemp -d) python asv_bench/compile_loop.py

The compiled loop closes over the user's ``@njit`` objective, so it is
compiled in every process; this is the cost a new objective pays.
"""

import time

import numadam
from numadam.problems import quadratic, rosenbrock


def first_call(problem, method):
    opts = dict(maxiter=3, xtol=1e-30)
    # the Python loop first: it compiles the step, norm and change kernels
    numadam.minimize(problem.fun, problem.x0, args=problem.args, jac=problem.jac,
                     method=method, options=dict(opts, compiled=False))
    start = time.perf_counter()
    numadam.minimize(problem.fun, problem.x0, args=problem.args, jac=problem.jac,
                     method=method, options=opts)
    return time.perf_counter() - start


def main():
    for problem, method in ((rosenbrock(2), "adam"), (quadratic(20), "nadam")):
        seconds = first_call(problem, method)
        print(f"compiled loop, first call: {method} on {problem.name}: {seconds:.2f} s")


if __name__ == "__main__":
    main()
