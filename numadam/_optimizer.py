"""The stepping engine: a method's state and compiled kernel, bound to one array."""

from __future__ import annotations

import numpy as np

from ._kernels import cpu, preload
from ._registry import METHODS, lookup
from ._rules import NC
from ._objective import dense_gradient
from ._sparse import raw_parts
from ._device import is_device_array
from ._state import OptimizerState, host_array

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
        self._device = None
        if is_device_array(x):
            self._init_device(spec, x, bounds, state, sparse, options)
            return
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
        self._setup(spec, x, values, lo, hi, state, parallel, backup=False)
        self._sparse = None
        if sparse is not None:
            from ._sparse import Coalescer, check_mode

            if check_mode(spec, values, sparse, bounds is not None, False) == "dense":
                raise ValueError("Optimizer(sparse='dense') is Optimizer(): pass the "
                                 "gradient as an array (SparseGradient.todense)")
            from ._loop import SparseSteps

            self._sparse = SparseSteps(self, sparse, backup=False)
            self._coalesce = Coalescer(x.shape[0], x.dtype)

    def _init_device(self, spec, x, bounds, state, sparse, options):
        """An Optimizer whose x, gradients and state live on a GPU."""
        from ._device import DeviceEngine, as_numba, load_cuda, to_host
        from ._sparse import check_mode

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
            lo, hi = (np.ascontiguousarray(to_host(b) if hasattr(b, "copy_to_host")
                                           else b, dtype=xd.dtype) for b in bounds)
            if lo.shape != (n,) or hi.shape != (n,):
                raise ValueError(f"bounds must be two arrays of shape {(n,)}, "
                                 f"got shapes {lo.shape} and {hi.shape}")
        if sparse is not None and check_mode(spec, values, sparse, bounds is not None,
                                             False) == "dense":
            raise ValueError("Optimizer(sparse='dense') is Optimizer(): pass the "
                             "gradient as an array")
        engine = DeviceEngine(spec, xd, values, lo, hi, state, ck, guarded=False)
        if sparse is not None:
            engine.use_sparse(sparse)
        self._device = engine
        self._sparse = None
        self.spec = spec
        self.method = spec.name
        self.options = values
        self.x = x
        self.aux = engine.aux
        self._schedule = engine.schedule

    # ------------------------------------------------------------------
    @classmethod
    def _engine(cls, spec, x, values, lo, hi, state, parallel, backup, AS=None):
        """Build an engine from already validated input (used by minimize).

        ``AS`` (the averaging scalars of :mod:`numadam._stochastic`) asks for
        an iterate average, kept with the state."""
        self = cls.__new__(cls)
        self._setup(spec, x, values, lo, hi, state, parallel, backup)
        self.A = None
        self.AS = np.zeros(5)
        if AS is not None:
            if state is not None and state.average is not None:
                if int(state.average_scalars[0]) != int(AS[0]):
                    raise ValueError("options['state'] holds an iterate average of "
                                     "another kind than option 'average' asks for")
                self.A = state.average.copy()
                self.AS = state.average_scalars.copy()
                self.AS[1:3] = AS[1:3]
            else:
                self.A = np.zeros_like(x)
                self.AS = np.array(AS, dtype=np.float64)
        return self

    def _setup(self, spec, x, values, lo, hi, state, parallel, backup):
        self._device = None
        rule = spec.rule_impl()
        F = rule.flags(values)
        names = rule.slots(F)
        n = x.shape[0]
        dtype = x.dtype
        bounded = lo is not None
        off, H, A = cpu.layout(rule.name, bounded, backup)
        if state is not None:
            check_state(state, spec, F, n, dtype)
        # W: [previous x], [lower, upper bound], state slots (see cpu.layout)
        W = np.zeros((off + len(names), n), dtype)
        P = np.zeros(H + A + NC, np.float64)
        P[:H] = [values[name] for name in rule.hyper]
        S = W[off:]
        aux = P[H:H + A]
        if state is not None:
            S[...] = host_array(state.S)
            aux[...] = state.aux
        else:
            init = rule.slot_init(values, F)
            if init is not None:
                for k, v in enumerate(init):
                    S[k].fill(v)
            aux[...] = [v for _, v in rule.aux]
        if bounded:
            W[int(backup)] = lo
            W[int(backup) + 1] = hi

        self.spec = spec
        self.method = spec.name
        self.options = values
        self.x = x
        self.W = W
        self.P = P
        self.S = S
        self.aux = aux
        self.learning_rate = values["learning_rate"]
        self.bounded = bounded
        self.xprev = W[0] if backup else None
        self._rule = rule
        self.rule_name = rule.name
        self._names = names
        self.F = F
        self.parallel = cpu.use_parallel(n, parallel, rule.name, dtype)
        self.kernel = cpu.step_kernel(rule.name, F, self.parallel, bounded, backup)
        self.A = None
        self.AS = None
        self._schedule = values.get("learning_rate_schedule")
        self._kernel_ready = False

    def dense_kernel(self):
        """The dense step kernel, made ready from Numba's on-disk cache on
        first use (:mod:`numadam._kernels.preload`). Runs that never take a
        dense step from Python (the compiled loop, sparse steps) skip the
        cache look-up, which costs more than a small compiled run."""
        if not self._kernel_ready:
            preload.load(self.kernel, self.x, self.x, self.W, self.P, 1.0)
            self._kernel_ready = True
        return self.kernel

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
        if learning_rate is not None:
            lr = float(learning_rate)
        elif self._schedule is not None:
            lr = float(self._schedule(int(self.aux[0]) + 1))
        else:
            lr = self.learning_rate
        if self._sparse is not None:
            self._sparse.step(g, lr)
        else:
            if not self._kernel_ready:
                self.dense_kernel()
            self.kernel(x, g, self.W, self.P, lr)

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
    def state(self):
        """A copy of the current :class:`OptimizerState`."""
        return self._state(copy=True)

    def _state(self, copy):
        if self._device is not None:
            return self._device.state(copy)
        S, aux = (self.S.copy(), self.aux.copy()) if copy else (self.S, self.aux)
        A = self.A
        AS = self.AS if A is not None else None
        if copy and A is not None:
            A, AS = A.copy(), AS.copy()
        return OptimizerState(self.method, self._rule.name, self.F,
                              self._names, S, aux, A, AS)

    def __repr__(self):
        where = ", device='cuda'" if self._device is not None else ""
        return (f"Optimizer({self.method!r}, size={self.x.shape[0]}, "
                f"dtype={self.x.dtype}, step={int(self.aux[0])}{where})")


