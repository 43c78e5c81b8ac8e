"""The whole loop compiled, for objectives that are Numba functions.

When ``fun`` and a callable ``jac`` are ``@njit`` dispatchers (or ``jac=True``
with an ``@njit`` ``fun`` returning ``(f, g)``), minimize runs the iteration
of :mod:`numadam._loop` compiled: :func:`compiled_loop` hands
:func:`numadam._loop.make_iterate` compiled hooks (the evaluation, the
minibatch gather, the schedule) and gives the function it returns to
``numba.njit``. It is the very function the Python-driven loop runs, calling
the same kernels (the step, the gradient norm, the xtol change, the iterate
average), so its results are bitwise those of the Python-driven loop, and a
step has no Python in it.

The compiled function returns to Python only when the run ends, when an
epoch's permutation is used up (the next one is drawn from the run's NumPy
generator, as in the Python loop), and, with a callback or a progress bar,
every ``callback_every`` steps: the callback sees the iterate after the
non-finite check and before the termination tests, as in the Python loop.

The first evaluation, at ``x0``, runs from Python with the Python loop's
checks, so a bad return value fails with the same clear error before any
step; later ones that return a gradient of the wrong length or bad sparse
indices end the run with the same errors. The user's functions receive the
same argument types as in the Python loop (a read-only view of x,
C-contiguous batch views), so the compiled loop reuses the specialisations
that evaluation compiled (or loaded from the user's own cache).

A loop does not close over the user's functions: it calls them as Numba
first-class functions of their signature (argument and return types), found
at the addresses it is handed (:func:`function_addresses`). So one compiled
loop serves every objective with the same signature, method and switches,
it is kept on disk by Numba's cache (:class:`numadam._kernels._jit.NamedCache`),
and a new objective compiles only itself. The calls are indirect, through a
function pointer, so the compiler cannot inline the objective into the loop:
``options={"compiled": "inline"}`` compiles a loop for the objective alone
that calls it directly (the loop of every objective before; a few tens of ns
faster per step on tiny objectives, compiled anew in every process), and so
does an objective whose functions compile no new signatures (explicit
signatures only, none of them the loop's).
"""

from __future__ import annotations

import functools
import math
import time
import weakref

import numpy as np
from numba import njit, typeof, types
from numba.core import cgutils
from numba.core.dispatcher import Dispatcher
from numba.core.errors import TypingError
from numba.experimental import function_type as function_type_impl
from numba.extending import intrinsic, overload, register_jitable

from . import _loop
from ._kernels import cpu
from ._kernels import sparse as sk
from ._kernels import threads
from ._kernels._jit import njit as named_njit
from ._kernels._jit import package_fingerprint
from ._loop import BAD_GRADIENT, BAD_INDEX, BAD_OUT, BAD_ROWS, SLICE
from ._objective import compile_error, out_message
from ._sparse import _coalesce
from .schedules import Schedule, constant, observe_function, rate_function

SORTED_UNIQUE = -(2 ** 62)    # _sparse._coalesce: nothing to do

_OPTIONS = dict(error_model="numpy", nogil=True)

#: The length of a compiled loop's slice, and of a probe's (ns).
SLICE_NS = 20_000_000
PROBE_NS = 1_000_000

_clock = time.perf_counter_ns


def is_numba_function(f):
    return isinstance(f, Dispatcher)


def eligible(objective, setup):
    """Whether the objective and the run can use the compiled loop."""
    if setup.schedule is not None and not isinstance(setup.schedule, Schedule):
        return False          # a Python callable learning rate
    if setup.batching is not None and not all(setup.batching.is_array):
        return False          # minibatches of scipy.sparse matrices
    if objective.mode == "callable":
        return is_numba_function(objective.fun) and is_numba_function(objective.jac)
    if objective.mode == "combined":
        return is_numba_function(objective.fun)
    return False


# --------------------------------------------------------------- helpers --

