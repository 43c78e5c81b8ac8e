"""The front door: ``minimize`` with scipy's signature, and the method callables."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import warnings
from collections.abc import Mapping

import numpy as np
import scipy.optimize
from scipy.optimize import OptimizeResult

from . import _device, _loop, _stochastic
from ._arrays import as_bounds, as_x0
from ._engine import Engine
from ._checkpoint import decode_options, encode_options
from ._checkpoint import read as read_checkpoint
from ._interrupt import INTERRUPTED, Guard, Interrupted
from ._kernels import cpu
from ._objective import Objective
from ._options import (COMMON_OPTIONS, run_options, translate_aliases,
                       unknown_option_message, warn_user)
from ._registry import lookup
from ._state import OptimizerState

__all__ = ["minimize", "resume"]

_COMMON = {o.name: o for o in COMMON_OPTIONS}


def minimize(fun, x0, args=(), method="adam", jac=None, hess=None, hessp=None,
             bounds=None, constraints=(), tol=None, callback=None, options=None):
    r"""Minimise a scalar function of one or more variables.

    The signature, the result and the callback conventions are those of
    :func:`scipy.optimize.minimize`. numadam's methods run their update steps
    as compiled Numba kernels; scipy's own method names are handed to
    :func:`scipy.optimize.minimize` unchanged.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float``, where ``x`` is a 1-D array of the shape
        of ``x0``. With ``jac=True`` it returns ``(f, g)``. For numadam's
        methods ``x`` is a read-only view of the current iterate, which
        changes in place from step to step: copy it to keep it.
    x0 : array_like, shape (n,)
        Initial guess. float32 stays float32 (arithmetic, state and result);
        integers become float64. It is not modified.
    args : tuple, optional
        Extra arguments passed to ``fun`` and ``jac``.
    method : str or callable, optional
        A numadam method (case-insensitive): ``"adam"`` (the default) or any
        other name in :data:`numadam.methods`, one of scipy's method names,
        or a callable.
        numadam's method callables (``numadam.adam`` ...) run here; any other
        callable is passed to scipy as a custom method.
    jac : callable, bool, str or None, optional
        ``jac(x, *args) -> ndarray`` of shape (n,); True if ``fun`` returns
        ``(f, g)``; None, False, ``'2-point'`` or ``'3-point'`` for finite
        differences (``n + 1`` or ``2n + 1`` calls of ``fun`` per step:
        meant for small problems).
    hess, hessp : optional
        Not used by numadam's methods; given, they raise the RuntimeWarning
        scipy gives.
    bounds : scipy.optimize.Bounds or sequence of (min, max) pairs, optional
        Box bounds; None in a pair means unbounded. ``x0`` is clipped into
        the box and every step ends by projecting onto it.
    constraints : optional
        Not supported by numadam's methods: anything other than an empty
        sequence raises ValueError. Use a scipy method such as SLSQP.
    tol : float, optional
        Sets ``options["gtol"]`` unless it is given, as for scipy's BFGS.
    callback : callable, optional
        Called after every step, in either of scipy's conventions:
        ``callback(intermediate_result)``, where the argument (which must be
        named so) is an :class:`~scipy.optimize.OptimizeResult` with ``x``,
        ``fun``, ``jac`` and ``nit``, or the legacy ``callback(xk)``. Raising
        StopIteration ends the run with status 99.
    options : dict, optional
        The common options ``maxiter``, ``gtol``, ``ftol``, ``xtol``,
        ``disp``, ``parallel``, ``state``, ``compiled``, ``callback_every``,
        ``jac_out``, ``device`` and ``on_interrupt``, and the method's
        hyperparameters. See
        :func:`numadam.show_options`. Unknown options give an
        :class:`~scipy.optimize.OptimizeWarning`, as in scipy.

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        ``x``, ``fun``, ``jac`` (at ``x``), ``nit`` (update steps),
        ``nfev``, ``njev``, ``status``, ``success``, ``message``, and
        ``state``, the :class:`~numadam.OptimizerState` that continues the
        run. ``status`` is 0 (a tolerance was met, or the ``maxiter``
        steps or ``epochs`` asked for were taken with no tolerance set), 1
        (``maxiter`` steps taken without meeting a tolerance that was set), 3
        (a non-finite value or gradient; ``x`` is the last iterate at which
        both were finite), 98 (Ctrl-C: see :class:`~numadam.Interrupted`)
        or 99 (the callback raised StopIteration).

    Raises
    ------
    Interrupted
        On Ctrl-C (SIGINT) during the run, unless ``options={"on_interrupt":
        "return"}``: a KeyboardInterrupt carrying the result so far, whose
        ``x`` and ``state`` continue the run.

    See Also
    --------
    show_options : the options of each method.
    Optimizer : the update step alone, for hand-written loops.

    Notes
    -----
    Every input is checked before the first evaluation of ``fun``; a bad one
    raises TypeError or ValueError naming the parameter, what it got and what
    is allowed. Nothing passed in is modified.

    Continue a run with ``minimize(fun, res.x, ..., options={"state":
    res.state})``: the two runs together give bitwise the result of one run.

    When ``fun`` and ``jac`` are ``@numba.njit`` functions the whole loop runs
    compiled, with bitwise the same results (``options={"compiled": False}``
    opts out).

    When ``x0`` is a CUDA device array (CuPy, a PyTorch CUDA tensor, Numba),
    or with ``options={"device": "cuda"}``, x, the gradient and the state stay
    on the GPU: ``fun`` and ``jac`` get and return device arrays, and
    ``res.x`` is a device array of ``x0``'s kind (see :ref:`guide-gpu`).

    Examples
    --------
    >>> import numpy as np, numadam
    >>> from scipy.optimize import rosen, rosen_der
    >>> res = numadam.minimize(rosen, np.array([-1.2, 1.0]), method="adam",
    ...                        jac=rosen_der,
    ...                        options={"learning_rate": 0.01, "maxiter": 20000})
    >>> res.success, np.allclose(res.x, 1.0, atol=1e-3)
    (True, True)

    scipy's methods pass through unchanged:

    >>> numadam.minimize(rosen, [-1.2, 1.0], method="BFGS", jac=rosen_der).nit > 0
    True
    """
    if callable(method):
        spec = getattr(method, "_numadam_spec", None)
        if spec is None:
            return scipy.optimize.minimize(
                fun, x0, args=args, method=method, jac=jac, hess=hess,
                hessp=hessp, bounds=bounds, constraints=constraints, tol=tol,
                callback=callback, options=options)
    else:
        where, spec = lookup(method)
        if where == "scipy":
            return scipy.optimize.minimize(
                fun, x0, args=args, method=method, jac=jac, hess=hess,
                hessp=hessp, bounds=bounds, constraints=constraints, tol=tol,
                callback=callback, options=options)
    if options is None:
        options = {}
    elif not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict or None, got "
                        f"{type(options).__name__}")
    return solve(spec, fun, x0, args, jac, hess, hessp, bounds, constraints, tol,
                 callback, dict(options))


def resume(path, fun, args=(), jac=None, bounds=None, callback=None, options=None):
    """Continue the run a checkpoint holds, as if it had never stopped.

    Parameters
    ----------
    path : str or os.PathLike
        A checkpoint written by a run with ``options={"checkpoint": path}``.
    fun, args, jac, bounds, callback
        As given to :func:`minimize` for that run: the checkpoint holds the
        run's state and options, not its functions and data.
    options : dict, optional
        Options to change for the rest of the run (``disp``, ``maxiter`` to
        go further, the tolerances, a ``checkpoint`` elsewhere, the
        ``learning_rate`` from here on; the other hyperparameters are the
        run's own); a Python callable ``learning_rate``, which a checkpoint
        cannot hold, must be given again here.

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        The result the uninterrupted run would have returned, bitwise: ``x``,
        ``fun``, ``jac``, ``nit`` and ``nfev`` counted from the run's start,
        ``history``, ``state``. The resumed run goes on writing its
        checkpoints.

    Raises
    ------
    ValueError
        The file is not a numadam checkpoint, or this run differs from the
        checkpoint's (method, size, dtype, data rows, batch size, bounds,
        sparse mode, switches).

    See Also
    --------
    minimize : the ``checkpoint`` and ``checkpoint_every`` options.
    """
    arrays, meta = read_checkpoint(path)
    _, spec = lookup(meta["run"]["method"])
    options_ = decode_options(meta["options"])
    extra = {} if options is None else dict(options)
    absent = [name for name in meta["missing"] if name not in extra]
    if absent:
        raise ValueError(f"the checkpoint's run had option {absent[0]!r}, which a "
                         f"checkpoint cannot hold (a Python object): give it again, "
                         f"options={{{absent[0]!r}: ...}}")
    options_.update(extra)
    options_.setdefault("checkpoint", os.fspath(path))
    return solve(spec, fun, arrays["x"], args, jac, None, None, bounds, (), None,
                 callback, options_, restore=(arrays, meta))


def solve(spec, fun, x0, args, jac, hess, hessp, bounds, constraints, tol,
          callback, options, restore=None):
    """Run numadam method ``spec``; ``options`` is a fresh dict we may change.
    From here on Ctrl-C is the run's (:class:`~numadam._interrupt.Guard`):
    it ends the run at its next step, keeping the result. ``restore``: a
    checkpoint's ``(arrays, meta)`` to resume from (:func:`resume`)."""
    with Guard() as guard:
        res, control = _checked_run(spec, fun, x0, args, jac, hess, hessp, bounds,
                                    constraints, tol, callback, options, guard, restore)
    if guard.asked and control.on_interrupt == "raise":
        raise Interrupted(res)
    if control.disp and res.status != INTERRUPTED:
        _report(res)
    return res


