"""The Adam paper's experiments on data that installs with numadam's extras.

Two data sets and two models, in the spirit of Kingma & Ba (2014), section 6:

- :func:`digits`: scikit-learn's bundled 8x8 handwritten digits (1,797
  images, 10 classes), standardised, split into training and test sets;
- :func:`bag_of_words`: a generated sparse bag-of-words set (two classes,
  Zipf-distributed words, most of them rare), stored row by row in the
  "ELLPACK" layout: the word indices and values of each document, padded to
  the longest document, so that minibatches are plain row slices;
- :func:`logistic` (L2-regularised multiclass logistic regression) and
  :func:`mlp` (one hidden ReLU layer), each with ``@njit`` ``fg`` functions
  returning the loss and its gradient for the dense and the bag-of-words
  inputs.

The loss is the mean cross-entropy of the batch plus ``lam / 2 * ||W||^2``
over the weight matrices (biases are not penalised), which is scikit-learn's
``LogisticRegression`` objective divided by ``C * N`` when ``lam = 1 / (C N)``.
:func:`run_comparison` is what ``python -m numadam compare`` runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from numba import njit

from ._cache import disk_cache

__all__ = ["Data", "Model", "digits", "bag_of_words", "logistic", "mlp",
           "run_comparison", "sparse_comparison", "PAPER_SETTINGS"]

_JIT = dict(cache=disk_cache(), error_model="numpy", nogil=True)


@dataclass
class Data:
    """A classification data set: ``train`` and ``test`` are tuples of the
    input arrays followed by the integer labels."""

    name: str
    train: tuple
    test: tuple
    n_features: int
    n_classes: int
    sparse: bool


def digits(test_fraction=0.25, seed=0):
    """scikit-learn's digits, standardised with the training set's statistics."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - exercised without sklearn
        raise ImportError("the digits data needs scikit-learn: "
                          "pip install 'numadam[examples]'") from exc
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    mean = X[train].mean(axis=0)
    std = X[train].std(axis=0)
    std[std == 0] = 1.0
    Xs = (X - mean) / std
    return Data("digits", (np.ascontiguousarray(Xs[train]), y[train].astype(np.int64)),
                (np.ascontiguousarray(Xs[test]), y[test].astype(np.int64)),
                X.shape[1], 10, False)


def bag_of_words(n_docs=12_000, vocabulary=20_000, mean_length=40, max_words=64,
                 informative=1_000, test_fraction=0.2, seed=0):
    """A generated two-class bag-of-words set with mostly rare words.

    Word frequencies follow Zipf's law; ``informative`` words spread over
    the frequency ranks lean to one class. A document's length is Poisson;
    its features are ``log(1 + count)`` of its distinct words, normalised to
    unit length. Returned inputs are ``(idx, val)``: int32 and float64
    arrays of shape ``(n, max_words)``, padded with index 0 and value 0.
    """
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, vocabulary + 1)
    base = 1.0 / ranks
    base /= base.sum()
    lean = np.zeros(vocabulary)
    chosen = rng.choice(vocabulary, size=informative, replace=False)
    lean[chosen] = (rng.choice([-1.0, 1.0], size=informative)
                    * rng.uniform(0.3, 1.2, informative))
    probs = []
    for sign in (-1.0, 1.0):
        p = base * np.exp(sign * lean)
        probs.append(p / p.sum())
    labels = rng.integers(0, 2, size=n_docs)
    lengths = np.clip(rng.poisson(mean_length, size=n_docs), 5, None)
    idx = np.zeros((n_docs, max_words), np.int32)
    val = np.zeros((n_docs, max_words))
    for i in range(n_docs):
        words = rng.choice(vocabulary, size=lengths[i], p=probs[labels[i]])
        uniq, counts = np.unique(words, return_counts=True)
        if uniq.size > max_words:
            keep = np.argsort(-counts, kind="stable")[:max_words]
            uniq, counts = uniq[keep], counts[keep]
        v = np.log1p(counts)
        v /= np.linalg.norm(v)
        idx[i, :uniq.size] = uniq
        val[i, :uniq.size] = v
    n_test = int(round(test_fraction * n_docs))
    sl_te, sl_tr = slice(0, n_test), slice(n_test, None)
    return Data("bag-of-words", (idx[sl_tr], val[sl_tr], labels[sl_tr].astype(np.int64)),
                (idx[sl_te], val[sl_te], labels[sl_te].astype(np.int64)),
                vocabulary, 2, True)


