"""Helpers shared by the benchmark modules."""

import numpy as np
from numba import njit, prange, uint64

import numadam

#: Every method of the method table.
METHODS = list(numadam.methods)
SIZES = [1_000, 100_000, 10_000_000]
DTYPES = ["float64", "float32"]


@njit(parallel=True, cache=True)
def same_bytes(x, g, S):
    """Read x, g, m, v and write x, m, v, as an adam step does, with no
    arithmetic: the memory-traffic floor of the dense step."""
    for i in prange(x.shape[0]):
        a = x[i]
        b = g[i]
        c = S[0, i]
        S[0, i] = S[1, i]
        S[1, i] = c
        x[i] = b if a != a else a


@njit(parallel=True, cache=True)
def same_bytes_rows(x, idx, val, S):
    """Read the rows ``idx`` of x, m, v and the gradient ``val``, and write
    those rows of x, m, v, as a lazy sparse adam step does, with no
    arithmetic: the memory-traffic floor of the sparse step."""
    r = val.shape[1]
    for j in prange(idx.shape[0]):
        base = uint64(idx[j]) * uint64(r)
        for q in range(r):
            i = base + uint64(q)
            a = x[i]
            b = val[j, q]
            c = S[0, i]
            S[0, i] = S[1, i]
            S[1, i] = c
            x[i] = b if a != a else a


@njit(cache=True, error_model="numpy")
def rosen2(x):
    a = x[1] - x[0] * x[0]
    b = 1.0 - x[0]
    return 100.0 * a * a + b * b


@njit(cache=True, error_model="numpy")
def rosen2_der_out(x, out):
    a = x[1] - x[0] * x[0]
    out[0] = -400.0 * x[0] * a - 2.0 * (1.0 - x[0])
    out[1] = 200.0 * a


@njit(cache=True, error_model="numpy")
def rosen2_der(x):
    out = np.empty_like(x)
    rosen2_der_out(x, out)
    return out


