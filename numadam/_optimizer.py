"""``numadam.Optimizer``: a method's update applied step by step, for loops
you write yourself. A front door over the engines of :mod:`numadam._engine`
and :mod:`numadam._device_engine`."""

from __future__ import annotations

import numpy as np

from ._arrays import host_array, is_device_array
from ._device_engine import DeviceEngine, as_numba, flat_values, load_cuda
from ._engine import Engine, SparseSteps
from ._kernels import cpu
from ._objective import dense_gradient
from ._options import RUN_OPTION_NAMES, translate_aliases, unknown_option_message
from ._registry import METHODS, lookup
from ._sparse import Coalescer, raw_parts

__all__ = ["Optimizer"]

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Optimizer:
    """A numadam method applied step by step to arrays, in place.

    This is the update alone, for loops you write yourself;
    :func:`numadam.minimize` drives the same engine with termination tests,
    callbacks and a result.

    Parameters
    ----------
    method : str
        A numadam method name (case-insensitive), e.g. ``"adam"``.
    x : ndarray or CUDA device array, or a list or tuple of them
        1-D, C-contiguous, writable float32 or float64 array. It is updated in
        place by :meth:`step`, in its own dtype. A device array (CuPy, a
        PyTorch CUDA tensor, Numba) keeps the state on the GPU too, and each
        step is one CUDA kernel (see :ref:`guide-gpu`); the gradients are then
        device arrays as well. Several arrays (a model's weights and biases,
        all on the host or all on the device) take the same method and
        options, each with its own state; :meth:`step` then takes a gradient
        for each, and ``clip_norm`` clips them together by their global norm.
    bounds : tuple of two ndarrays, optional
        ``(lo, hi)`` arrays of ``x``'s shape; each step ends by projecting
        ``x`` onto them. For several arrays, a list with such a pair (or
        None) for each.
    state : OptimizerState, optional
        State to continue from, e.g. ``res.state`` of a result. For several
        arrays, a list with a state (or None) for each, as :attr:`state`
        gives them.
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
        callable of the step number. ``clip_norm`` clips the gradient to that
        L2 norm first, over all the arrays of the Optimizer together (as
        ``torch.nn.utils.clip_grad_norm_(model.parameters())`` and
        ``optax.clip_by_global_norm`` over a whole tree do). torch.optim's
        ``lr`` and ``betas=(b1, b2)`` stand for ``learning_rate``, ``beta1``
        and ``beta2``; any other name the method does not take raises
        TypeError, with the closest valid names.

    Examples
    --------
    >>> import numpy as np, numadam
    >>> x = np.array([3.0, -2.0])
    >>> opt = numadam.Optimizer("adam", x, learning_rate=0.1)
    >>> for _ in range(300):
    ...     opt.step(2 * x)          # the gradient of sum(x**2)
    >>> bool(np.all(np.abs(x) < 1e-2)), opt.state.step
    (True, 300)

    Several arrays, clipped together to a global norm of 1:

    >>> w, b = np.ones(3), np.zeros(1)
    >>> opt = numadam.Optimizer("sgd", [w, b], learning_rate=0.1, clip_norm=1.0)
    >>> opt.step([np.full(3, 4.0), np.array([3.0])])   # norm sqrt(57)
    >>> bool(np.isclose(w[0], 1 - 0.1 * 4 / np.sqrt(57))), len(opt.state)
    (True, 2)
    """

    def __init__(self, method, x, *, bounds=None, state=None, parallel=None,
                 sparse=None, **options):
        kind, spec = lookup(method)
        if kind != "numadam":
            raise ValueError(f"method must be one of numadam's methods "
                             f"({', '.join(METHODS)}), got {method!r}")
        options = optimizer_options(spec, options)
        self.spec = spec
        self.method = spec.name
        self.x = x
        self._members = None
        if isinstance(x, (list, tuple)):
            bad = [a for a in x if not (isinstance(a, np.ndarray) or is_device_array(a))]
            if bad:
                raise TypeError(f"x must be a NumPy array or a CUDA device array, got "
                                f"{type(x).__name__} of {type(bad[0]).__name__} (several "
                                "arrays go in a list of arrays)")
            self._init_group(method, x, bounds, state, parallel, sparse, options)
            return
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

    def _init_group(self, method, xs, bounds, state, parallel, sparse, options):
        """An Optimizer of several arrays: one engine each, stepped together."""
        k = len(xs)
        if k == 0:
            raise ValueError("x must be an array or a non-empty list of arrays, got "
                             "an empty " + type(xs).__name__)
        self.spec.resolve(options)          # option errors first, named plainly
        bounds = _per_array(bounds, k, "bounds", "a (lo, hi) pair")
        states = _per_array(state, k, "state", "an OptimizerState")
        members = []
        for i, xi in enumerate(xs):
            try:
                members.append(Optimizer(method, xi, bounds=bounds[i], state=states[i],
                                         parallel=parallel, sparse=sparse, **options))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"x[{i}]: {exc}") from None
        on_device = {m._device is not None for m in members}
        if len(on_device) > 1:
            raise ValueError("the arrays of an Optimizer must all be on the host or all "
                             "on a CUDA device")
        self._members = members
        self._device = None
        self._sparse = None
        self.options = members[0].options
        self.aux = members[0].aux
        self._clip = self.options.get("clip_norm") is not None
        self._R = None
        if self._clip and on_device == {True}:
            from numba import cuda

            self._R = cuda.to_device(np.zeros(1))     # the sum over all arrays
            for m in members:
                m._device.grouped = True

    # ------------------------------------------------------------------
    def step(self, g, learning_rate=None):
        """Apply one update with gradient ``g`` (1-D, the shape of ``x``).

        With ``sparse``, ``g`` is a :class:`~numadam.SparseGradient`, a
        scipy.sparse row or a tuple ``(indices, values)``. For several
        arrays, ``g`` is a list or tuple with a gradient for each, all
        checked before any array changes. ``learning_rate`` overrides the rate
        for this step only. The rate (given, or a schedule's value) must be
        finite and >= 0, checked before anything moves. The gradient is not
        checked for finiteness: this is the bare update.
        """
        if self._members is not None:
            self._group_step(g, learning_rate)
            return
        if self._device is not None:
            self._apply(self._prepare(g), learning_rate)
            return
        x = self.x
        if self._sparse is not None or (type(g) is not np.ndarray or g.dtype is not x.dtype
                                        or g.shape != x.shape):
            self._apply(self._prepare(g), learning_rate)
            return
        e = self._engine
        kernel = e.kernel if e._kernel_ready else e.dense_kernel()
        kernel(x, g, e.W, e.P, e.rate(learning_rate))

    def _prepare(self, g):
        """The gradient checked (and coalesced when sparse) for the engine,
        before anything changes."""
        if self._device is not None:
            return self._device.gradient(g, "the gradient must be a device array, "
                                            "like x", "the gradient")
        x = self.x
        if self._sparse is not None:
            parts = raw_parts(g, x.shape[0], x.dtype)
            if parts is None:
                raise TypeError("this Optimizer takes sparse gradients: a "
                                "SparseGradient, a scipy.sparse row or (indices, values)")
            return self._coalesce(*parts)
        if type(g) is not np.ndarray or g.dtype is not x.dtype or g.shape != x.shape:
            g = dense_gradient(g, x.shape, x.dtype, "the gradient must be")
        return g

    def _apply(self, g, learning_rate):
        """One update with a gradient from :meth:`_prepare`."""
        if self._device is not None:
            e = self._device
            e.step(g, e.rate(learning_rate))
            return
        e = self._engine
        lr = e.rate(learning_rate)
        if self._sparse is not None:
            self._sparse.step(g, lr)
        else:
            kernel = e.kernel if e._kernel_ready else e.dense_kernel()
            kernel(self.x, g, e.W, e.P, lr)

    def _sum_squares(self, g):
        """``sum(g**2)`` in float64 of a gradient from :meth:`_prepare`, with
        the function the step kernels' first pass uses (host arrays)."""
        if self._sparse is not None:
            return cpu.sum_squares(g[1])
        return cpu.sum_squares_kernel(self._engine.parallel)(g)

    def _group_step(self, g, learning_rate):
        members = self._members
        k = len(members)
        if not isinstance(g, (list, tuple)):
            raise TypeError(f"the gradient of an Optimizer of {k} arrays must be a list "
                            f"or tuple of {k} gradients, got {type(g).__name__}")
        if len(g) != k:
            raise ValueError(f"the gradient of an Optimizer of {k} arrays must be a list "
                             f"or tuple of {k} gradients, got {len(g)}")
        prepared = []
        for i, (m, gi) in enumerate(zip(members, g)):
            try:
                prepared.append(m._prepare(gi))
            except (TypeError, ValueError, IndexError) as exc:
                raise type(exc)(f"gradient {i}: {exc}") from None
        if self._clip:
            if self._R is not None:
                # on the device: the sum over all arrays, then each factor
                for m, p in zip(members, prepared):
                    m._device.add_sum_squares(flat_values(p), self._R)
                for i, m in enumerate(members):
                    m._device.set_factor(self._R, 0, reset=i == k - 1)
            else:
                total = 0.0
                for m, p in zip(members, prepared):
                    total += m._sum_squares(p)
                for m in members:
                    m._engine.G[cpu.G_TOTAL] = total
        for m, p in zip(members, prepared):
            m._apply(p, learning_rate)

    def flush(self):
        """With ``sparse='catchup'``: bring every coordinate up to the last
        step, as if the skipped zero-gradient steps had been taken (x and the
        state change; a no-op otherwise). Call it before reading all of x."""
        if self._members is not None:
            for m in self._members:
                m.flush()
        elif self._device is not None:
            if self._device.sparse is not None:
                self._device.sparse.flush()
        elif self._sparse is not None:
            self._sparse.flush()

    @property
    def parallel(self):
        """Whether the steps run the parallel (``prange``) CPU kernel (False
        for an Optimizer on a GPU); for several arrays, a list."""
        if self._members is not None:
            return [m.parallel for m in self._members]
        return self._device is None and self._engine.parallel

    @property
    def state(self):
        """A copy of the current :class:`OptimizerState`; for several arrays,
        a list with the state of each."""
        return self._state(copy=True)

    def _state(self, copy):
        if self._members is not None:
            return [m._state(copy) for m in self._members]
        engine = self._device if self._device is not None else self._engine
        return engine.state(copy)

    def __repr__(self):
        if self._members is not None:
            where = ", device='cuda'" if self._members[0]._device is not None else ""
            sizes = ", ".join(str(m.x.shape[0]) for m in self._members)
            return (f"Optimizer({self.method!r}, sizes=[{sizes}], step={int(self.aux[0])}"
                    f"{where})")
        where = ", device='cuda'" if self._device is not None else ""
        return (f"Optimizer({self.method!r}, size={self.x.shape[0]}, "
                f"dtype={self.x.dtype}, step={int(self.aux[0])}{where})")