def _checked_run(spec, fun, x0, args, jac, hess, hessp, bounds, constraints, tol,
                 callback, options, guard, restore):
    """The inputs checked, the run, and its result with the run's options."""
    if not isinstance(args, tuple):
        args = (args,)
    if tol is not None:
        options.setdefault("gtol", _check_tol(tol))
    control, hyper = split_options(spec, options)
    if control.state is not None and not isinstance(
            control.state, (OptimizerState, str, os.PathLike)):
        raise TypeError(f"options['state'] must be an OptimizerState (res.state) or "
                        f"a checkpoint's path, got {type(control.state).__name__}")
    if isinstance(control.state, (str, os.PathLike)):
        # a checkpoint's path: the run it holds goes on (x0 is its iterate)
        if restore is not None:
            raise ValueError("a resumed run continues the checkpoint's state: option "
                             "'state' cannot be given too")
        if not os.path.isfile(control.state):
            raise FileNotFoundError(f"options['state'] names the checkpoint "
                                    f"{os.fspath(control.state)!r}, which is not a file")
        restore = read_checkpoint(control.state)
        x0 = restore[0]["x"]
        control = dataclasses.replace(control, state=None)
    check_constraints(constraints, spec.name)
    for name, value in (("hess", hess), ("hessp", hessp)):
        if value is not None:
            what = ("Hessian information (hess)" if name == "hess" else
                    "Hessian-vector product information (hessp)")
            warn_user(f"Method {spec.name} does not use {what}.", RuntimeWarning)
    if _device.wanted(x0, control.device):
        if restore is not None:
            raise ValueError("a checkpoint's run goes on on the host: device runs "
                             "neither write nor resume checkpoints")
        return _device.solve(spec, fun, x0, args, jac, bounds, callback, control,
                             hyper, guard), control
    x = as_x0(x0)
    lo, hi = as_bounds(bounds, x)
    if lo is not None:
        np.clip(x, lo, hi, out=x)
    setup, args, maxiter = _stochastic.setup_run(control, args)
    control = dataclasses.replace(control, maxiter=maxiter)
    if control.checkpoint is not None:
        setup.options_given = encode_options(options)
    setup.restore = restore
    sparse = spec.sparse_mode(hyper, control.sparse, setup.average is not None)
    objective = Objective(fun, jac, args, x.shape[0], x.dtype, lo, hi)
    if control.jac_out and objective.mode not in ("callable", "combined"):
        raise ValueError("option 'jac_out' needs a gradient function: jac must be a "
                         f"callable or True, got {jac!r}")
    if sparse is not None:
        if control.jac_out:
            raise ValueError("option 'jac_out' cannot be combined with option 'sparse'")
        if objective.mode not in ("callable", "combined"):
            raise ValueError(f"option sparse={sparse!r} needs a gradient function: jac "
                             f"must be a callable or True, got {jac!r}")
        objective.use_sparse(sparse, cpu.use_parallel(x.shape[0], None, spec.rule,
                                                      x.dtype))
    _loop.callback_kind(callback)  # validates callback
    driver = _choose_driver(control.compiled, objective, setup)
    engine = Engine(spec, x, hyper, lo, hi, control.state, control.parallel,
                    backup=True, AS=setup.AS if setup.average else None)
    setup.guard = guard
    return _run(driver, engine, objective, control, callback, setup), control