def _as_float(f):  # pragma: no cover - replaced by its overload
    raise NotImplementedError


@overload(_as_float)
def _as_float_impl(f):
    if isinstance(f, (types.Float, types.Integer, types.Boolean)):
        return lambda f: float(f)
    if isinstance(f, types.Array) and f.ndim == 0:
        return lambda f: float(f[()])
    real = (types.Float, types.Integer, types.Boolean)
    if isinstance(f, types.Array) and isinstance(f.dtype, real):
        # a one-element array, as the Python loop takes it (the first
        # evaluation, in Python, refused any other size); a size that
        # changes later reads as NaN, a non-finite value that stops the run
        def impl(f):
            if f.size != 1:
                return math.nan
            return float(f.reshape(-1)[0])
        return impl
    raise TypingError(f"fun must return a real scalar, got {f}")


def _wrote_out(r, out):  # pragma: no cover - replaced by its overload
    raise NotImplementedError


@register_jitable
def _is_out(r, out):
    """Whether the array ``r`` is ``out`` itself (the same data and shape)."""
    return r.shape == out.shape and r.ctypes.data == out.ctypes.data


@overload(_wrote_out)
def _wrote_out_impl(r, out):
    """Whether ``r``, what a ``jac_out`` function returned, says that it
    wrote into ``out``: None, or ``out`` itself."""
    if isinstance(r, types.NoneType):
        return lambda r, out: True
    if isinstance(r, types.Array):
        return _is_out
    if isinstance(r, types.Optional) and isinstance(r.type, types.Array):
        return lambda r, out: r is None or _is_out(r, out)
    raise TypingError(out_message("jac", str(r)))


def _store(G, cur, g):  # pragma: no cover - replaced by its overload
    raise NotImplementedError


@overload(_store)
def _store_impl(G, cur, g):
    """Copy a returned gradient into row ``cur`` of the buffers ``G``,
    converting its dtype; False when its length is not that of x."""
    if not (isinstance(g, types.Array) and g.ndim == 1 and
            isinstance(g.dtype, (types.Float, types.Integer))):
        raise TypingError(f"jac must return a 1-D real array, got {g}")

    def impl(G, cur, g):
        n = G.shape[1]
        if g.shape[0] != n:
            return False
        for i in range(n):
            G[cur, i] = g[i]
        return True
    return impl


def _sparse_rows(sg, like):  # pragma: no cover - replaced by its overload
    raise NotImplementedError


@overload(_sparse_rows)
def _sparse_rows_impl(sg, like):
    """A Numba function's sparse gradient ``(indices, values)`` as int64
    indices and ``(k, r)`` values of x's dtype, copied only when needed."""
    if not (isinstance(sg, types.BaseTuple) and len(sg) == 2 and all(
            isinstance(a, types.Array) for a in sg)):
        raise TypeError(f"with option 'sparse', jac must return a tuple "
                        f"(indices, values) of arrays, got {sg}")
    it, vt = sg[0], sg[1]
    if it.ndim != 1 or not isinstance(it.dtype, types.Integer):
        raise TypingError(f"sparse gradient indices must be a 1-D integer array, got {it}")
    if vt.ndim not in (1, 2) or not isinstance(vt.dtype, (types.Float, types.Integer)):
        raise TypingError(f"sparse gradient values must be a 1-D or 2-D real array, "
                          f"got {vt}")
    same_idx = it.dtype == types.int64 and it.layout == "C"
    same_val = vt.dtype == like.dtype and vt.layout == "C"
    one_d = vt.ndim == 1

    def impl(sg, like):
        idx = sg[0]
        val = sg[1]
        k = idx.shape[0]
        if same_idx:
            out_idx = idx
        else:
            out_idx = np.empty(k, np.int64)
            for j in range(k):
                out_idx[j] = idx[j]
        if one_d:
            if same_val:
                return out_idx, val.reshape((k, 1))
            out_val = np.empty((k, 1), like.dtype)
            for j in range(k):
                out_val[j, 0] = val[j]
            return out_idx, out_val
        if same_val:
            return out_idx, val
        out_val = np.empty(val.shape, like.dtype)
        for j in range(k):
            for q in range(val.shape[1]):
                out_val[j, q] = val[j, q]
        return out_idx, out_val
    return impl


