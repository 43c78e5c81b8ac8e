"""Time the first call of the compiled loop, with the kernels it calls
already compiled (as they are after any earlier run of the method, or from
Numba's disk cache).

    NUMBA_CACHE_DIR=$(mktemp -d) python asv_bench/compile_loop.py

The compiled loop calls the objective as a first-class function of its
signature, so it is compiled once per method, switches and signature and
kept in Numba's disk cache. Three figures per problem:

- first objective: the loop compiled (empty cache), plus the objective;
- another objective of the same signature, in the same process: only the
  objective compiles;
- the same in a new process with the loop in the disk cache
  (``--cached``, run by this script in a subprocess).
"""

import subprocess
import sys
import time

import numba

import numadam
from numadam.problems import quadratic, rosenbrock

PROBLEMS = (("adam", "rosenbrock", 2), ("nadam", "quadratic", 20))


def problem_of(name, n):
    return rosenbrock(n) if name == "rosenbrock" else quadratic(n)


def timed(problem, method, fun, jac, compiled=True):
    opts = dict(maxiter=3, xtol=1e-30, compiled=compiled)
    start = time.perf_counter()
    numadam.minimize(fun, problem.x0, args=problem.args, jac=jac,
                     method=method, options=opts)
    return time.perf_counter() - start


def fresh(f):
    """A new Numba function with f's code: an objective never seen before."""
    return numba.njit(f.py_func)


def main(cached):
    for method, name, n in PROBLEMS:
        problem = problem_of(name, n)
        # the Python loop first: it compiles the step, norm and change kernels
        timed(problem, method, problem.fun, problem.jac, compiled=False)
        if cached:
            seconds = timed(problem, method, fresh(problem.fun), fresh(problem.jac))
            print(f"new process, loop in the disk cache: {method} on {problem.name}: "
                  f"{seconds:.2f} s")
            continue
        first = timed(problem, method, problem.fun, problem.jac)
        other = timed(problem, method, fresh(problem.fun), fresh(problem.jac))
        print(f"first objective (loop compiled): {method} on {problem.name}: "
              f"{first:.2f} s")
        print(f"another objective, same process: {method} on {problem.name}: "
              f"{other:.2f} s")
    if not cached:
        subprocess.run([sys.executable, __file__, "--cached"], check=True)


if __name__ == "__main__":
    main("--cached" in sys.argv[1:])