# ------------------------------------------------------- softmax helpers --

@njit(**_JIT)
def _softmax_xent(Z, y, P):
    """Mean cross-entropy of logits ``Z`` (rows) for labels ``y``; writes the
    gradient of the mean loss with respect to ``Z`` into ``P``."""
    B, C = Z.shape
    total = 0.0
    for i in range(B):
        m = Z[i, 0]
        for c in range(1, C):
            if Z[i, c] > m:
                m = Z[i, c]
        s = 0.0
        for c in range(C):
            e = math.exp(Z[i, c] - m)
            P[i, c] = e
            s += e
        lse = m + math.log(s)
        total += lse - Z[i, y[i]]
        for c in range(C):
            P[i, c] = P[i, c] / s / B
        P[i, y[i]] -= 1.0 / B
    return total / B


@njit(**_JIT)
def _ell_matmul(idx, val, W, out):
    """``out = X @ W`` for X in the ELLPACK layout (idx, val)."""
    B, K = idx.shape
    out[:, :] = 0.0
    for i in range(B):
        for k in range(K):
            v = val[i, k]
            if v != 0.0:
                row = W[idx[i, k]]
                for c in range(W.shape[1]):
                    out[i, c] += v * row[c]


@njit(**_JIT)
def _ell_matmul_t(idx, val, D, out):
    """``out += X.T @ D`` for X in the ELLPACK layout."""
    B, K = idx.shape
    for i in range(B):
        for k in range(K):
            v = val[i, k]
            if v != 0.0:
                j = idx[i, k]
                for c in range(D.shape[1]):
                    out[j, c] += v * D[i, c]


# ---------------------------------------------------- logistic regression --

@njit(**_JIT)
def logistic_fg(w, X, y, lam, C):
    """Loss and gradient of L2-regularised softmax regression, dense X."""
    d = X.shape[1]
    W = w[:d * C].reshape((d, C))
    b = w[d * C:]
    Z = X @ W + b
    P = np.empty_like(Z)
    loss = _softmax_xent(Z, y, P) + 0.5 * lam * np.sum(W * W)
    g = np.empty_like(w)
    gW = g[:d * C].reshape((d, C))
    gW[:, :] = X.T @ P + lam * W
    g[d * C:] = P.sum(axis=0)
    return loss, g


@njit(**_JIT)
def logistic_ell_fg(w, idx, val, y, lam, C, d):
    """Loss and gradient of L2-regularised softmax regression, ELLPACK X."""
    W = w[:d * C].reshape((d, C))
    b = w[d * C:]
    Z = np.empty((idx.shape[0], C))
    _ell_matmul(idx, val, W, Z)
    Z += b
    P = np.empty_like(Z)
    loss = _softmax_xent(Z, y, P) + 0.5 * lam * np.sum(W * W)
    g = np.empty_like(w)
    gW = g[:d * C].reshape((d, C))
    gW[:, :] = lam * W
    _ell_matmul_t(idx, val, P, gW)
    g[d * C:] = P.sum(axis=0)
    return loss, g


