"""``numadam.Optimizer``: a method's update applied step by step, for loops
you write yourself. A front door over the engines of :mod:`numadam._engine`
and :mod:`numadam._device_engine`."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._arrays import host_array, is_device_array
from ._device_engine import DeviceEngine, as_numba, flat_values, load_cuda
from ._engine import Engine, GroupEngine, SparseSteps
from ._kernels import cpu
from ._objective import dense_gradient
from ._options import (RUN_OPTION_NAMES, TORCH_ALIASES, translate_aliases,
                       unknown_option_message)
from ._params import Params
from ._registry import METHODS, lookup
from ._sparse import Coalescer, as_rows, raw_parts
from ._state import OptimizerState, running_powers
from ._statedict import export_group, export_state, import_group, import_state
from .schedules import watches_loss

__all__ = ["Optimizer", "ParamGroup"]

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
    params : array, list, tuple or dict of arrays, or list of parameter groups
        The arrays to optimise, updated in place by :meth:`step`, each in its
        own dtype: C-contiguous, writable float32 or float64 arrays of any
        shape, or CUDA device arrays (CuPy, PyTorch CUDA tensors, Numba),
        whose state then stays on the GPU and whose steps are CUDA kernels
        (see :ref:`guide-gpu`). Several arrays (a model's weights and biases)
        come as a list or tuple, a dict, or torch-style parameter groups: a
        list of dicts, each with a ``"params"`` entry (an array, a list or a
        dict of arrays) and the group's own options over the Optimizer's
        (``learning_rate``/``lr``, ``weight_decay``, ``sparse``, ...). The
        host arrays of a dense group that share a dtype are stepped by one
        compiled call, with one step count (see :ref:`guide-training`).
    bounds : tuple of two arrays, optional
        ``(lo, hi)`` arrays of the array's shape; each step ends by
        projecting onto them. For several arrays, in the structure of
        ``params``, with such a pair (or None) for each.
    state : OptimizerState, optional
        State to continue from, e.g. ``res.state`` of a result; for several
        arrays, in the structure of ``params``, as :attr:`state` gives it.
        :meth:`load_state_dict` continues from a state dict instead.
    parallel : bool, optional
        Force the parallel (True) or serial (False) kernel. By default the
        serial one runs below twice the size from which the parallel one
        wins on an idle machine (so below about 8,000 elements for the
        adaptive methods in float64, counted over a group's arrays), and
        above it the faster of the two as measured in the first steps and
        again when the machine's load changes (see :ref:`performance`); one
        usable CPU means serial.
    sparse : {'lazy', 'catchup'}, optional
        Take sparse gradients (see :ref:`guide-sparse`): only the coordinates
        with a gradient are updated; 'catchup' first replays the skipped
        zero-gradient steps of each touched coordinate (and :meth:`flush`
        replays them for all). A parameter group may set its own.
    **options
        The method's hyperparameters (see :func:`numadam.show_options`).
        ``learning_rate`` may be a :mod:`numadam.schedules` schedule or a
        callable of the step number. ``clip_norm`` clips the gradient to that
        L2 norm first, over all the arrays of the Optimizer together (as
        ``torch.nn.utils.clip_grad_norm_(model.parameters())`` and
        ``optax.clip_by_global_norm`` over a whole tree do). ``maximize``
        ascends, as torch.optim's does. torch.optim's ``lr`` and
        ``betas=(b1, b2)`` stand for ``learning_rate``, ``beta1`` and
        ``beta2``; any other name the method does not take raises TypeError,
        with the closest valid names.

    Attributes
    ----------
    param_groups : list of ParamGroup
        One per parameter group (one for an Optimizer without groups): its
        ``"params"`` and hyperparameters, which may be changed between steps
        as in torch.optim (``opt.param_groups[0]["lr"] = 1e-4``).
    options : dict
        The first group's hyperparameters, with ``clip_norm``.

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

    >>> w, b = np.ones((3, 2)), np.zeros(2)
    >>> opt = numadam.Optimizer("sgd", {"w": w, "b": b}, lr=0.1, clip_norm=1.0)
    >>> opt.step({"w": np.full((3, 2), 4.0), "b": np.array([3.0, 0.0])})
    >>> bool(np.isclose(w[0, 0], 1 - 0.1 * 4 / np.sqrt(105))), list(opt.state)
    (True, ['w', 'b'])

    Two parameter groups, the biases without weight decay, and a lower
    learning rate later on:

    >>> W, c = np.ones((4, 3)), np.zeros(3)
    >>> opt = numadam.Optimizer("adamw", [{"params": [W], "weight_decay": 0.01},
    ...                                   {"params": [c], "weight_decay": 0.0}],
    ...                         lr=1e-3)
    >>> opt.step([[np.ones((4, 3))], [np.ones(3)]])
    >>> opt.param_groups[0]["lr"] = 1e-4
    >>> sorted(opt.state_dict()["state"][0])
    ['aux', 'exp_avg', 'exp_avg_sq', 'step']
    """

    def __init__(self, method, params, *, bounds=None, state=None, parallel=None,
                 sparse=None, **options):
        kind, spec = lookup(method)
        if kind != "numadam":
            raise ValueError(f"method must be one of numadam's methods "
                             f"({', '.join(METHODS)}), got {method!r}")
        options = optimizer_options(spec, options)
        self.spec = spec
        self.method = spec.name
        self._given = dict(bounds=bounds, parallel=parallel, sparse=sparse,
                           options=options)
        tree = Params(params)
        self._tree = tree
        self._units = None
        if tree.kind != "array":
            self.x = self.params = params
            self._init_many(params, tree, bounds, state, parallel, sparse, options)
            return
        self._init_single(params, spec.resolve(options), bounds, state, parallel,
                          sparse, "params")
        self.param_groups = [ParamGroup(self, 0, params, self.options, [self])]

    def _init_single(self, x, values, bounds, state, parallel, sparse, label):
        """An Optimizer of the one array ``x`` (``label`` names it)."""
        self.x = self.params = x
        self._j = 0
        if is_device_array(x):
            self._init_device(x, values, bounds, state, sparse, label)
            return
        self._device = None
        if x.dtype not in _DTYPES:
            raise TypeError(f"{label} must be float32 or float64, got dtype {x.dtype}")
        if not x.flags.c_contiguous or not x.flags.writeable:
            raise ValueError(f"{label} must be a C-contiguous, writable array (it is "
                             f"updated in place), got shape {x.shape} with strides "
                             f"{x.strides}" + ("" if x.flags.writeable else
                                               " that is read-only"))
        flat = x.reshape(-1)
        self._flat = flat
        lo = hi = None
        if bounds is not None:
            lo, hi = _bounds_pair(bounds, x, "bounds" if label == "params"
                                  else f"bounds of {label}")
        mode = _check_sparse(self.spec, values, sparse)
        self.options = values
        self._engine = Engine(self.spec, flat, values, lo, hi, state, parallel)
        self.aux = self._engine.aux
        self._sparse = None
        if mode is not None:
            self._sparse = SparseSteps(self._engine, mode, backup=False)
            self._coalesce = Coalescer(flat.shape[0], x.dtype, fixed=mode == "catchup")

    def _init_device(self, x, values, bounds, state, sparse, label):
        """An Optimizer whose x, gradients and state live on a GPU."""
        ck = load_cuda("an Optimizer on a CUDA device array")
        xd = as_numba(x, label, ck)
        if xd.dtype not in _DTYPES:
            raise TypeError(f"{label} must be float32 or float64, got dtype {xd.dtype}")
        if not xd.is_c_contiguous():
            raise ValueError(f"{label} must be a C-contiguous device array (it is "
                             f"updated in place), got shape {tuple(xd.shape)}")
        #: the array's own shape; the engine steps a 1-D view of it
        self._dshape = tuple(xd.shape)
        if xd.ndim != 1:
            xd = xd.reshape(xd.size)
        lo = hi = None
        n = xd.shape[0]
        if bounds is not None:
            lo, hi = (np.ascontiguousarray(host_array(b) if hasattr(b, "copy_to_host")
                                           else b, dtype=xd.dtype) for b in bounds)
            if lo.size != n or hi.size != n or lo.shape not in (self._dshape, (n,)) or \
                    hi.shape not in (self._dshape, (n,)):
                raise ValueError(f"bounds must be two arrays of shape {self._dshape}, "
                                 f"got shapes {lo.shape} and {hi.shape}")
            lo, hi = lo.reshape(n), hi.reshape(n)
        mode = _check_sparse(self.spec, values, sparse)
        engine = DeviceEngine(self.spec, xd, values, lo, hi, state, ck, guarded=False)
        if mode is not None:
            engine.use_sparse(mode)
        self._device = engine
        self._sparse = None
        self.options = values
        self.aux = engine.aux

    def _init_many(self, params, tree, bounds, state, parallel, sparse, options):
        """An Optimizer of several arrays: the host arrays of a dense group
        that share a dtype are stepped by one compiled call
        (:class:`~numadam._engine.GroupEngine`), any other array by an
        engine of its own."""
        spec = self.spec
        spec.resolve(options)               # the Optimizer's own option errors first
        k = len(tree)
        bounds = [None] * k if bounds is None else tree.flatten(bounds, "bounds", _is_pair)
        states = [None] * k if state is None else tree.flatten(
            state, "state", lambda v: isinstance(v, OptimizerState))
        settings = [_group_settings(spec, options, own, sparse, i, tree.kind)
                    for i, own in enumerate(tree.groups)]
        _check_distinct(tree)
        on_device = {is_device_array(a) for a in tree.leaves}
        if len(on_device) > 1:
            raise ValueError("the arrays of an Optimizer must all be on the host or all "
                             "on a CUDA device")
        fusable = not spec.rule_impl().reductions and on_device == {False}
        units = []
        self.param_groups = []
        for i, (values, mode) in enumerate(settings):
            first = len(units)
            members = [j for j in range(k) if tree.group[j] == i]
            buckets = {}
            if fusable and mode is None:
                for j in members:
                    x = tree.leaves[j]
                    if x.dtype in _DTYPES:
                        buckets.setdefault(x.dtype, []).append(j)
            fused = {j for js in buckets.values() if len(js) > 1 for j in js}
            for j in members:
                if j in fused:
                    js = buckets.pop(tree.leaves[j].dtype, None)
                    if js is not None:
                        units.append(_Fused(spec, tree, js, values, bounds, states,
                                            parallel))
                    continue
                unit = Optimizer.__new__(Optimizer)
                unit.spec, unit.method, unit._units = spec, spec.name, None
                try:
                    unit._init_single(tree.leaves[j], values, bounds[j], states[j],
                                      parallel, mode, tree.labels[j])
                except (TypeError, ValueError) as exc:
                    if tree.labels[j] in str(exc):
                        raise
                    raise type(exc)(f"{tree.labels[j]}: {exc}") from None
                unit._j = j
                unit._glabel = tree.label("gradient", j)
                units.append(unit)
            given = params[i]["params"] if tree.kind == "groups" else params
            self.param_groups.append(ParamGroup(self, i, given, values, units[first:]))
        self._units = units
        #: the engine of the one compiled call over all the arrays in order
        self._fused = (units[0].engine if len(units) == 1 and isinstance(units[0], _Fused)
                       and tree.kind == "list" else None)
        self._device = None
        self._sparse = None
        self.options = settings[0][0]
        self.aux = units[0].aux
        self._clip = self.options.get("clip_norm") is not None   # not a group's option
        self._R = None
        if self._clip and on_device == {True}:
            from numba import cuda

            self._R = cuda.to_device(np.zeros(1))     # the sum over all arrays
            for u in units:
                u._device.grouped = True

    # ------------------------------------------------------------------
    def step(self, g, learning_rate=None):
        """Apply one update with gradient ``g``, of the shape of the array.

        With ``sparse``, ``g`` is a :class:`~numadam.SparseGradient`, a
        scipy.sparse row or a tuple ``(indices, values)`` (an array of the
        parameter's shape is taken as a gradient over all its rows). For
        several arrays, ``g`` comes in the structure of ``params`` (a list
        or tuple, a dict with the same keys, a list with one entry per
        parameter group), all checked before any array changes.
        ``learning_rate`` overrides the rate for this step only, in every
        group. The rate (given, or a schedule's value) must be finite and
        >= 0, checked before anything moves. The gradient is not checked for
        finiteness: this is the bare update.
        """
        if self._units is not None:
            self._many_step(g, learning_rate)
            return
        if self._device is not None:
            self._apply(self._prepare(g), self._rate(learning_rate))
            return
        x = self.x
        if self._sparse is not None or (type(g) is not np.ndarray or g.dtype is not x.dtype
                                        or g.shape != x.shape):
            self._apply(self._prepare(g), self._rate(learning_rate))
            return
        e = self._engine
        kernel = e.kernel if e._kernel_ready else e.dense_kernel()
        if x.ndim != 1:
            g = g.reshape(-1)
        kernel(self._flat, g, e.W, e.P, e.rate(learning_rate))

    def _rate(self, learning_rate):
        """The checked learning rate of the next step."""
        return self._one_engine().rate(learning_rate)

    def _one_engine(self):
        """The engine of an Optimizer of one array: on the device or the host."""
        return self._device if self._device is not None else self._engine

    def _prepare(self, g, subject="the gradient"):
        """The gradient checked (and coalesced when sparse) for the engine,
        before anything changes; ``subject`` names it in messages."""
        if self._device is not None:
            if len(self._dshape) != 1 and self._device.sparse is None and \
                    is_device_array(g):
                gd = as_numba(g, subject, self._device.ck)
                if tuple(gd.shape) != self._dshape:
                    raise ValueError(f"{subject} must be a device array of shape "
                                     f"{self._dshape}, got shape {tuple(gd.shape)}")
                if gd.is_c_contiguous():
                    g = gd.reshape(gd.size)
            return self._device.gradient(g, "the gradient must be a device array, "
                                            "like the parameters", subject)
        x = self.x
        if self._sparse is not None:
            n = self._flat.shape[0]
            if isinstance(g, np.ndarray) and g.shape == x.shape:
                r = self._coalesce.r or (x.shape[-1] if x.ndim > 1 and x.shape[-1] else 1)
                g = (np.arange(n // r, dtype=np.int64), g.reshape(n // r, r))
            # lazy steps on a table: a gradient by coordinates that are whole
            # rows takes the row form (the same step, at the cost of rows)
            rows_of = x.shape[-1] if not self._coalesce.fixed and x.ndim > 1 else None
            parts = raw_parts(g, n, x.dtype, rows_of)
            if parts is None:
                raise TypeError("this Optimizer takes sparse gradients: a "
                                "SparseGradient, a scipy.sparse row or (indices, "
                                "values), or an array of the parameter's shape")
            if rows_of is not None:
                parts = as_rows(*parts, rows_of)
            return self._coalesce(*parts)
        if type(g) is not np.ndarray or g.dtype is not x.dtype or g.shape != x.shape:
            g = dense_gradient(g, x.shape, x.dtype, f"{subject} must be")
        return g.reshape(-1) if x.ndim != 1 else g

    def _apply(self, g, lr):
        """One update at rate ``lr`` with a gradient from :meth:`_prepare`."""
        if self._device is not None:
            self._device.step(g, lr)
            return
        e = self._engine
        if self._sparse is not None:
            self._sparse.step(g, lr)
        else:
            kernel = e.kernel if e._kernel_ready else e.dense_kernel()
            kernel(self._flat, g, e.W, e.P, lr)

    # the unit protocol of an Optimizer of several arrays (see _Fused)
    def _take(self, leaves):
        try:
            return self._prepare(leaves[self._j], self._glabel)
        except (TypeError, ValueError, IndexError) as exc:
            if str(exc).startswith(self._glabel):
                raise
            raise type(exc)(f"{self._glabel}: {exc}") from None

    def _sum_squares(self, g):
        """``sum(g**2)`` in float64 of a gradient from :meth:`_prepare`, with
        the function the step kernels' first pass uses (host arrays)."""
        if self._sparse is not None:
            return cpu.sum_squares(g[1])
        return self._engine.sum_squares(g)

    def _set_total(self, total):
        self._engine.G[cpu.G_TOTAL] = total

    def _engines(self):
        return [self._one_engine()]

    def _dense_host(self):
        return self._device is None and self._sparse is None

    def _leaf_states(self, copy):
        return [self._state(copy)]

    def _leaf_parallel(self):
        return [self._device is None and self._engine.parallel]

    def _many_step(self, g, learning_rate):
        fused = self._fused
        if fused is not None and type(g) in (list, tuple) and len(g) == len(
                fused.xs) and fused.point(tuple(g)):
            # the common case: one group of host arrays, its gradients given
            # as arrays of their shapes and dtype
            fused.step(fused.rate(learning_rate))
            return
        units = self._units
        leaves = self._tree.flatten(g, "the gradient")
        prepared = [u._take(leaves) for u in units]
        rates = [u._rate(learning_rate) for u in units]
        if self._clip:
            if self._R is not None:
                # on the device: the sum over all arrays, then each factor
                for u, p in zip(units, prepared):
                    u._device.add_sum_squares(flat_values(p), self._R)
                for i, u in enumerate(units):
                    u._device.set_factor(self._R, 0, reset=i == len(units) - 1)
            elif len(units) > 1:
                total = 0.0
                for u, p in zip(units, prepared):
                    total += u._sum_squares(p)
                for u in units:
                    u._set_total(total)
        for u, p, lr in zip(units, prepared, rates):
            u._apply(p, lr)

    def flush(self):
        """With ``sparse='catchup'``: bring every coordinate up to the last
        step, as if the skipped zero-gradient steps had been taken (x and the
        state change; a no-op otherwise). Call it before reading all of x."""
        if self._units is not None:
            for u in self._units:
                u.flush()
        elif self._device is not None:
            if self._device.sparse is not None:
                self._device.sparse.flush()
        elif self._sparse is not None:
            self._sparse.flush()

    def state_dict(self):
        """The state and hyperparameters in torch.optim's layout, with NumPy
        arrays: ``{"state": {i: {...}}, "param_groups": [{...}]}``.

        The arrays are numbered in order over the groups (a dict's in its key
        order); ``"state"`` holds, for each array that has taken a step, its
        ``step`` and its slots under torch's names (``exp_avg``,
        ``exp_avg_sq``, ``max_exp_avg_sq``, ``momentum_buffer``, ``sum``,
        ``square_avg``, ``acc_delta``, ``grad_avg``, ``exp_inf``,
        ``mu_product``), in the arrays' shapes, and ``aux``, numadam's
        running scalars (so that a run continues bitwise). Each entry of
        ``"param_groups"`` holds the group's hyperparameters under torch's
        keys (``lr``, ``betas``, ``eps``, ``weight_decay``, ...),
        ``maximize`` and ``params``, the numbers of its arrays; and
        ``clip_norm`` when the Optimizer clips. The arrays are copies: the
        dict round-trips through pickle and ``np.savez`` (with
        ``allow_pickle``) bitwise.
        """
        rule = self.spec.rule_impl()
        states = (self._per_leaf(lambda u: u._leaf_states(True)) if self._units is not None
                  else [self._state(True)])
        leaves = self._tree.leaves
        out = {"state": {}, "param_groups": []}
        start = 0
        for group in self.param_groups:
            k = sum(1 for g in self._tree.group if g == group._index)
            out["param_groups"].append(export_group(self.options, group,
                                                    range(start, start + k)))
            start += k
        for j, (st, x) in enumerate(zip(states, leaves)):
            entry = export_state(st, rule, tuple(x.shape))
            if entry is not None:
                out["state"][j] = entry
        return out

    def load_state_dict(self, state_dict):
        """Continue from ``state_dict``: one of :meth:`state_dict`, or one
        that ``torch.optim.<Method>.state_dict()`` made (its tensors are
        read with ``.numpy()``; torch is not needed otherwise).

        The groups must match this Optimizer's (their number and the number
        of arrays of each); their hyperparameters replace the groups', and
        are checked as the Optimizer's options are (torch's keys that
        change nothing numadam computes, such as ``foreach`` and
        ``fused``, are passed over). Each array's state must have its
        shape and the slots the method keeps with those hyperparameters;
        the arrays of a group share one step count. Everything is checked
        before anything changes. torch's SGD keeps no step count: its state
        loads at step 1 where it has a momentum buffer, 0 otherwise.
        """
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(
                state_dict):
            raise ValueError("state_dict must be a dict with 'state' and 'param_groups', "
                             f"as Optimizer.state_dict() gives, got "
                             f"{type(state_dict).__name__}")
        groups = state_dict["param_groups"]
        state = state_dict["state"]
        if not isinstance(groups, (list, tuple)) or len(groups) != len(self.param_groups):
            raise ValueError(f"state_dict['param_groups'] must have {len(self.param_groups)} "
                             f"group(s), like this Optimizer, got "
                             f"{len(groups) if isinstance(groups, (list, tuple)) else groups!r}")
        if not isinstance(state, Mapping):
            raise ValueError(f"state_dict['state'] must be a dict, got "
                             f"{type(state).__name__}")
        tree, spec, given = self._tree, self.spec, self._given
        rule = spec.rule_impl()
        top = dict(given["options"])
        clip = top.pop("clip_norm", None)
        per_group, resolved, ids = [], [], []
        for i, group in enumerate(groups):
            where = f"state_dict['param_groups'][{i}]"
            options, numbers = import_group(group, where)
            size = sum(1 for g in tree.group if g == i)
            if len(numbers) != size:
                raise ValueError(f"{where} has {len(numbers)} parameter(s), this "
                                 f"Optimizer's group {i} has {size}")
            loaded_clip = options.pop("clip_norm", None)
            if loaded_clip is not None and loaded_clip != clip:
                raise ValueError(f"{where} clips to clip_norm={loaded_clip!r}, this "
                                 f"Optimizer to {clip!r}: give the same clip_norm")
            options = optimizer_options(spec, options, lead=f"{where} got unknown options")
            try:
                resolved.append(spec.resolve(dict(
                    dict(top, **options) if tree.kind == "groups" else options,
                    clip_norm=clip)))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{where}: {exc}") from None
            per_group.append(options)
            ids.extend(numbers)
        states = []
        for j, (number, x) in enumerate(zip(ids, tree.leaves)):
            values = resolved[tree.group[j]]
            entry = state.get(number, state.get(str(number)))
            states.append(import_state(entry, spec, rule, rule.flags(values), values, x,
                                       f"state_dict['state'][{number!r}]"))
        if tree.kind == "groups":
            params = [dict({k: v for k, v in own.items() if k == "sparse"},
                           params=self.params[i]["params"], **per_group[i])
                      for i, own in enumerate(tree.groups)]
            options = dict(top)
        else:
            params = self.params
            options = dict(per_group[0])
        if clip is not None:
            options["clip_norm"] = clip
        fresh = Optimizer(self.method, params, bounds=given["bounds"],
                          state=tree.build(states), parallel=given["parallel"],
                          sparse=given["sparse"], **options)
        fresh._given = given
        fresh._tree = tree
        if tree.kind == "groups":
            fresh.params = self.params
        self.__dict__.update(fresh.__dict__)
        for group in self.param_groups:
            group._owner = self
            group._units[:] = [self if u is fresh else u for u in group._units]
        if self._units is not None:
            self._units[:] = [self if u is fresh else u for u in self._units]

    @property
    def parallel(self):
        """Whether the steps run the parallel (``prange``) CPU kernel now
        (False for an Optimizer on a GPU; by default it may change from step
        to step, see ``parallel`` above); for several arrays, in the
        structure of ``params``."""
        if self._units is not None:
            return self._tree.build(self._per_leaf(lambda u: u._leaf_parallel()))
        return self._leaf_parallel()[0]

    @property
    def state(self):
        """A copy of the current :class:`OptimizerState`; for several arrays,
        the state of each in the structure of ``params``."""
        return self._state(copy=True)

    def _state(self, copy):
        if self._units is not None:
            return self._tree.build(self._per_leaf(lambda u: u._leaf_states(copy)))
        return self._one_engine().state(copy)

    def _per_leaf(self, get):
        out = [None] * len(self._tree)
        for u in self._units:
            idx = u._idx if isinstance(u, _Fused) else [u._j]
            for j, v in zip(idx, get(u)):
                out[j] = v
        return out

    def __repr__(self):
        step = f"step={int(self.aux[0])}"
        if self._units is not None:
            where = ", device='cuda'" if is_device_array(self._tree.leaves[0]) else ""
            sizes = ", ".join(str(int(np.prod(a.shape))) for a in self._tree.leaves)
            groups = len(self._tree.groups)
            return (f"Optimizer({self.method!r}, sizes=[{sizes}]"
                    f"{f', groups={groups}' if groups > 1 else ''}, {step}{where})")
        where = ", device='cuda'" if self._device is not None else ""
        shape = self.x.shape
        size = f"size={shape[0]}" if len(shape) == 1 else f"shape={tuple(shape)}"
        return f"Optimizer({self.method!r}, {size}, dtype={self.x.dtype}, {step}{where})"


class ParamGroup(dict):
    """A parameter group of an :class:`Optimizer`: its ``"params"`` as given
    and its hyperparameters, by the method's option names, as
    torch.optim's ``param_groups`` entries are.

    Setting a hyperparameter (``group["learning_rate"] = 0.01``, or torch's
    ``group["lr"]``; ``group["betas"] = (b1, b2)``) checks it as the
    Optimizer's options are checked, before anything changes, and the next
    step uses it. ``learning_rate`` may be set to a schedule, which is then
    read at the Optimizer's step count. An option that changes which state
    the method keeps or which kernel runs (sgd's ``momentum`` from or to 0,
    ``nesterov``, ``amsgrad``, ...) cannot change mid-run: make a new
    Optimizer with ``state=opt.state`` instead. ``clip_norm`` belongs to
    the whole Optimizer (:attr:`Optimizer.options`), not to a group.
    """

    def __init__(self, owner, index, params, values, units):
        self._owner = owner
        self._index = index
        self._units = units
        super().__init__(params=params)
        super().update(_shown(values))

    def __getitem__(self, key):
        if key in TORCH_ALIASES and key not in self:
            names = TORCH_ALIASES[key]
            if all(n in self for n in names):
                values = tuple(dict.__getitem__(self, n) for n in names)
                return values[0] if len(values) == 1 else values
        return dict.__getitem__(self, key)

    def __setitem__(self, key, value):
        self.update({key: value})

    def update(self, *args, **kwargs):
        """Set several hyperparameters at once (all checked first)."""
        given = dict(*args, **kwargs)
        where = f"param_groups[{self._index}]"
        if "params" in given:
            raise ValueError(f"{where}: the arrays of a group are fixed when the "
                             "Optimizer is made")
        spec = self._owner.spec
        if "clip_norm" in given:
            raise ValueError(f"{where}: clip_norm belongs to the whole Optimizer, not to "
                             "a group")
        given = optimizer_options(spec, given, lead=f"{where} got unknown options")
        current = {k: v for k, v in self.items() if k != "params"}
        current["clip_norm"] = self._owner.options.get("clip_norm")
        try:
            values = spec.resolve({**current, **given})
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
        engines = [e for u in self._units for e in u._engines()]
        rule, F = engines[0].rule, engines[0].F
        new_F = rule.flags(values)
        if new_F != F:
            base = spec.resolve(current)
            culprits = [n for n in given if rule.flags({**base, n: values[n]}) != F]
            what = ", ".join(map(repr, culprits or given))
            if tuple(rule.slots(new_F)) != tuple(rule.slots(F)):
                raise ValueError(f"{where}: changing {what} changes the state the method "
                                 "keeps, which cannot change mid-run: make a new "
                                 "Optimizer with state=opt.state")
            if not all(u._dense_host() for u in self._units):
                raise ValueError(f"{where}: changing {what} changes the kernel the method "
                                 "runs, which sparse and CUDA steps cannot change "
                                 "mid-run: make a new Optimizer with state=opt.state")
            for e in engines:
                e.set_flags(new_F)
        hyper = [values[n] for n in rule.hyper]
        # bias corrections from the new betas, as torch.optim computes them
        # at every step: the running powers restart at beta**t
        powers = [(j, values[beta], err) for j, beta, err in running_powers(rule)
                  if beta in given]
        for e in engines:
            for j, beta, err in powers:
                e.aux[j] = beta ** e.aux[0]
                if err is not None:
                    e.aux[err] = 0.0
            e.P[:len(hyper)] = hyper
            e.set_maximize(values["maximize"])
            e.learning_rate = values["learning_rate"]
            e.schedule = values.get("learning_rate_schedule")
            e.options = values
        for u in self._units:
            if isinstance(u, Optimizer):
                u.options = values
        if self._index == 0:
            self._owner.options = values
        super().update(_shown(values))

    def _refuse(self, *args, **kwargs):
        raise TypeError("the entries of a parameter group can be set, not removed")

    __delitem__ = pop = popitem = clear = setdefault = _refuse

    def __reduce__(self):
        return dict, (dict(self),)


def _shown(values):
    """A group's hyperparameters as :class:`ParamGroup` shows them: a
    schedule as the learning rate, and without ``clip_norm``."""
    shown = {k: v for k, v in values.items()
             if k not in ("clip_norm", "learning_rate_schedule")}
    if values.get("learning_rate_schedule") is not None:
        shown["learning_rate"] = values["learning_rate_schedule"]
    return shown


class _Fused:
    """Arrays of one group and dtype, stepped by one compiled call: a unit of
    an Optimizer of several arrays, with the unit protocol of a one-array
    Optimizer (``_take``, ``_rate``, ``_sum_squares``, ``_set_total``,
    ``_apply``)."""

    def __init__(self, spec, tree, idx, values, bounds, states, parallel):
        leaves = [tree.leaves[j] for j in idx]
        for j, x in zip(idx, leaves):
            if not x.flags.c_contiguous or not x.flags.writeable:
                raise ValueError(f"{tree.labels[j]} must be a C-contiguous, writable "
                                 f"array (it is updated in place), got shape {x.shape} "
                                 f"with strides {x.strides}" + (
                                     "" if x.flags.writeable else " that is read-only"))
        pairs = [None if bounds[j] is None else _bounds_pair(
            bounds[j], x, f"bounds of {tree.labels[j]}") for j, x in zip(idx, leaves)]
        pairs = [None if p is None else (p[0].reshape(-1), p[1].reshape(-1))
                 for p in pairs]
        self.engine = GroupEngine(spec, leaves, values, pairs,
                                  [states[j] for j in idx], parallel,
                                  [tree.labels[j] for j in idx])
        self._idx = idx
        self.aux = self.engine.aux
        self.dtype = leaves[0].dtype
        self.shapes = [x.shape for x in leaves]
        self.glabels = [tree.label("gradient", j) for j in idx]

    def _take(self, leaves):
        grads = tuple([leaves[j] for j in self._idx])
        if self.engine.point(grads):
            return grads                    # kept alive until the step
        dtype = self.dtype
        grads = list(grads)
        for k, (g, shape) in enumerate(zip(grads, self.shapes)):
            if type(g) is not np.ndarray or g.dtype is not dtype or g.shape != shape:
                grads[k] = dense_gradient(g, shape, dtype, f"{self.glabels[k]} must be")
        return self.engine.point_copies(grads)

    def _rate(self, learning_rate):
        return self.engine.rate(learning_rate)

    def _sum_squares(self, grads):
        return self.engine.sum_squares(self.engine.T)

    def _set_total(self, total):
        self.engine.G[cpu.G_TOTAL] = total

    def _apply(self, grads, lr):
        self.engine.step(lr)

    def _engines(self):
        return [self.engine]

    def _dense_host(self):
        return True

    def flush(self):
        pass

    def _leaf_states(self, copy):
        return [self.engine.state(k, copy) for k in range(len(self._idx))]

    def _leaf_parallel(self):
        return [self.engine.parallel] * len(self._idx)


def _check_distinct(tree):
    """Raise when two host arrays of ``params`` share memory (the same array
    given twice would be stepped twice a step, as torch refuses too)."""
    spans = []
    for j, a in enumerate(tree.leaves):
        if isinstance(a, np.ndarray) and a.size:
            start = a.__array_interface__["data"][0]
            spans.append((start, start + a.nbytes, j))
    spans.sort()
    for (_, end, i), (start, _, j) in zip(spans, spans[1:]):
        if start < end:
            first, second = sorted((i, j))
            raise ValueError(f"{tree.labels[first]} and {tree.labels[second]} share "
                             "memory: each array may appear once in an Optimizer")


def _is_pair(v):
    """Whether ``v`` is a ``(lo, hi)`` pair of arrays (for the message of
    bounds given for one array where several are)."""
    return (isinstance(v, (list, tuple)) and len(v) == 2
            and all(isinstance(b, np.ndarray) for b in v))


def _bounds_pair(bounds, x, name):
    """``(lo, hi)`` as C-contiguous arrays of ``x``'s shape and dtype."""
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
        raise ValueError(f"{name} must be a (lo, hi) pair of arrays of shape {x.shape}, "
                         f"got {type(bounds).__name__}")
    lo, hi = (np.ascontiguousarray(b, dtype=x.dtype) for b in bounds)
    if lo.shape != x.shape or hi.shape != x.shape:
        raise ValueError(f"{name} must be two arrays of shape {x.shape}, "
                         f"got shapes {lo.shape} and {hi.shape}")
    return lo, hi


def _group_settings(spec, options, own, sparse, i, kind):
    """The options (validated) and sparse mode of parameter group ``i``: the
    Optimizer's options with the group's own over them."""
    if kind != "groups":
        values = spec.resolve(options)
        return values, _check_sparse(spec, values, sparse)
    where = f"params[{i}]"
    own = dict(own)
    sparse = own.pop("sparse", sparse)
    if "clip_norm" in own:
        raise ValueError(f"{where}: clip_norm clips all the arrays of an Optimizer "
                         "together, by their global norm: give it to the Optimizer, not "
                         "to a group")
    own = optimizer_options(spec, own, lead=f"{where} got unknown options")
    merged = {**options, **own}
    try:
        values = spec.resolve(merged)
        return values, _check_sparse(spec, values, sparse)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None


def _check_sparse(spec, values, sparse):
    """The Optimizer's sparse mode: 'lazy', 'catchup' or None."""
    if spec.sparse_mode(values, sparse) == "dense":
        raise ValueError("Optimizer(sparse='dense') is Optimizer(): pass the "
                         "gradient as an array (SparseGradient.todense)")
    return sparse


def optimizer_options(spec, options, lead=None):
    """The hyperparameters given to :class:`Optimizer`, with torch.optim's
    spellings translated (:func:`numadam._options.translate_aliases`);
    raises TypeError for a name the method does not take (run options such
    as ``maxiter`` belong to :func:`numadam.minimize`)."""
    valid = spec.option_names + tuple(n for n in spec.fixed if n not in spec.option_names)
    options = translate_aliases(options, valid, spec.name)
    if watches_loss(options.get("learning_rate")):
        raise ValueError("learning_rate: reduce_on_plateau watches the loss of a "
                         "numadam.minimize run, which an Optimizer does not see: set "
                         "opt.param_groups[i]['lr'] from your own loop instead")
    unknown = [name for name in options if name not in valid]
    if unknown:
        msg = unknown_option_message(unknown, valid,
                                     lead=lead or f"Optimizer({spec.name!r}) got unknown "
                                     "options", known=RUN_OPTION_NAMES)
        run = [name for name in unknown if name in RUN_OPTION_NAMES]
        if run:
            msg += (f"; {', '.join(map(repr, run))} "
                    f"{'is an option' if len(run) == 1 else 'are options'} of "
                    "numadam.minimize's runs, not of a step")
        raise TypeError(msg)
    return options