# --------------------------------------------------------------- hooks --

@register_jitable
def _coalesced(ri, rv, xv, mark, where, stamp):
    """``(event, indices, values, stamp)``: a sparse gradient's rows checked
    and coalesced with the scratch ``mark``/``where`` (a new ``stamp``);
    with BAD_INDEX the indices as returned."""
    n_rows = mark.shape[0]
    if rv.shape[1] * n_rows != xv.shape[0]:
        return BAD_ROWS, ri, rv, stamp
    stamp += 1
    ci = np.empty(ri.shape[0], np.int64)
    cv = np.empty(rv.shape, xv.dtype)
    got = _coalesce(ri, rv, n_rows, mark, where, stamp, ci, cv)
    if got == SORTED_UNIQUE:
        return 0, ri, rv, stamp
    if got < 0:
        return BAD_INDEX, ri, rv, stamp
    return 0, ci[:got], cv[:got], stamp


@intrinsic
def _function_at(typingctx, addresses, fn_type):
    """The first-class function value of type ``fn_type`` (a FunctionType,
    given as a type reference) whose addresses are ``addresses``: its C
    wrapper, its Python object and its native entry point, as
    :func:`function_addresses` reads them. Calls go to the native entry
    point, with Numba's calling convention (exceptions propagate)."""
    if not (isinstance(fn_type, types.TypeRef) and
            isinstance(fn_type.instance_type, types.FunctionType)):
        return None
    fnty = fn_type.instance_type

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = context.get_value_type(types.voidptr)
        fn = cgutils.create_struct_proxy(fnty)(context, builder)
        for i, field in enumerate(("c_addr", "py_addr", "jit_addr")):
            value = builder.load(cgutils.gep(builder, arr.data, i))
            setattr(fn, field, builder.inttoptr(value, pointer))
        return fn._getvalue()

    return fnty(addresses, fn_type), codegen


def function_addresses(f, fn_type):
    """``[C wrapper, Python object, native entry point]`` of the Numba
    function ``f`` compiled for ``fn_type``'s signature (Numba's own
    unboxing of a first-class function reads the same three)."""
    sig = fn_type.signature
    return (function_type_impl._get_wrapper_address(f, sig), id(f),
            function_type_impl._get_jit_address(f, sig))


#: (dtype, ndim, C, F, writeable, aligned) -> Numba array type
_ARRAY_TYPES = {}


def _typeof(value):
    """``numba.typeof``, memoised for NumPy arrays by what their type
    depends on (it is called several times per run)."""
    if type(value) is np.ndarray:
        fl = value.flags
        key = (value.dtype, value.ndim, fl.c_contiguous, fl.f_contiguous,
               fl.writeable, fl.aligned)
        found = _ARRAY_TYPES.get(key)
        if found is None:
            found = _ARRAY_TYPES[key] = typeof(value)
        return found
    return typeof(value)


#: Numba function -> {argument types: (FunctionType, addresses)}
_compiled_functions = weakref.WeakKeyDictionary()


def compiled_function(f, argtypes, who=None):
    """``(FunctionType, addresses)`` of the Numba function ``f`` called with
    ``argtypes`` (compiled now if it was not), or None when ``f`` compiles
    no new signatures (its own explicit signatures only) or Numba makes no C
    wrapper for this one (an optional return type): the caller then
    compiles a loop that calls ``f`` directly. ``who`` ("fun" or "jac")
    names a user's function in the TypeError of a typing failure."""
    known = _compiled_functions.setdefault(f, {})
    found = known.get(argtypes)
    if found is None:
        if argtypes not in f.overloads:
            if not f._can_compile:
                return None
            try:
                f.compile(argtypes)
            except TypingError as exc:
                if who is None:           # numadam's own kernels
                    raise
                raise compile_error(who, f, argtypes, exc) from exc
        fn_type = types.FunctionType(f.overloads[argtypes].signature)
        try:
            addresses = function_addresses(f, fn_type)
        except ValueError:
            addresses = None
        found = known[argtypes] = (fn_type, addresses)
    return found if found[1] is not None else None