def _run(driver, engine, objective, control, callback, setup):
    """The run and its result (the part of :func:`solve` that Ctrl-C stops
    early, keeping what was done)."""
    out = driver(engine, objective, control, callback, setup)
    status = out["status"]
    x_last = out["x"]
    fun_value, jac_value = out["fun"], out["jac"]
    x_result = x_last
    extra = {}
    # catch-up: every row is brought up to date, so x moves again
    flushed = out["sparse"] is not None and out["sparse"].flush()
    if engine.A is not None:
        x_result = _stochastic.averaged(engine.A, engine.AS, x_last)
        extra["x_last"] = x_last.copy()
    if (setup.batching is not None or engine.A is not None or flushed) and \
            out["evaluated"]:
        # the full-data objective (and gradient) at the returned x: one pass
        # (after Ctrl-C, if it ends within the grace the user's code has)
        done, fg = setup.guard.call(_full_evaluation, objective, control, x_result)
        fun_value, jac_value = fg if done else (math.nan, np.full_like(x_result, np.nan))
    if setup.history:
        extra["history"] = _stochastic.history_result(out["H"], out["rows"], setup)
    state = engine.state(copy=False)
    if (setup.batching is not None or setup.objective_rng is not None) and \
            status != _loop.NONFINITE:
        state.stream = _stochastic.streams_at(setup, out["pos"])
    return OptimizeResult(
        x=x_result, fun=fun_value, jac=jac_value, nit=out["nit"],
        nfev=objective.nfev, njev=objective.njev, status=status,
        success=status == _loop.SUCCESS, message=out["message"],
        state=state, **extra)


