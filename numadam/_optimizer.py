"""``numadam.Optimizer``: a method's update applied step by step, for loops
you write yourself. A front door over the engines of :mod:`numadam._engine`
and :mod:`numadam._device_engine`."""

from __future__ import annotations

import numpy as np

from ._arrays import host_array, is_device_array
from ._device_engine import DeviceEngine, as_numba, load_cuda
from ._engine import Engine, SparseSteps
from ._objective import dense_gradient
from ._registry import METHODS, lookup
from ._sparse import Coalescer, raw_parts

__all__ = ["Optimizer"]

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Optimizer:
    """A numadam method applied step by step to one array, in place.

    This is the update alone, for loops you write yourself;
    :func:`numadam.minimize` drives the same engine with termination tests,
    callbacks and a result.

    Parameters
    ----------
    method : str
        A numadam method name (case-insensitive), e.g. ``"adam"``.
    x : ndarray or CUDA device array
        1-D, C-contiguous, writable float32 or float64 array. It is updated in
        place by :meth:`step`, in its own dtype. A device array (CuPy, a
        PyTorch CUDA tensor, Numba) keeps the state on the GPU too, and each
        step is one CUDA kernel (see :ref:`guide-gpu`); the gradients are then
        device arrays as well.
    bounds : tuple of two ndarrays, optional
        ``(lo, hi)`` arrays of ``x``'s shape; each step ends by projecting
        ``x`` onto them.
    state : OptimizerState, optional
        State to continue from, e.g. ``res.state`` of a result.
    parallel : bool, optional
        Force the parallel (True) or serial (False) kernel. By default the
        parallel one is used from a measured size on (about 4,000 elements
        for the adaptive methods in float64; see :ref:`performance`).
    sparse : {'lazy', 'catchup'}, optional
        Take sparse gradients (see :ref:`guide-sparse`): only the coordinates
        with a gradient are updated; 'catchup' first replays the skipped
        zero-gradient steps of each touched coordinate (and :meth:`flush`
        replays them for all).
    **options
        The method's hyperparameters (see :func:`numadam.show_options`).
        ``learning_rate`` may be a :mod:`numadam.schedules` schedule or a
        callable of the step number.

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
                 sparse=None, **options):
        kind, spec = lookup(method)
        if kind != "numadam":
            raise ValueError(f"method must be one of numadam's methods "
                             f"({', '.join(METHODS)}), got {method!r}")
        self.spec = spec
        self.method = spec.name
        self.x = x
        if is_device_array(x):
            self._init_device(spec, x, bounds, state, sparse, options)
            return
        self._device = None
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a NumPy array or a CUDA device array, got "
                            f"{type(x).__name__}")
        if x.dtype not in _DTYPES:
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
        mode = _check_sparse(spec, values, sparse)
        self.options = values
        self._engine = Engine(spec, x, values, lo, hi, state, parallel)
        self.aux = self._engine.aux
        self._sparse = None
        if mode is not None:
            self._sparse = SparseSteps(self._engine, mode, backup=False)
            self._coalesce = Coalescer(x.shape[0], x.dtype)

    def _init_device(self, spec, x, bounds, state, sparse, options):
        """An Optimizer whose x, gradients and state live on a GPU."""
        ck = load_cuda("an Optimizer on a CUDA device array")
        xd = as_numba(x, "x", ck)
        if xd.dtype not in _DTYPES:
            raise TypeError(f"x must be float32 or float64, got dtype {xd.dtype}")
        if xd.ndim != 1 or not xd.is_c_contiguous():
            raise ValueError("x must be a 1-D, C-contiguous device array (it is updated "
                             f"in place), got shape {tuple(xd.shape)}")
        values = spec.resolve(options)
        lo = hi = None
        n = xd.shape[0]
        if bounds is not None:
            lo, hi = (np.ascontiguousarray(host_array(b) if hasattr(b, "copy_to_host")
                                           else b, dtype=xd.dtype) for b in bounds)
            if lo.shape != (n,) or hi.shape != (n,):
                raise ValueError(f"bounds must be two arrays of shape {(n,)}, "
                                 f"got shapes {lo.shape} and {hi.shape}")
        mode = _check_sparse(spec, values, sparse)
        engine = DeviceEngine(spec, xd, values, lo, hi, state, ck, guarded=False)
        if mode is not None:
            engine.use_sparse(mode)
        self._device = engine
        self._sparse = None
        self.options = values
        self.aux = engine.aux

    # ------------------------------------------------------------------
    def step(self, g, learning_rate=None):
        """Apply one update with gradient ``g`` (1-D, the shape of ``x``).

        With ``sparse``, ``g`` is a :class:`~numadam.SparseGradient`, a
        scipy.sparse row or a tuple ``(indices, values)``. ``learning_rate``
        overrides the rate for this step only. The gradient is not checked for
        finiteness: this is the bare update.
        """
        if self._device is not None:
            self._device_step(g, learning_rate)
            return
        x = self.x
        if self._sparse is not None:
            parts = raw_parts(g, x.shape[0], x.dtype)
            if parts is None:
                raise TypeError("this Optimizer takes sparse gradients: a "
                                "SparseGradient, a scipy.sparse row or (indices, values)")
            g = self._coalesce(*parts)
        elif type(g) is not np.ndarray or g.dtype is not x.dtype or g.shape != x.shape:
            g = dense_gradient(g, x.shape, x.dtype, "the gradient must be")
        e = self._engine
        lr = e.rate(learning_rate)
        if self._sparse is not None:
            self._sparse.step(g, lr)
        else:
            kernel = e.kernel if e._kernel_ready else e.dense_kernel()
            kernel(x, g, e.W, e.P, lr)

    def _device_step(self, g, learning_rate):
        e = self._device
        g = e.gradient(g, "the gradient must be a device array, like x", "the gradient")
        e.step(g, e.rate(learning_rate))

    def flush(self):
        """With ``sparse='catchup'``: bring every coordinate up to the last
        step, as if the skipped zero-gradient steps had been taken (x and the
        state change; a no-op otherwise). Call it before reading all of x."""
        if self._device is not None:
            if self._device.sparse is not None:
                self._device.sparse.flush()
        elif self._sparse is not None:
            self._sparse.flush()

    @property
    def parallel(self):
        """Whether the steps run the parallel (``prange``) CPU kernel (False
        for an Optimizer on a GPU)."""
        return self._device is None and self._engine.parallel

    @property
    def state(self):
        """A copy of the current :class:`OptimizerState`."""
        return self._state(copy=True)

    def _state(self, copy):
        engine = self._device if self._device is not None else self._engine
        return engine.state(copy)

    def __repr__(self):
        where = ", device='cuda'" if self._device is not None else ""
        return (f"Optimizer({self.method!r}, size={self.x.shape[0]}, "
                f"dtype={self.x.dtype}, step={int(self.aux[0])}{where})")


def _check_sparse(spec, values, sparse):
    """The Optimizer's sparse mode: 'lazy', 'catchup' or None."""
    if spec.sparse_mode(values, sparse) == "dense":
        raise ValueError("Optimizer(sparse='dense') is Optimizer(): pass the "
                         "gradient as an array (SparseGradient.todense)")
    return sparse
