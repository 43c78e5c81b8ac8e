"""Standard test problems, shared by the tests, the benchmarks, the docs and the
command line.

Each objective is an ``@njit`` function, so it can be called from Python like
any function and also compiled into numadam's loops. A :class:`Problem`
bundles the objective with its gradient, a starting point, the minimiser and
the ``args`` it takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from numba import njit

from ._cache import disk_cache
from ._registry import METHODS

__all__ = ["Problem", "rosenbrock", "quadratic", "rosen", "rosen_der",
           "rosen_fg", "quad", "quad_der", "quad_fg", "METHOD_SETTINGS"]

_JIT = dict(cache=disk_cache(), error_model="numpy", nogil=True)


# ------------------------------------------------------------ Rosenbrock --

@njit(**_JIT)
def rosen(x):
    """The Rosenbrock function ``sum(100 (x[i+1] - x[i]**2)**2 + (1 - x[i])**2)``."""
    f = 0.0
    for i in range(x.shape[0] - 1):
        a = x[i + 1] - x[i] * x[i]
        b = 1.0 - x[i]
        f += 100.0 * a * a + b * b
    return f


@njit(**_JIT)
def rosen_der(x):
    """The gradient of :func:`rosen`, in the dtype of ``x``."""
    n = x.shape[0]
    g = np.zeros_like(x)
    for i in range(n - 1):
        a = x[i + 1] - x[i] * x[i]
        g[i] += -400.0 * x[i] * a - 2.0 * (1.0 - x[i])
        g[i + 1] += 200.0 * a
    return g


@njit(**_JIT)
def rosen_fg(x):
    """``(rosen(x), rosen_der(x))`` in one pass, for ``jac=True``."""
    n = x.shape[0]
    g = np.zeros_like(x)
    f = 0.0
    for i in range(n - 1):
        a = x[i + 1] - x[i] * x[i]
        b = 1.0 - x[i]
        f += 100.0 * a * a + b * b
        g[i] += -400.0 * x[i] * a - 2.0 * b
        g[i + 1] += 200.0 * a
    return f, g


# ------------------------------------------------------------- quadratic --

@njit(**_JIT)
def quad(x, A, b):
    """``0.5 x^T A x - b^T x``."""
    return 0.5 * (x @ (A @ x)) - b @ x


@njit(**_JIT)
def quad_der(x, A, b):
    """The gradient ``A x - b`` of :func:`quad`."""
    return A @ x - b


@njit(**_JIT)
def quad_fg(x, A, b):
    """``(quad(x, A, b), quad_der(x, A, b))``."""
    Ax = A @ x
    return 0.5 * (x @ Ax) - b @ x, Ax - b


# --------------------------------------------------------------- problems --

@dataclass(frozen=True)
class Problem:
    """An objective with its gradient, start, minimiser and extra arguments."""

    name: str
    fun: object
    jac: object
    fg: object
    x0: np.ndarray
    xopt: np.ndarray
    fopt: float
    args: tuple = field(default=())

    def astype(self, dtype):
        """The same problem with ``x0`` and array ``args`` in ``dtype``."""
        args = tuple(np.asarray(a, dtype) if isinstance(a, np.ndarray) else a
                     for a in self.args)
        return Problem(self.name, self.fun, self.jac, self.fg,
                       self.x0.astype(dtype), self.xopt, self.fopt, args)


def rosenbrock(n=2):
    """The n-dimensional Rosenbrock problem from ``(-1.2, 1, -1.2, 1, ...)``."""
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    x0 = np.tile([-1.2, 1.0], (n + 1) // 2)[:n].astype(np.float64)
    return Problem(f"rosenbrock{n}", rosen, rosen_der, rosen_fg, x0,
                   np.ones(n), 0.0)


def quadratic(n=20, cond=100.0, seed=0):
    """A convex quadratic ``0.5 x^T A x - b^T x`` with ``A`` of condition
    number ``cond`` in a random orthogonal basis, started at 0."""
    if n < 1 or not cond >= 1.0:
        raise ValueError(f"need n >= 1 and cond >= 1, got n={n}, cond={cond}")
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eig = np.geomspace(1.0, cond, n)
    A = (Q * eig) @ Q.T
    A = 0.5 * (A + A.T)
    xopt = rng.standard_normal(n)
    b = A @ xopt
    fopt = -0.5 * float(b @ xopt)
    return Problem(f"quadratic{n}", quad, quad_der, quad_fg, np.zeros(n), xopt,
                   fopt, (A, b))


#: Settings with which each method solves the standard problems: the
#: learning rate (and, for sgd and rmsprop, momentum), from each method's
#: declaration (``numadam.methods[name].demo``).
METHOD_SETTINGS = MappingProxyType({name: spec.demo for name, spec in METHODS.items()})
