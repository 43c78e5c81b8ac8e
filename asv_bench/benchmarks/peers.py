"""The same work done with the tools users would otherwise use.

Each peer benchmark raises NotImplementedError in setup, which asv reports
as skipped, when the peer is not installed. torch, jax and optax are never
numadam dependencies: ``pip install torch==2.13.0 jax optax``.
"""

import numpy as np

from .common import DTYPES, SIZES, arrays

ROSEN_STEPS = 100_000


class TorchAdamFused:
    """torch.optim.Adam(fused=True).step on the CPU."""

    params = (SIZES, DTYPES)
    param_names = ["n", "dtype"]

    def setup(self, n, dtype):
        try:
            import torch
        except ImportError:
            raise NotImplementedError("torch is not installed")
        x, g = arrays(n, dtype)
        self.p = torch.tensor(x, requires_grad=True)
        self.p.grad = torch.from_numpy(g)
        self.opt = torch.optim.Adam([self.p], lr=1e-9, fused=True)
        self.opt.step()

    def time_step(self, n, dtype):
        self.opt.step()


class TorchSparseAdam:
    """torch.optim.SparseAdam on an embedding-shaped problem: 100,000 x 100
    float64 parameters, 1,000 rows touched per step (the reference of
    sparse.SparseStep)."""

    def setup(self):
        try:
            import torch
        except ImportError:
            raise NotImplementedError("torch is not installed")
        from .common import embedding_gradients

        self.grads = [torch.sparse_coo_tensor(torch.from_numpy(r)[None],
                                              torch.from_numpy(v), (100_000, 100),
                                              check_invariants=True).coalesce()
                      for r, v in embedding_gradients()]
        self.p = torch.zeros((100_000, 100), dtype=torch.float64, requires_grad=True)
        self.opt = torch.optim.SparseAdam([self.p], lr=1e-3)
        self.k = 0
        self.time_step()

    def time_step(self):
        self.k += 1
        self.p.grad = self.grads[self.k % len(self.grads)]
        self.opt.step()


class OptaxRosenbrock:
    """optax.adam in jax.jit(jax.lax.fori_loop) with jax.grad, float64."""

    timeout = 300

    def setup(self):
        try:
            import jax
            import optax
        except ImportError:
            raise NotImplementedError("jax and optax are not installed")
        jax.config.update("jax_enable_x64", True)
        opt = optax.adam(1e-3)
        grad = jax.grad(lambda x: 100.0 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2)

        @jax.jit
        def run(x):
            def body(i, carry):
                x, s = carry
                u, s = opt.update(grad(x), s, x)
                return optax.apply_updates(x, u), s
            return jax.lax.fori_loop(0, ROSEN_STEPS, body, (x, opt.init(x)))

        self.run = run
        self.x0 = jax.numpy.array([-1.2, 1.0])
        self.block = jax.block_until_ready
        self.block(run(self.x0))

    def time_adam_100k_steps(self):
        self.block(self.run(self.x0))


class NumpyAdamLoop:
    """A hand-written NumPy Adam loop with Python fun and jac that return
    precomputed values: the reference for minimize's Python-loop overhead."""

    def setup(self):
        self.g0 = np.array([0.5, -0.25])

    def time_10k_steps(self):
        x = np.zeros(2)
        m = np.zeros(2)
        v = np.zeros(2)
        fun = lambda x: 1.0  # noqa: E731
        jac = lambda x: self.g0  # noqa: E731
        for t in range(1, 10_001):
            fun(x)
            g = jac(x)
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            x = x - 1e-3 / (1 - 0.9 ** t) * m / (np.sqrt(v) / np.sqrt(1 - 0.999 ** t) + 1e-8)


class OptaxMinibatchEpoch:
    """optax.adam in jax.jit(jax.lax.scan) over 781 minibatches of 256 rows of
    a 200,000 x 100 float64 logistic regression."""

    timeout = 600

    def setup(self):
        from .common import logreg_data, optax_logreg_epoch

        X, y = logreg_data()
        perm = np.random.default_rng(1).permutation(X.shape[0])[:781 * 256]
        try:
            self.run, self.w0 = optax_logreg_epoch(X, y, perm.reshape(781, 256))
        except ImportError:
            raise NotImplementedError("jax and optax are not installed")
        self.run(self.w0)

    def time_epoch(self):
        self.run(self.w0)


class TorchAdamManyArrays:
    """torch.optim.Adam(fused=True).step over the ten arrays of an MLP (the
    reference of many.ManyArrays): torch's multi-tensor kernel."""

    params = ([128, 512],)
    param_names = ["width"]

    def setup(self, width):
        try:
            import torch
        except ImportError:
            raise NotImplementedError("torch is not installed")
        from .common import mlp_arrays

        params, grads, _ = mlp_arrays(width)
        self.ps = [torch.tensor(p, requires_grad=True) for p in params]
        for p, g in zip(self.ps, grads):
            p.grad = torch.from_numpy(g)
        self.opt = torch.optim.Adam(self.ps, lr=1e-9, fused=True)
        self.opt.step()

    def time_step(self, width):
        self.opt.step()