@njit(**_JIT)
def logistic_ell_sparse_fg(w, idx, val, y, C, d):
    """Unregularised softmax regression on ELLPACK rows, with a sparse
    gradient: ``(loss, (rows, values))``, the rows of the words in the batch
    (repeated words repeat: minimize sums them) and the bias as row ``d``;
    ``w`` holds ``d + 1`` rows of ``C`` values."""
    B, K = idx.shape
    Z = np.zeros((B, C))
    for i in range(B):
        for k in range(K):
            v = val[i, k]
            if v != 0.0:
                for c in range(C):
                    Z[i, c] += v * w[idx[i, k] * C + c]
        for c in range(C):
            Z[i, c] += w[d * C + c]
    P = np.empty_like(Z)
    loss = _softmax_xent(Z, y, P)
    rows = np.empty(B * K + 1, np.int64)
    vals = np.zeros((B * K + 1, C))
    m = 0
    for i in range(B):
        for k in range(K):
            v = val[i, k]
            if v != 0.0:
                rows[m] = idx[i, k]
                for c in range(C):
                    vals[m, c] = v * P[i, c]
                m += 1
    rows[m] = d
    for i in range(B):
        for c in range(C):
            vals[m, c] += P[i, c]
    m += 1
    return loss, (rows[:m], vals[:m])