def _full_evaluation(objective, control, x):
    """f and g at ``x`` with the whole data (one evaluation, counted)."""
    evaluate = objective.evaluator(control.jac_out)
    xv = x.view()
    xv.flags.writeable = False
    f, g = evaluate(xv, np.zeros_like(x) if control.jac_out else None, None)
    objective.nfev += 1
    objective.njev += 1
    if isinstance(g, tuple):          # a sparse gradient: (idx, val)
        dense = np.empty_like(x)
        objective._densify(g[0], g[1], dense)
        return f, dense
    return f, np.array(g, copy=True)


def _choose_driver(compiled, objective, setup):
    """The compiled loop for Numba objectives (unless ``compiled`` is False),
    else the Python-driven loop."""
    if compiled is False:
        return _loop.run
    from . import _compiled

    if _compiled.eligible(objective, setup):
        return _compiled.run
    if compiled:
        if setup.schedule is not None and _compiled.is_numba_function(objective.fun):
            raise ValueError("option 'compiled'=True cannot run a Python callable "
                             "learning_rate; use a numadam.schedules schedule")
        raise ValueError(
            "option 'compiled'=True needs fun, and jac unless jac=True, to be Numba "
            f"functions (@numba.njit); got fun={_name(objective.fun)} and "
            f"jac={_name(objective.jac)}")
    return _loop.run


def _name(obj):
    return getattr(obj, "__name__", None) or type(obj).__name__


def split_options(spec, options):
    """Validate options; return the run's :class:`~numadam._options.RunOptions`
    and the method's hyperparameters (validated, defaults filled in)."""
    common = {}
    hyper = {}
    unknown = []
    options = translate_aliases(options, spec.option_names, spec.name)
    for name, value in options.items():
        if name in _COMMON:
            common[name] = value
        elif name in spec.option_names or name in spec.fixed:
            hyper[name] = value
        else:
            unknown.append(name)
    if unknown:
        warn_user(unknown_option_message(
            unknown, list(_COMMON) + list(spec.option_names)))
    control = run_options(common, spec.name)
    hyper = spec.resolve(hyper)
    schedule = hyper.pop("learning_rate_schedule", None)
    return dataclasses.replace(control, learning_rate_schedule=schedule), hyper


def _check_tol(tol):
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, numbers.Real):
        raise TypeError(f"tol must be a real number >= 0 or None, got {tol!r}")
    if not (tol >= 0 and np.isfinite(tol)):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    return float(tol)


def check_constraints(constraints, method):
    if constraints is None:
        return
    if isinstance(constraints, (list, tuple)) and len(constraints) == 0:
        return
    count = len(constraints) if isinstance(constraints, (list, tuple)) else 1
    raise ValueError(
        f"constraints are not supported by numadam's method {method!r} (got "
        f"{count} constraint{'s' if count != 1 else ''}); use bounds, or a scipy "
        "method that handles constraints such as method='SLSQP' or "
        "method='trust-constr'")


def _report(res):
    """Print the summary scipy prints with ``disp=True``."""
    if res.success:
        print(res.message)
    else:
        warnings.warn(res.message, scipy.optimize.OptimizeWarning, stacklevel=4)
    print(f"         Current function value: {res.fun:f}")
    print(f"         Iterations: {res.nit:d}")
    print(f"         Function evaluations: {res.nfev:d}")
    print(f"         Gradient evaluations: {res.njev:d}")


def make_method(spec):
    """The scipy custom-method callable of a numadam method."""

    def method(fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None,
               constraints=(), callback=None, **options):
        tol = options.pop("tol", None)
        return solve(spec, fun, x0, args, jac, hess, hessp, bounds, constraints,
                     tol, callback, options)

    method.__name__ = method.__qualname__ = spec.name
    method.__module__ = "numadam"
    method._numadam_spec = spec
    from ._docs import method_docstring

    method.__doc__ = method_docstring(spec)
    return method
