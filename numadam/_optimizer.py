"""The stepping engine: a method's state and compiled kernel, bound to one array."""

from __future__ import annotations

import numpy as np

from ._kernels import cpu, preload
from ._registry import METHODS, lookup
from ._rules import NC
from ._state import OptimizerState

__all__ = ["Optimizer"]

_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32),
          np.dtype(np.float64): np.empty(0, np.float64)}


class Optimizer:
    """A numadam method applied step by step to one array, in place.

    This is the update alone, for loops you write yourself;
    :func:`numadam.minimize` drives the same engine with termination tests,
    callbacks and a result.

    Parameters
    ----------
    method : str
        A numadam method name (case-insensitive), e.g. ``"adam"``.
    x : ndarray
        1-D, C-contiguous, writable float32 or float64 array. It is updated in
        place by :meth:`step`, in its own dtype.
    bounds : tuple of two ndarrays, optional
        ``(lo, hi)`` arrays of ``x``'s shape; each step ends by projecting
        ``x`` onto them.
    state : OptimizerState, optional
        State to continue from, e.g. ``res.state`` of a result.
    parallel : bool, optional
        Force the parallel (True) or serial (False) kernel. By default the
        parallel one is used from a measured size on (about 4,000 elements
        for the adaptive methods in float64; see :ref:`performance`).
    **options
        The method's hyperparameters (see :func:`numadam.show_options`).

    Examples
    --------
    >>> import numpy as np, numadam
    >>> x = np.array([3.0, -2.0])
    >>> opt = numadam.Optimizer("adam", x, learning_rate=0.1)
    >>> for _ in range(300):
    ...     opt.step(2 * x)          # the gradient of sum(x**2)
    >>> bool(np.all(np.abs(x) < 1e-2)), opt.state.step
    (True, 300)
    """

    def __init__(self, method, x, *, bounds=None, state=None, parallel=None,
                 **options):
        kind, spec = lookup(method)
        if kind != "numadam":
            raise ValueError(f"method must be one of numadam's methods "
                             f"({', '.join(METHODS)}), got {method!r}")
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a NumPy array, got {type(x).__name__}")
        if x.dtype not in _EMPTY:
            raise TypeError(f"x must be float32 or float64, got dtype {x.dtype}")
        if x.ndim != 1 or not x.flags.c_contiguous or not x.flags.writeable:
            raise ValueError("x must be a 1-D, C-contiguous, writable array "
                             f"(it is updated in place), got shape {x.shape}")
        values = spec.resolve(options)
        lo = hi = None
        if bounds is not None:
            lo, hi = (np.ascontiguousarray(b, dtype=x.dtype) for b in bounds)
            if lo.shape != x.shape or hi.shape != x.shape:
                raise ValueError(f"bounds must be two arrays of shape {x.shape}, "
                                 f"got shapes {lo.shape} and {hi.shape}")
        self._setup(spec, x, values, lo, hi, state, parallel, backup=False)

    # ------------------------------------------------------------------
    @classmethod
    def _engine(cls, spec, x, values, lo, hi, state, parallel, backup):
        """Build an engine from already validated input (used by minimize)."""
        self = cls.__new__(cls)
        self._setup(spec, x, values, lo, hi, state, parallel, backup)
        return self

    def _setup(self, spec, x, values, lo, hi, state, parallel, backup):
        rule = spec.rule_impl()
        F = rule.flags(values)
        names = rule.slots(F)
        n = x.shape[0]
        dtype = x.dtype
        if state is not None:
            check_state(state, spec, F, n, dtype)
            S = state.S.copy()
            aux = state.aux.copy()
        else:
            S = np.zeros((len(names), n), dtype)
            init = rule.slot_init(values, F)
            if init is not None:
                for k, v in enumerate(init):
                    S[k].fill(v)
            aux = np.array([v for _, v in rule.aux], dtype=np.float64)

        self.spec = spec
        self.method = spec.name
        self.options = values
        self.x = x
        self.S = S
        self.aux = aux
        self.h = np.array([values[name] for name in rule.hyper], dtype=np.float64)
        self.learning_rate = values["learning_rate"]
        self.cbuf = np.zeros(NC, dtype)
        self._rule = rule
        self._names = names
        self._F = F
        bounded = lo is not None
        empty = _EMPTY[dtype]
        self.lo = lo if bounded else empty
        self.hi = hi if bounded else empty
        self.xprev = np.empty_like(x) if backup else empty
        self.parallel = cpu.use_parallel(n, parallel, rule.name, dtype)
        self.kernel = cpu.step_kernel(rule.name, F, self.parallel, bounded, backup)
        preload.load(self.kernel, x, x, S, self.h, aux, 1.0, self.cbuf, self.lo,
                     self.hi, self.xprev)

    # ------------------------------------------------------------------
    def step(self, g, learning_rate=None):
        """Apply one update with gradient ``g`` (1-D, the shape of ``x``).

        ``learning_rate`` overrides the rate for this step only. The
        gradient is not checked for finiteness: this is the bare update.
        """
        x = self.x
        if type(g) is not np.ndarray or g.dtype is not x.dtype or g.shape != x.shape:
            g = _as_gradient(g, x)
        lr = self.learning_rate if learning_rate is None else float(learning_rate)
        self.kernel(x, g, self.S, self.h, self.aux, lr, self.cbuf, self.lo,
                    self.hi, self.xprev)

    @property
    def state(self):
        """A copy of the current :class:`OptimizerState`."""
        return self._state(copy=True)

    def _state(self, copy):
        S, aux = (self.S.copy(), self.aux.copy()) if copy else (self.S, self.aux)
        return OptimizerState(self.method, self._rule.name, self._F,
                              self._names, S, aux)

    def __repr__(self):
        return (f"Optimizer({self.method!r}, size={self.x.shape[0]}, "
                f"dtype={self.x.dtype}, step={int(self.aux[0])})")


def check_state(state, spec, F, n, dtype):
    """Raise unless ``state`` can continue a run of ``spec`` with flags ``F``."""
    if not isinstance(state, OptimizerState):
        raise TypeError(f"options['state'] must be an OptimizerState (res.state), "
                        f"got {type(state).__name__}")
    if state.rule != spec.rule:
        raise ValueError(f"options['state'] comes from method {state.method!r} and "
                         f"cannot continue method {spec.name!r}")
    if state.F != tuple(F):
        mine = dict(zip(spec.rule_impl().flag_names, F))
        raise ValueError(f"options['state'] was made with {state.flags}, which does "
                         f"not match this run's {mine}")
    if state.size != n:
        raise ValueError(f"options['state'] holds {state.size} coordinates, "
                         f"but x0 has {n}")
    if state.dtype != dtype:
        raise ValueError(f"options['state'] is {state.dtype}, but x0 is {dtype}")


def _as_gradient(g, x):
    """Convert a gradient to a C-contiguous array of x's dtype and shape."""
    arr = np.asarray(g)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"the gradient must be a real array, got dtype {arr.dtype}")
    if arr.shape != x.shape:
        raise ValueError(f"the gradient must have shape {x.shape}, got shape "
                         f"{arr.shape}")
    return np.ascontiguousarray(arr, dtype=x.dtype)