def sparse_comparison(epochs=20, batch_size=128, seed=0, method="adam",
                      learning_rate=1e-2, out=None, data=None):
    """Train logistic regression on the bag-of-words set with sparse
    gradients in each mode; return ``{mode: training loss per epoch}`` (the
    loss of the full data, after every epoch) and draw them to ``out``."""
    from . import minimize

    data = bag_of_words(seed=seed) if data is None else data
    idx, val, y = data.train
    C, d = data.n_classes, data.n_features
    args = (idx, val, y, C, d)
    n = (d + 1) * C
    per_epoch = -(-idx.shape[0] // batch_size)
    curves = {}
    for mode in ("dense", "lazy", "catchup"):
        losses = [logistic_ell_sparse_fg(_readonly(np.zeros(n)), *args)[0]]

        def record(intermediate_result):
            losses.append(logistic_ell_sparse_fg(_readonly(intermediate_result.x),
                                                 *args)[0])

        res = minimize(logistic_ell_sparse_fg, np.zeros(n), args=args, jac=True,
                       method=method, callback=record,
                       options={"sparse": mode, "batch_size": batch_size,
                                "epochs": epochs, "seed": seed, "gtol": 0.0,
                                "learning_rate": learning_rate,
                                "callback_every": per_epoch, "compiled": False})
        losses[-1] = float(res.fun)      # catch-up: after the final flush
        curves[mode] = np.array(losses)
    if out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        for mode, loss in curves.items():
            ax.plot(np.arange(len(loss)), loss, label=mode, lw=1.6)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.set_title(f"{method}, sparse gradients: bag-of-words logistic regression",
                     fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out, dpi=120)
        plt.close(fig)
    return curves


# ------------------------------------------------------------------ MLP --

@njit(**_JIT)
def _mlp_tail(A1, y, w, off, lam, Hn, C, W1sq):
    """The shared part of the MLP: ReLU, output layer, loss, backward to A1."""
    W2 = w[off:off + Hn * C].reshape((Hn, C))
    b2 = w[off + Hn * C:]
    Hh = np.maximum(A1, 0.0)
    Z = Hh @ W2 + b2
    P = np.empty_like(Z)
    loss = _softmax_xent(Z, y, P) + 0.5 * lam * (W1sq + np.sum(W2 * W2))
    gW2 = Hh.T @ P + lam * W2
    gb2 = P.sum(axis=0)
    dA1 = (P @ W2.T) * (A1 > 0.0)
    return loss, gW2, gb2, dA1


@njit(**_JIT)
def mlp_fg(w, X, y, lam, Hn, C):
    """Loss and gradient of a one-hidden-layer ReLU network, dense X."""
    d = X.shape[1]
    W1 = w[:d * Hn].reshape((d, Hn))
    b1 = w[d * Hn:d * Hn + Hn]
    off = d * Hn + Hn
    A1 = X @ W1 + b1
    loss, gW2, gb2, dA1 = _mlp_tail(A1, y, w, off, lam, Hn, C, np.sum(W1 * W1))
    g = np.empty_like(w)
    g[:d * Hn].reshape((d, Hn))[:, :] = X.T @ dA1 + lam * W1
    g[d * Hn:off] = dA1.sum(axis=0)
    g[off:off + Hn * C].reshape((Hn, C))[:, :] = gW2
    g[off + Hn * C:] = gb2
    return loss, g


@njit(**_JIT)
def mlp_ell_fg(w, idx, val, y, lam, Hn, C, d):
    """Loss and gradient of a one-hidden-layer ReLU network, ELLPACK X."""
    W1 = w[:d * Hn].reshape((d, Hn))
    b1 = w[d * Hn:d * Hn + Hn]
    off = d * Hn + Hn
    A1 = np.empty((idx.shape[0], Hn))
    _ell_matmul(idx, val, W1, A1)
    A1 += b1
    loss, gW2, gb2, dA1 = _mlp_tail(A1, y, w, off, lam, Hn, C, np.sum(W1 * W1))
    g = np.empty_like(w)
    gW1 = g[:d * Hn].reshape((d, Hn))
    gW1[:, :] = lam * W1
    _ell_matmul_t(idx, val, dA1, gW1)
    g[d * Hn:off] = dA1.sum(axis=0)
    g[off:off + Hn * C].reshape((Hn, C))[:, :] = gW2
    g[off + Hn * C:] = gb2
    return loss, g


# --------------------------------------------------------------- models --

def _readonly(w):
    """A read-only view of ``w``: the models are then called with the array
    type ``minimize`` passes, and compiled for one type of parameters."""
    v = np.asarray(w).view()
    v.flags.writeable = False
    return v


@dataclass
class Model:
    """A model bound to a data set: ``fg(w, *args)`` for ``jac=True``."""

    name: str
    fg: object
    args: tuple          # the training arguments, batch arrays first
    test_args: tuple
    n_params: int
    x0: np.ndarray
    predict: object

    def loss(self, w):
        return self.fg(_readonly(w), *self.args)[0]

    def accuracy(self, w):
        inputs, labels = self.test_args[:-1], self.test_args[-1]
        return float(np.mean(self.predict(w, *inputs) == labels))


def logistic(data, lam=None, C=1.0):
    """L2-regularised softmax regression on ``data``; ``lam`` defaults to
    ``1 / (C * n_train)``, scikit-learn's ``LogisticRegression(C=C)``."""
    n = data.train[-1].shape[0]
    lam = 1.0 / (C * n) if lam is None else lam
    d, k = data.n_features, data.n_classes
    n_params = d * k + k
    if data.sparse:
        args = data.train + (lam, k, d)
        test = data.test

        def predict(w, idx, val):
            Z = np.empty((idx.shape[0], k))
            _ell_matmul(idx, val, w[:d * k].reshape(d, k), Z)
            return np.argmax(Z + w[d * k:], axis=1)
        fg = logistic_ell_fg
    else:
        args = data.train + (lam, k)
        test = data.test

        def predict(w, X):
            return np.argmax(X @ w[:d * k].reshape(d, k) + w[d * k:], axis=1)
        fg = logistic_fg
    return Model(f"{data.name} logistic regression", fg, args, test, n_params,
                 np.zeros(n_params), predict)


def mlp(data, hidden=64, lam=1e-4, seed=0):
    """A one-hidden-layer ReLU network (He-initialised) on ``data``."""
    d, k = data.n_features, data.n_classes
    n_params = d * hidden + hidden + hidden * k + k
    rng = np.random.default_rng(seed)
    fan_in = 1.0 if data.sparse else d
    x0 = np.concatenate([
        rng.normal(0.0, math.sqrt(2.0 / fan_in), d * hidden), np.zeros(hidden),
        rng.normal(0.0, math.sqrt(2.0 / hidden), hidden * k), np.zeros(k)])
    off = d * hidden + hidden

    def tail(w, A1):
        H = np.maximum(A1 + w[d * hidden:off], 0.0)
        return np.argmax(H @ w[off:off + hidden * k].reshape(hidden, k)
                         + w[off + hidden * k:], axis=1)

    if data.sparse:
        args = data.train + (lam, hidden, k, d)

        def predict(w, idx, val):
            A1 = np.empty((idx.shape[0], hidden))
            _ell_matmul(idx, val, w[:d * hidden].reshape(d, hidden), A1)
            return tail(w, A1)
        fg = mlp_ell_fg
    else:
        args = data.train + (lam, hidden, k)

        def predict(w, X):
            return tail(w, X @ w[:d * hidden].reshape(d, hidden))
        fg = mlp_fg
    return Model(f"{data.name} MLP", fg, args, data.test, n_params, x0, predict)


# ----------------------------------------------------------- comparison --

#: The methods and settings of the comparison: the paper's four, with the
#: rate that did best over {1e-3, 3e-3, ..., 0.3} on these problems after 30
#: epochs (as the paper chose rates by a search).
PAPER_SETTINGS = {
    "adam": {"learning_rate": 1e-2},
    "adagrad": {"learning_rate": 0.1},
    "rmsprop": {"learning_rate": 3e-3},
    "sgd": {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True},
}

PROBLEMS = {
    "digits-logistic": lambda seed: logistic(digits(seed=seed)),
    "digits-mlp": lambda seed: mlp(digits(seed=seed), seed=seed),
    "bow-logistic": lambda seed: logistic(bag_of_words(seed=seed), C=10.0),
    "bow-mlp": lambda seed: mlp(bag_of_words(seed=seed), hidden=32, seed=seed),
}


def run_comparison(problems=("digits-logistic", "digits-mlp", "bow-logistic"),
                   methods=("adam", "adagrad", "rmsprop", "sgd"), epochs=30,
                   batch_size=128, seed=0, out=None, progress=False, compiled=False):
    """Train every model with every method; return the rows and the curves.

    Each run uses minibatches of ``batch_size`` drawn by shuffled epochs from
    ``seed``, and records the full training loss after every epoch (from a
    callback every epoch). Returns ``(rows, curves)``; with ``out`` a PNG
    path, also draws the convergence plot there (needs matplotlib).

    The runs use the Python-driven loop unless ``compiled``: the models'
    gradients cost tens of microseconds to milliseconds per batch, so the
    loop's own cost hardly shows, and the compiled loop would first spend
    seconds compiling per model and method.
    """
    from . import minimize

    rows = []
    curves = {}
    for pname in problems:
        model = PROBLEMS[pname](seed)
        n = model.args[0].shape[0]
        per_epoch = -(-n // batch_size)
        for method in methods:
            losses = [model.loss(model.x0)]
            spent = [0.0]

            def record(intermediate_result):
                t0 = time.perf_counter()
                losses.append(model.loss(intermediate_result.x))
                spent[0] += time.perf_counter() - t0

            options = dict(PAPER_SETTINGS[method], batch_size=batch_size, seed=seed,
                           gtol=0.0, compiled=compiled)
            # a one-step run first: the time per epoch leaves compilation out
            minimize(model.fg, model.x0, args=model.args, jac=True, method=method,
                     options=dict(options, maxiter=1))
            start = time.perf_counter()
            res = minimize(model.fg, model.x0, args=model.args, jac=True,
                           method=method, callback=record,
                           options=dict(options, epochs=epochs,
                                        callback_every=per_epoch, disp=progress))
            elapsed = time.perf_counter() - start - spent[0]
            rows.append(dict(problem=model.name, method=method,
                             train_loss=float(res.fun),
                             test_accuracy=model.accuracy(res.x),
                             ms_per_epoch=1e3 * elapsed / epochs))
            curves[model.name, method] = np.array(losses)
    if out:
        plot_curves(curves, out)
    return rows, curves


def plot_curves(curves, out):
    """Training loss per epoch, one panel per model, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(name for name, _ in curves))
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 3.6),
                             squeeze=False)
    for ax, name in zip(axes[0], models):
        for (mname, method), loss in curves.items():
            if mname == name:
                ax.semilogy(np.arange(len(loss)), loss, label=method, lw=1.6)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