def _per_array(value, k, name, each):
    """``bounds`` or ``state`` of an Optimizer of ``k`` arrays: a list with
    one entry (or None) per array."""
    if value is None:
        return [None] * k
    if not isinstance(value, (list, tuple)) or len(value) != k or (
            name == "bounds" and k == 2 and len(value) == 2
            and all(isinstance(v, np.ndarray) for v in value)):
        raise ValueError(f"{name} of an Optimizer of {k} arrays must be a list with "
                         f"{each} or None for each array")
    return list(value)


def _check_sparse(spec, values, sparse):
    """The Optimizer's sparse mode: 'lazy', 'catchup' or None."""
    if spec.sparse_mode(values, sparse) == "dense":
        raise ValueError("Optimizer(sparse='dense') is Optimizer(): pass the "
                         "gradient as an array (SparseGradient.todense)")
    return sparse


def optimizer_options(spec, options):
    """The hyperparameters given to :class:`Optimizer`, with torch.optim's
    spellings translated (:func:`numadam._options.translate_aliases`);
    raises TypeError for a name the method does not take (run options such
    as ``maxiter`` belong to :func:`numadam.minimize`)."""
    valid = spec.option_names + tuple(n for n in spec.fixed if n not in spec.option_names)
    options = translate_aliases(options, valid, spec.name)
    unknown = [name for name in options if name not in valid]
    if unknown:
        msg = unknown_option_message(unknown, valid,
                                     lead=f"Optimizer({spec.name!r}) got unknown options")
        run = [name for name in unknown if name in RUN_OPTION_NAMES]
        if run:
            msg += (f"; {', '.join(map(repr, run))} "
                    f"{'is an option' if len(run) == 1 else 'are options'} of "
                    "numadam.minimize's runs, not of a step")
        raise TypeError(msg)
    return options