@register_jitable
def _direct(addresses, function):
    """The function itself: the hooks' way to a closure constant."""
    return function


@functools.lru_cache(maxsize=64)
def make_evaluate(mode, jac_out, sparse_mode, parallel, fun_ref, jac_ref):
    """The compiled ``evaluate`` hook of :func:`numadam._loop.make_iterate`.

    With ``fun_ref`` and ``jac_ref`` first-class function types, it calls
    the user's ``fun`` and ``jac`` as functions of those types, found at the
    addresses ``fns`` (:func:`function_addresses`, one row each) that the
    run passes: one compiled hook, and one compiled loop, serve every
    objective with the same argument and return types. With ``fun_ref`` and
    ``jac_ref`` the Numba functions themselves (``compiled='inline'``), it
    calls them directly, and the compiler may inline them.

    A dense gradient goes into row ``nxt`` of ``G``: written there by the
    user's function with ``jac_out``, copied there otherwise. A sparse one
    ``(indices, values)`` is coalesced with the scratch ``mark``/``where``
    and returned (lazy and catch-up modes) or scattered into ``G[nxt]``
    (``sparse='dense'``)."""
    combined = mode == "combined"
    reads_sparse = sparse_mode is not None
    is_sparse = sparse_mode in ("lazy", "catchup")
    densify = sk.densify_kernel(parallel) if sparse_mode == "dense" else None
    at = _function_at if isinstance(fun_ref, types.FunctionType) else _direct

    if is_sparse:
        @named_njit(**_OPTIONS)
        def evaluate(fns, xv, call, mark, where, stamp):
            fun = at(fns[0], fun_ref)
            if combined:
                fn, sg = fun(xv, *call)
            else:
                jac = at(fns[1], jac_ref)
                fn = fun(xv, *call)
                sg = jac(xv, *call)
            ri, rv = _sparse_rows(sg, xv)
            bad, ci, cv, stamp = _coalesced(ri, rv, xv, mark, where, stamp)
            return bad, _as_float(fn), ci, cv, stamp
        return evaluate

    @named_njit(inline="always", **_OPTIONS)
    def evaluate(fns, xv, call, G, nxt, mark, where, stamp):
        fun = at(fns[0], fun_ref)
        if reads_sparse:
            if combined:
                fn, sg = fun(xv, *call)
            else:
                jac = at(fns[1], jac_ref)
                fn = fun(xv, *call)
                sg = jac(xv, *call)
            ri, rv = _sparse_rows(sg, xv)
            bad, ci, cv, stamp = _coalesced(ri, rv, xv, mark, where, stamp)
            if bad != 0:
                return bad, 0.0, stamp
            densify(ci, cv, G[nxt])
        elif combined:
            if jac_out:
                fn = fun(xv, *(call + (G[nxt],)))
            else:
                fn, gn = fun(xv, *call)
                if not _store(G, nxt, gn):
                    return BAD_GRADIENT, 0.0, stamp
        else:
            jac = at(fns[1], jac_ref)
            fn = fun(xv, *call)
            if jac_out:
                if not _wrote_out(jac(xv, *(call + (G[nxt],))), G[nxt]):
                    return BAD_OUT, 0.0, stamp
            elif not _store(G, nxt, jac(xv, *call)):
                return BAD_GRADIENT, 0.0, stamp
        return 0, _as_float(fn), stamp

    return evaluate


