"""Sparse steps on an embedding-shaped problem (100,000 x 100 float64,
1,000 rows touched per step), and the sparse-mode quality figures."""

import numpy as np

import numadam

from .common import embedding_gradients


class SparseStep:
    """One adam step with a sparse gradient, in each sparse mode (the dense
    mode densifies the gradient and runs the dense step)."""

    params = (["lazy", "catchup", "dense"],)
    param_names = ["mode"]
    timeout = 300

    def setup(self, mode):
        self.grads = embedding_gradients()
        n = 100_000 * 100
        self.x = np.zeros(n)
        if mode == "dense":
            self.opt = numadam.Optimizer("adam", self.x)
            self.dense = [numadam.SparseGradient(*g).todense(n) for g in self.grads[:2]]
        else:
            self.opt = numadam.Optimizer("adam", self.x, sparse=mode)
        self.mode = mode
        self.k = 0
        self.time_step(mode)

    def time_step(self, mode):
        self.k += 1
        if mode == "dense":
            self.opt.step(self.dense[self.k % 2])
        else:
            self.opt.step(self.grads[self.k % len(self.grads)])


class SparseQuality:
    """Final training loss of logistic regression on the bag-of-words set
    with sparse gradients, per mode, after 10 epochs of adam."""

    params = (["dense", "lazy", "catchup"],)
    param_names = ["mode"]
    timeout = 600

    def setup_cache(self):
        from numadam import experiments

        curves = experiments.sparse_comparison(epochs=10)
        return {mode: float(c[-1]) for mode, c in curves.items()}

    def track_final_loss(self, out, mode):
        return out[mode]

    track_final_loss.unit = "training loss"
