"""minimize's loops, and the quality figures that keep speed-ups honest."""

import numpy as np

import numadam
from numadam import problems

from .common import METHODS, rosen2, rosen2_der, rosen2_der_out

STEPS = 10_000


class CompiledLoop:
    """Rosenbrock n=2, @njit fun and jac: the whole loop compiled."""

    params = (["jac returns g", "jac_out"],)
    param_names = ["gradient"]

    def setup(self, gradient):
        self.x0 = np.array([-1.2, 1.0])
        self.jac = rosen2_der_out if gradient == "jac_out" else rosen2_der
        self.opts = {"maxiter": STEPS, "gtol": 0.0, "learning_rate": 1e-3,
                     "jac_out": gradient == "jac_out"}
        numadam.minimize(rosen2, self.x0, jac=self.jac, options=self.opts)

    def time_adam_10k_steps(self, gradient):
        numadam.minimize(rosen2, self.x0, jac=self.jac, options=self.opts)


class PythonLoop:
    """The Python-driven loop: Rosenbrock in NumPy, and the loop's own
    overhead (fun and jac return precomputed values)."""

    def setup(self):
        self.x0 = np.array([-1.2, 1.0])
        g0 = np.array([0.5, -0.25])
        self.const_fun = lambda x: 1.0
        self.const_jac = lambda x: g0
        self.opts = {"maxiter": STEPS, "gtol": 0.0, "learning_rate": 1e-3,
                     "compiled": False}
        numadam.minimize(rosen2, self.x0, jac=rosen2_der, options=self.opts)
        numadam.minimize(self.const_fun, self.x0, jac=self.const_jac, options=self.opts)

    def time_adam_10k_steps(self):
        numadam.minimize(rosen2, self.x0, jac=rosen2_der, options=self.opts)

    def time_overhead_10k_steps(self):
        numadam.minimize(self.const_fun, self.x0, jac=self.const_jac, options=self.opts)


class Quality:
    """Steps to converge and the final excess of f, per method, on the
    standard problems with the settings of numadam.problems.METHOD_SETTINGS."""

    params = (["rosenbrock", "quadratic"], METHODS)
    param_names = ["problem", "method"]
    timeout = 300

    def setup_cache(self):
        out = {}
        for name, prob in (("rosenbrock", problems.rosenbrock(2)),
                           ("quadratic", problems.quadratic(20, cond=100.0))):
            for method in METHODS:
                res = numadam.minimize(prob.fun, prob.x0, args=prob.args, method=method,
                                       jac=prob.jac,
                                       options=dict(problems.METHOD_SETTINGS[method],
                                                    maxiter=50_000, gtol=1e-6,
                                                    compiled=False))
                out[name, method] = (res.nit, res.fun - prob.fopt)
        return out

    def track_steps(self, out, problem, method):
        return out[problem, method][0]

    track_steps.unit = "steps"

    def track_final_f_excess(self, out, problem, method):
        return out[problem, method][1]

    track_final_f_excess.unit = "f - f*"


class MinibatchEpoch:
    """One epoch of minibatch adam on binary logistic regression, 200,000 x 100
    float64, batches of 256, @njit fun and jac: 781 steps and the final
    full-data evaluation of res.fun and res.jac (asv_bench/compare.py reports
    the time per step without it)."""

    params = (["compiled", "python"],)
    param_names = ["loop"]
    timeout = 600

    def setup(self, loop):
        from .common import logreg_data, logreg_functions

        self.X, self.y = logreg_data()
        self.loss, self.grad, _ = logreg_functions()
        self.opts = {"batch_size": 256, "seed": 0, "maxiter": 781, "gtol": 0.0,
                     "learning_rate": 1e-3, "compiled": loop == "compiled"}
        numadam.minimize(self.loss, np.zeros(100), args=(self.X, self.y),
                         jac=self.grad, options=self.opts)

    def time_epoch(self, loop):
        numadam.minimize(self.loss, np.zeros(100), args=(self.X, self.y),
                         jac=self.grad, options=self.opts)


class Gather:
    """What drawing a minibatch costs: 256 random rows of a 200,000 x 100
    float64 array, serial and parallel."""

    params = ([False, True],)
    param_names = ["parallel"]

    def setup(self, parallel):
        from numadam._kernels import cpu

        from .common import logreg_data

        self.X, _ = logreg_data()
        self.perm = np.random.default_rng(0).permutation(self.X.shape[0]).astype(np.int64)
        self.buf = np.empty((256, 100))
        self.gather = cpu.gather_kernel(2, parallel)
        self.gather(self.X, self.buf, self.perm, 0, 256)
        self.pos = 0

    def time_gather_256_rows(self, parallel):
        self.gather(self.X, self.buf, self.perm, self.pos, 256)
        self.pos = (self.pos + 256) % 199_680