@functools.lru_cache(maxsize=64)
def _batch_function(nargs, positions, gathers):
    """The compiled ``batch`` hook: :func:`numadam._loop.batch_function`'s
    source with the gather kernels the Python loop uses."""
    return njit(**_OPTIONS)(_loop.batch_function(nargs, positions, gathers))


@functools.lru_cache(maxsize=None)
def _kernels_at(count, kernel_type):
    """The ``kernels`` hook of a shared loop: the rule's ``count`` step
    kernels as first-class functions of ``kernel_type``, at rows 2 and 3 of
    ``fns``."""
    if count == 1:
        def dense(fns):
            return (_function_at(fns[2], kernel_type),)
        return register_jitable(dense)

    def sparse(fns):
        return (_function_at(fns[2], kernel_type), _function_at(fns[3], kernel_type))
    return register_jitable(sparse)


@functools.lru_cache(maxsize=64)
def make_loop(mode, jac_out, sw, batch_key, rate_key, fun_ref, jac_ref, kernel_type):
    """``iterate`` compiled for one run configuration (``sw``:
    :data:`numadam._loop.Switches`, its rule and flags blanked) and one
    signature of the objective (``fun_ref`` and ``jac_ref`` first-class
    function types) and of the rule's step kernels (``kernel_type``): every
    method shares it. It is kept in Numba's disk cache under a name that is
    a digest of all that and of the package's source (it inlines code from
    many of its files).

    With ``fun_ref`` and ``jac_ref`` the Numba functions themselves and
    ``kernel_type`` None, the loop is compiled for them and for ``sw``'s rule
    alone, calls them directly and is kept in this process only (Numba's
    disk cache cannot key a user's function)."""
    evaluate = make_evaluate(mode, jac_out, sw.sparse_mode, sw.parallel,
                             fun_ref, jac_ref)
    batch = _batch_function(*batch_key) if batch_key is not None else None
    rate = rate_function(*rate_key)
    observe = observe_function(rate_key[0])
    if kernel_type is None:
        kernels = register_jitable(_loop.constant_kernels(_loop.rule_kernels(sw)))
        return njit(**_OPTIONS)(_loop.make_iterate(sw, evaluate, batch, rate, kernels,
                                                   observe))
    kernels = _kernels_at(1 if sw.sparse_mode not in ("lazy", "catchup") else 2,
                          kernel_type)
    iterate = _loop.make_iterate(sw, evaluate, batch, rate, kernels, observe)
    return named_njit(cache=True, salt=package_fingerprint(), **_OPTIONS)(iterate)


def kernel_functions(sw, engine, G):
    """``(FunctionType, rows of addresses)`` of the rule's step kernels
    (:func:`numadam._loop.rule_kernels`) as the loop calls them."""
    x = engine.x
    common = (_typeof(x),)
    if sw.sparse_mode in ("lazy", "catchup"):
        values = _typeof(np.zeros((0, 1), x.dtype))
        argtypes = common + (_typeof(np.zeros(0, np.int64)), values, _typeof(engine.W),
                             _typeof(engine.P), types.float64, values)
        if sw.sparse_mode == "catchup":
            argtypes += (_typeof(np.zeros(0, np.int64)),)
    else:
        argtypes = common + (_typeof(G[0]), _typeof(engine.W), _typeof(engine.P),
                             types.float64)
    found = [compiled_function(k, argtypes) for k in _loop.rule_kernels(sw)]
    return found[0][0], [address for _, address in found]