@njit(cache=True, error_model="numpy")
def adam_rosen2_by_hand(x, steps, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """Adam on Rosenbrock n=2 as one writes it by hand in Numba: the
    gradient inline, ``beta**t`` by ``pow`` each step, torch.optim's order of
    operations, no checks. x is updated in place."""
    m = np.zeros(2)
    v = np.zeros(2)
    g = np.empty(2)
    for t in range(1, steps + 1):
        rosen2_der_out(x, g)
        bc1 = 1.0 - b1 ** t
        bc2 = 1.0 - b2 ** t
        for i in range(2):
            m[i] = b1 * m[i] + (1.0 - b1) * g[i]
            v[i] = b2 * v[i] + (1.0 - b2) * (g[i] * g[i])
            x[i] -= lr / bc1 * m[i] / (np.sqrt(v[i]) / np.sqrt(bc2) + eps)
    return x


@njit(cache=True, error_model="numpy")
def adam_rosen2_chain(x, steps, step_size, sqrt_bc2, b1=0.9, b2=0.999, eps=1e-8):
    """What no adam loop on Rosenbrock n=2 can go below: the dependency chain
    of a step (x, gradient, m and v, square root, division by sqrt(bc2),
    eps, division, x), with the per-step scalars frozen, no objective value
    and no checks. Steps are serial: each starts from the last one's x."""
    g = np.empty(2)
    m = np.zeros(2)
    v = np.zeros(2)
    for _ in range(steps):
        rosen2_der_out(x, g)
        for i in range(2):
            m[i] = b1 * m[i] + (1.0 - b1) * g[i]
            v[i] = b2 * v[i] + (1.0 - b2) * (g[i] * g[i])
            x[i] -= step_size * m[i] / (np.sqrt(v[i]) / sqrt_bc2 + eps)
    return x


def arrays(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(dtype)
    g = (rng.standard_normal(n) * 1e-3).astype(dtype)
    return x, g


def logreg_data(n=200_000, d=100, seed=0):
    """Binary classification data for the minibatch benchmarks."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal(d) / np.sqrt(d)
    y = (X @ w + 0.5 * rng.standard_normal(n) > 0).astype(np.float64)
    return X, y


@njit(cache=True, error_model="numpy", fastmath=True)
def _logreg_loss(w, X, y):
    s = 0.0
    for i in range(X.shape[0]):
        z = 0.0
        for j in range(X.shape[1]):
            z += X[i, j] * w[j]
        s += max(z, 0.0) + np.log1p(np.exp(-abs(z))) - y[i] * z
    return s / X.shape[0]


@njit(cache=True, error_model="numpy", fastmath=True)
def _logreg_grad(w, X, y):
    g = np.zeros_like(w)
    for i in range(X.shape[0]):
        z = 0.0
        for j in range(X.shape[1]):
            z += X[i, j] * w[j]
        r = 1.0 / (1.0 + np.exp(-z)) - y[i]
        for j in range(X.shape[1]):
            g[j] += X[i, j] * r
    return g / X.shape[0]


@njit(cache=True, error_model="numpy", fastmath=True)
def _logreg_loss_grad(w, X, y):
    g = np.zeros_like(w)
    s = 0.0
    for i in range(X.shape[0]):
        z = 0.0
        for j in range(X.shape[1]):
            z += X[i, j] * w[j]
        s += max(z, 0.0) + np.log1p(np.exp(-abs(z))) - y[i] * z
        r = 1.0 / (1.0 + np.exp(-z)) - y[i]
        for j in range(X.shape[1]):
            g[j] += X[i, j] * r
    return s / X.shape[0], g / X.shape[0]


def logreg_functions():
    """Binary logistic regression with explicit loops, @njit: mean loss,
    gradient, and both at once (for ``jac=True``). fastmath lets the dot
    products vectorise; for a 256 x 100 batch they beat a BLAS call, whose
    threads wake up anew after every minibatch gather."""
    return _logreg_loss, _logreg_grad, _logreg_loss_grad


def optax_logreg_epoch(X, y, perm, lr=1e-3):
    """One epoch of optax.adam on the logistic regression of
    :func:`logreg_functions`, over the batches ``perm`` (steps x batch row
    numbers), as ``jax.jit(jax.lax.scan(...))``. Returns ``run(w0)`` (blocking)
    and ``w0``. Raises ImportError without jax and optax."""
    import jax
    import optax

    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    jX, jy, jperm = jnp.asarray(X), jnp.asarray(y), jnp.asarray(perm)
    opt = optax.adam(lr)

    def loss(w, xb, yb):
        z = xb @ w
        return jnp.mean(jnp.logaddexp(0.0, z) - yb * z)

    grad = jax.grad(loss)

    @jax.jit
    def epoch(w):
        def body(carry, idx):
            w, s = carry
            u, s = opt.update(grad(w, jX[idx], jy[idx]), s, w)
            return (optax.apply_updates(w, u), s), None
        return jax.lax.scan(body, (w, opt.init(w)), jperm)[0]

    return (lambda w: jax.block_until_ready(epoch(w))), jnp.zeros(X.shape[1])


def embedding_gradients(rows=100_000, cols=100, touched=1_000, count=20, seed=0):
    """Sparse gradients of an embedding table: ``count`` pairs (sorted row
    numbers, values of shape (touched, cols))."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        r = np.sort(rng.choice(rows, touched, replace=False)).astype(np.int64)
        out.append((r, rng.standard_normal((touched, cols))))
    return out


def mlp_shapes(width):
    """The ten arrays of an MLP on 64 inputs with three hidden layers of
    ``width`` units and ten outputs (four weight matrices, four biases) and
    a three-unit side head (a matrix and a bias)."""
    sizes = [64, width, width, width, 10]
    shapes = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        shapes += [(fan_in, fan_out), (fan_out,)]
    return shapes + [(width, 3), (3,)]


def mlp_arrays(width, dtype="float64", seed=0):
    """Parameters and gradients of :func:`mlp_shapes`, and one flat array
    and gradient of the same total size."""
    rng = np.random.default_rng(seed)
    shapes = mlp_shapes(width)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [(rng.standard_normal(s) * 1e-3).astype(dtype) for s in shapes]
    n = sum(p.size for p in params)
    return params, grads, arrays(n, dtype, seed)


def cpu_model():
    """The CPU's model name (Linux ``/proc/cpuinfo``), for the figures'
    headers."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"
