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


class SparseForms:
    """One lazy adam step on the 100,000 x 100 table with the same gradient
    (1,000 whole rows) given by rows, by its 100,000 flat coordinates, and
    as a scipy.sparse CSR table; target: coordinates <= 1.5 x rows."""

    params = (["rows", "coordinates", "scipy table"],)
    param_names = ["form"]
    timeout = 300

    def setup(self, form):
        import scipy.sparse as sp

        rows, cols = 100_000, 100
        self.table = np.zeros((rows, cols))
        self.opt = numadam.Optimizer("adam", self.table, sparse="lazy")
        self.grads = []
        for r, values in embedding_gradients(rows, cols, count=4):
            if form == "rows":
                g = numadam.SparseGradient(r, values)
            elif form == "coordinates":
                g = numadam.SparseGradient((r[:, None] * cols + np.arange(cols)).ravel(),
                                           values.ravel())
            else:
                g = sp.csr_matrix((values.ravel(), np.tile(np.arange(cols), len(r)),
                                   _indptr(r, rows, cols)), shape=(rows, cols))
            self.grads.append(g)
        self.k = 0
        self.time_step(form)

    def time_step(self, form):
        self.k += 1
        self.opt.step(self.grads[self.k % len(self.grads)])


def _indptr(touched, rows, cols):
    """CSR row pointers of a table whose rows ``touched`` are full."""
    counts = np.zeros(rows, np.int64)
    counts[touched] = cols
    return np.r_[0, np.cumsum(counts)]


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