def objective_functions(objective, control, args, batching, xv, g):
    """:func:`compiled_function` of ``fun`` and ``jac`` (None in the
    combined form) as the compiled loop calls them: with the read-only
    iterate, the arguments (minibatch buffers where sliced) and, with
    ``jac_out``, the gradient row; None when one of them compiles no
    signature of its own for these."""
    call = list(args)
    if batching is not None:
        for j, p in enumerate(batching.positions):
            call[p] = batching.buffers[j]
    base = (_typeof(xv),) + tuple(_typeof(a) for a in call)
    out = base + (_typeof(g),)
    jac_out = control.jac_out and objective.sparse is None
    if objective.mode == "combined":
        fun = compiled_function(objective.fun, out if jac_out else base, "fun")
        if fun is not None and jac_out:
            _check_out_return("fun", fun[0])
        return None if fun is None else (fun, None)
    fun = compiled_function(objective.fun, base, "fun")
    jac = compiled_function(objective.jac, out if jac_out else base, "jac")
    if jac is not None and jac_out:
        _check_out_return("jac", jac[0])
    return None if fun is None or jac is None else (fun, jac)


def _check_out_return(who, fn_type):
    """Raise for a ``jac_out`` function whose return type says that it did
    not write the gradient into its last argument (``jac`` returns None or
    that argument, ``fun`` with ``jac=True`` returns f alone), before the
    loop is compiled."""
    returns = fn_type.signature.return_type
    if who == "jac":
        if isinstance(returns, types.Optional):
            returns = returns.type
        wrong = not isinstance(returns, (types.NoneType, types.Array))
    else:
        wrong = isinstance(returns, types.BaseTuple)
    if wrong:
        raise TypeError(out_message(who, f"{returns} (the Numba type)"))


def compiled_loop(sw, engine, objective, control, setup, args):
    """The ``loop`` of :func:`numadam._loop.run` for Numba objectives:
    ``iterate`` compiled, the gradient rows ``G`` as one ``(2, n)`` array,
    the schedule's parameters, and the addresses ``fns`` of ``fun`` and
    ``jac``. With ``compiled='inline'``, or for functions that compile no
    signature for the loop's arguments (explicit signatures only), the loop
    is compiled for this objective alone and calls it directly."""
    batching = setup.batching
    schedule = setup.schedule if setup.schedule is not None else constant(
        engine.learning_rate)
    G = np.zeros((2, engine.x.shape[0]), engine.x.dtype)
    xv = engine.x.view()
    xv.flags.writeable = False
    rate_key = (schedule.kinds,)
    jac = objective.jac if objective.mode == "callable" else None
    functions = (None if control.compiled == "inline" else
                 objective_functions(objective, control, args, batching, xv, G[0]))
    # the step's kernels and the minibatch gathers run serial, parallel
    # (forced), or as measured (None): one loop when both are forced or
    # serial, else a serial and a parallel one to choose from, slice by slice
    step_mode = sw.parallel
    gather_mode = batching.mode if batching is not None else False
    measured = step_mode is None or gather_mode is None
    if measured or step_mode or gather_mode:
        # a loop that links parallel kernels in (norms, gathers) is loaded
        # from the disk cache only after Numba's threads have started
        cpu.start_threads()
    loops = []
    for v in ((False, True) if measured else (None,)):
        par = step_mode if step_mode is not None else v
        gathers_par = gather_mode if gather_mode is not None else v
        swp = sw._replace(parallel=par, sparse_from=sw.sparse_from if par else -1)
        batch_key = ((len(args), batching.positions, batching.gather_kernels(gathers_par))
                     if batching is not None else None)
        if functions is None:
            # compiled='inline', or functions with explicit signatures only:
            # a loop for this objective and rule alone, which calls them directly
            iterate = make_loop(objective.mode, control.jac_out, swp, batch_key,
                                rate_key, objective.fun, jac, None)
            fns = np.zeros((4, 3), np.int64)
        else:
            iterate, fns = shared_loop(objective, control, swp, engine, G, batch_key,
                                       rate_key, functions)
        loops.append((iterate, fns, bool(par or gathers_par)))
    elements = engine.x.shape[0] + sum(a.size for a in args if isinstance(a, np.ndarray))
    slices = Slices(loops, elements)
    return slices, G, schedule.params, loops[0][1], slices.prepare


