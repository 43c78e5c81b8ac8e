"""Compilation and start-up, each measured in a fresh process."""

import subprocess
import sys
import time

_EMPTY_CACHE = (
    "import os, tempfile\n"
    "os.environ['NUMBA_CACHE_DIR'] = tempfile.mkdtemp(prefix='numadam-asv-')\n"
)

_SMALL_RUN = (
    "import numpy as np, numadam\n"
    "numadam.minimize(lambda x: float(x @ x), np.ones(3), jac=lambda x: 2 * x,\n"
    "                 options={'maxiter': 10})\n"
)


class Compile:
    """Compile times with an empty Numba cache (each in a new process)."""

    timeout = 600
    number = 1
    repeat = 3

    def timeraw_compile_adam_kernel(self):
        return ("numadam.Optimizer('adam', np.zeros(10)).step(np.zeros(10))",
                _EMPTY_CACHE + "import numpy as np, numadam")

    def timeraw_compile_adam_parallel_kernel(self):
        return ("numadam.Optimizer('adam', np.zeros(10), parallel=True)"
                ".step(np.zeros(10))",
                _EMPTY_CACHE + "import numpy as np, numadam")

    def timeraw_compile_minimize_python_loop(self):
        return _SMALL_RUN, _EMPTY_CACHE

    def timeraw_compile_compiled_loop(self):
        # the compiled loop closes over the objective: compiled in every process
        return ("numadam.minimize(rosen, np.array([-1.2, 1.0]), jac=rosen_der,\n"
                "                 options={'maxiter': 10})",
                "import numpy as np, numadam\n"
                "from numadam.problems import rosen, rosen_der\n"
                "rosen(np.zeros(2)); rosen_der(np.zeros(2))\n"
                "numadam.Optimizer('adam', np.zeros(2))")


class Startup:
    """A new process that imports numadam and runs a small minimize, with a
    warm Numba cache."""

    timeout = 300
    number = 1
    repeat = 5

    def setup(self):
        subprocess.run([sys.executable, "-c", _SMALL_RUN], check=True)

    def timeraw_import_and_small_minimize(self):
        return _SMALL_RUN

    def timeraw_import_numba_and_scipy_optimize(self):
        return "import numba, scipy.optimize"

    def track_startup_ratio(self):
        """Median of 5 interleaved pairs: (import numadam + small minimize) /
        (import numba, scipy.optimize), whole processes."""
        ratios = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", _SMALL_RUN], check=True)
            ours = time.perf_counter() - t
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import numba, scipy.optimize"],
                           check=True)
            base = time.perf_counter() - t
            ratios.append(ours / base)
        return sorted(ratios)[2]

    track_startup_ratio.unit = "ratio"