def check_state(state, spec, F, n, dtype):
    """Raise unless ``state`` can continue a run of ``spec`` with flags ``F``.

    The state must come from the same rule and hold the slots this run needs
    (switches that change no slot, such as nesterov, may differ)."""
    if not isinstance(state, OptimizerState):
        raise TypeError(f"options['state'] must be an OptimizerState (res.state), "
                        f"got {type(state).__name__}")
    if state.rule != spec.rule:
        raise ValueError(f"options['state'] comes from method {state.method!r} and "
                         f"cannot continue method {spec.name!r}")
    if state.names != tuple(spec.rule_impl().slots(F)):
        mine = dict(zip(spec.rule_impl().flag_names, F))
        raise ValueError(f"options['state'] was made with {state.flags}, which does "
                         f"not match this run's {mine}: it holds {list(state.names)}, "
                         f"this run needs {list(spec.rule_impl().slots(F))}")
    scalars = [name for name, _ in spec.rule_impl().aux]
    aux = state.aux
    if not (isinstance(aux, np.ndarray) and aux.ndim == 1
            and aux.shape[0] == len(scalars) and aux.dtype == np.float64):
        got = (f"shape {aux.shape} and dtype {aux.dtype}" if isinstance(aux, np.ndarray)
               else type(aux).__name__)
        raise ValueError(f"options['state'] must hold the {len(scalars)} float64 running "
                         f"scalars of method {spec.name!r} ({', '.join(scalars)}) in "
                         f"its aux, got {got}; a state saved by an earlier version of "
                         f"numadam cannot continue a run")
    if state.size != n:
        raise ValueError(f"options['state'] holds {state.size} coordinates, "
                         f"but x0 has {n}")
    if state.dtype != dtype:
        raise ValueError(f"options['state'] is {state.dtype}, but x0 is {dtype}")