def shared_loop(objective, control, sw, engine, G, batch_key, rate_key, functions):
    """The loop every rule and objective of the same signature shares, and
    the addresses ``fns`` of ``fun``, ``jac`` and the rule's kernels."""
    (fun_t, fun_at), jac = functions
    jac_t, jac_at = jac if jac is not None else (None, (0, 0, 0))
    kernel_t, kernel_at = kernel_functions(sw, engine, G)
    iterate = make_loop(objective.mode, control.jac_out,
                        sw._replace(rule_name=None, F=None), batch_key, rate_key,
                        fun_t, jac_t, kernel_t)
    fns = np.zeros((4, 3), np.int64)
    fns[0], fns[1] = fun_at, jac_at
    fns[2:2 + len(kernel_at)] = kernel_at
    return iterate, fns


class Slices:
    """The compiled ``iterate`` run in slices of about :data:`SLICE_NS`, as
    :func:`numadam._loop.run` calls ``iterate``.

    Between slices Python serves signals: Ctrl-C sets the run's stop flag
    (:class:`numadam._interrupt.Guard`), and the SLICE event goes back to the
    driver, which ends the run there. With two loops
    (serial and parallel kernels, ``parallel`` None), the slices choose
    between them by their measured time per step
    (:class:`numadam._kernels.threads.Adaptive`: probes of about
    :data:`PROBE_NS`). The first slice's length assumes a nanosecond per
    element of x and of the arrays in ``args`` per step; the next ones
    follow the measured time. ``loops`` holds ``(iterate, fns, parallel)``
    triples, serial first, ``parallel`` telling whether the loop runs
    parallel kernels (then it holds :data:`~numadam._kernels.threads.PARALLEL_LOCK`:
    waiting for it unless it is the measured choice's parallel form); the
    ``fns`` the driver passes are not used.
    """

    def __init__(self, loops, elements):
        self.loops = loops
        forms = [functools.partial(_slice, it, fns) for it, fns, _ in loops]
        first = threads.Forced(forms[0]) if loops[0][2] else forms[0]
        if len(forms) == 2:
            self.choice = threads.Adaptive(first, forms[1],
                                           dispatchers=tuple(it for it, _, _ in loops))
        else:
            self.choice = None
            self.form = first
        self.per = float(max(elements, 1))
        self.length = self._length()
        self.first_end = self.length

    def prepare(self, rs, state, resume):
        """The loops, with the arguments of their first call (the loop hook's
        ``prepare``)."""
        rs = rs._replace(slice_end=self.first_end)
        return [(it, (rs, state, resume, fns)) for it, fns, _ in self.loops]

    def _length(self):
        probing = self.choice is not None and self.choice.probing
        return int(min(max((PROBE_NS if probing else SLICE_NS) / self.per, 1), 2 ** 40))

    def __call__(self, rs, state, resume, fns):
        choice = self.choice
        # the driver's own limit: the slices end there (a checkpoint's look)
        outer = rs.slice_end
        while True:
            k0 = state.k
            end = min(k0 + self.length, outer)
            if rs.slice_end != end:
                rs = rs._replace(slice_end=end)
            if choice is None:
                t = _clock()
                event, state = self.form(rs, state, resume)
                dt = _clock() - t
            else:
                i, counted, (event, state), dt = choice.timed(rs, state, resume)
            steps = state.k - k0
            if steps > 0:
                self.per = dt / steps
                if choice is not None:
                    choice.record(i, self.per, counted)
                self.length = self._length()
            if event != SLICE or rs.stop[0] or state.k >= outer:
                return event, state      # the run's end, Ctrl-C's, the driver's
            resume = 0


def _slice(iterate, fns, rs, state, resume):
    """One slice of ``iterate`` with its own addresses ``fns``."""
    return iterate(rs, state, resume, fns)


def run(engine, objective, control, callback, setup):
    """:func:`numadam._loop.run` with the compiled iteration."""
    return _loop.run(engine, objective, control, callback, setup, loop=compiled_loop)
