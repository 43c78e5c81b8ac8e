"""The objective as the loops see it: ``evaluate(x) -> (f, g)`` with counters.

``jac`` may be a callable, True (``fun`` returns ``(f, g)``), or None,
``'2-point'`` or ``'3-point'`` for finite differences.  The first evaluation
is checked thoroughly (scalar f, gradient of the right shape and kind) so that
bad input fails with a clear error before any step; later evaluations take a
fast path and fall back to the same checks when something looks different.
"""

from __future__ import annotations

import math

import numpy as np

from ._sparse import raw_parts

__all__ = ["Objective", "jac_mode"]

FD_METHODS = ("2-point", "3-point")


def jac_mode(jac):
    """Classify ``jac``: 'callable', 'combined' or one of FD_METHODS."""
    if callable(jac):
        return "callable"
    if jac is True:
        return "combined"
    if jac is None or jac is False:
        return "2-point"
    if isinstance(jac, str) and jac in FD_METHODS:
        return jac
    raise ValueError(f"jac must be a callable, True, False, None, '2-point' or "
                     f"'3-point', got {jac!r}")


class Objective:
    """``fun``, ``jac`` and ``args`` normalised for the loops.

    ``nfev`` counts calls of ``fun`` (finite-difference calls included) and
    ``njev`` counts gradients computed, as scipy's counters do.
    """

    def __init__(self, fun, jac, args, n, dtype, lo=None, hi=None):
        if not callable(fun):
            raise TypeError(f"fun must be callable, got {type(fun).__name__}")
        self.fun = fun
        self.jac = jac
        self.args = args
        self.mode = jac_mode(jac)
        self.shape = (n,)
        self.dtype = np.dtype(dtype)
        self.lo = lo
        self.hi = hi
        self.nfev = 0
        self.njev = 0
        self.fd_calls = 0
        self._work = None
        self.sparse = None
        self.coalescer = None

    def use_sparse(self, mode, parallel):
        """Accept sparse gradients: 'lazy' and 'catchup' make them
        ``(idx, val)`` pairs (coalesced), 'dense' makes them arrays."""
        from ._kernels import sparse as sk
        from ._sparse import Coalescer

        self.sparse = mode
        self.coalescer = Coalescer(self.shape[0], self.dtype)
        self._densify = sk.densify_kernel(parallel)

    # ------------------------------------------------------------------
    def evaluator(self, jac_out=False):
        """A function ``evaluate(x, out=None, call_args=None) -> (f, g)``.

        ``call_args`` replaces ``args`` for one call (a minibatch).

        With ``jac_out`` the gradient is written into ``out`` (a C-contiguous
        array of the run's dtype) by ``jac(x, *args, out)``, or by
        ``fun(x, *args, out)`` with ``jac=True``, and ``g`` is ``out``.
        Each call is one evaluation: the loops count them and report through
        :meth:`count`, which adds the extra calls finite differences make.
        """
        fun, jac, args = self.fun, self.jac, self.args
        shape, dtype = self.shape, self.dtype
        as_gradient = self.as_gradient
        ndarray = np.ndarray
        mode = self.mode
        # with lazy or catch-up sparse updates every gradient is converted
        force = self.sparse in ("lazy", "catchup")
        if jac_out and mode in FD_METHODS:
            raise ValueError("option 'jac_out' needs a gradient function: jac must "
                             f"be a callable or True, got {self.jac!r}")

        if mode == "callable" and jac_out:
            def evaluate(x, out=None, call_args=None):
                a = args if call_args is None else call_args
                f = fun(x, *a)
                if type(f) is not float:
                    f = as_scalar(f)
                r = jac(x, *a, out)
                if r is not None and r is not out:
                    raise TypeError(out_message("jac", _describe(r)))
                return f, out
        elif mode == "callable":
            def evaluate(x, out=None, call_args=None):
                a = args if call_args is None else call_args
                f = fun(x, *a)
                if type(f) is not float:
                    f = as_scalar(f)
                g = jac(x, *a)
                if force or type(g) is not ndarray or g.dtype is not dtype or \
                        g.shape != shape:
                    g = as_gradient(g)
                return f, g
        elif mode == "combined" and jac_out:
            def evaluate(x, out=None, call_args=None):
                a = args if call_args is None else call_args
                f = fun(x, *a, out)
                if type(f) is not float:
                    if type(f) is tuple:
                        raise TypeError(out_message("fun", f"a tuple of {len(f)}"))
                    f = as_scalar(f)
                return f, out
        elif mode == "combined":
            def evaluate(x, out=None, call_args=None):
                a = args if call_args is None else call_args
                out = fun(x, *a)
                if type(out) is not tuple or len(out) != 2:
                    out = _pair(out)
                f, g = out
                if type(f) is not float:
                    f = as_scalar(f)
                if force or type(g) is not ndarray or g.dtype is not dtype or \
                        g.shape != shape:
                    g = as_gradient(g)
                return f, g
        else:
            fd = self._finite_difference

            def evaluate(x, out=None, call_args=None):
                a = args if call_args is None else call_args
                f = as_scalar(fun(x, *a))
                return f, as_gradient(fd(x, f, a))
        return evaluate

    def count(self, evaluations):
        """Set ``nfev`` and ``njev`` from the number of evaluations made."""
        self.nfev = evaluations + self.fd_calls
        self.njev = evaluations

    def as_gradient(self, g):
        """Check a gradient returned by jac and convert it to the run's dtype.

        A sparse gradient becomes ``(idx, val)`` (lazy and catch-up modes) or
        a dense array (``sparse='dense'``); without the ``sparse`` option it
        is an error."""
        parts = None if isinstance(g, np.ndarray) else raw_parts(g, self.shape[0],
                                                                 self.dtype)
        if parts is not None:
            if self.sparse is None:
                raise TypeError(f"jac returned a sparse gradient ({_describe(g)}); set "
                                "options['sparse'] to 'lazy', 'catchup' or 'dense'")
            idx, val = self.coalescer(*parts)
            if self.sparse == "dense":
                dense = np.empty(self.shape, self.dtype)
                self._densify(idx, val, dense)
                return dense
            return idx, val
        if self.sparse in ("lazy", "catchup"):
            raise TypeError(f"option sparse={self.sparse!r} needs jac to return a "
                            "sparse gradient (numadam.SparseGradient, a scipy.sparse "
                            "array or matrix, or a tuple (indices, values)), got "
                            f"{_describe(g)}")
        return dense_gradient(g, self.shape, self.dtype, "jac must return",
                              " (the shape of x0)")

    # ------------------------------------------------------------------
    def _finite_difference(self, x, f0, args):
        """Forward ('2-point') or central ('3-point') differences.

        Relative steps as scipy's ``approx_derivative``: ``h = r * max(1, |x|)``
        with ``r = sqrt(eps)`` (2-point) or ``eps**(1/3)`` (3-point) of the
        run's dtype. Every evaluation stays inside the bounds: near a bound
        the step turns, or shrinks to the room left; a central difference
        that does not fit becomes one-sided; a coordinate fixed by its
        bounds (lo == hi) gets a zero derivative.
        """
        eps = np.finfo(self.dtype).eps
        central = self.mode == "3-point"
        rel = eps ** (1 / 3) if central else math.sqrt(eps)
        if self._work is None:
            self._work = np.empty(self.shape, self.dtype)
        xw = self._work
        np.copyto(xw, x)
        g = np.empty(self.shape, np.float64)
        fun = self.fun
        lo, hi = self.lo, self.hi
        for i in range(self.shape[0]):
            xi = x[i]
            h = rel * max(1.0, abs(float(xi)))
            room_up = np.inf if hi is None else float(hi[i]) - float(xi)
            room_down = np.inf if lo is None else float(xi) - float(lo[i])
            if central and room_up >= h and room_down >= h:
                xw[i] = xi + h
                fp = as_scalar(fun(xw, *args))
                xw[i] = xi - h
                fm = as_scalar(fun(xw, *args))
                self.fd_calls += 2
                g[i] = (fp - fm) / (float(xi + h) - float(xi - h))
            elif max(room_up, room_down) > 0.0:
                if room_up >= h or room_up >= room_down:
                    xw[i] = xi + min(h, room_up)
                else:
                    xw[i] = xi - min(h, room_down)
                fp = as_scalar(fun(xw, *args))
                self.fd_calls += 1
                g[i] = (fp - f0) / (float(xw[i]) - float(xi))
            else:
                g[i] = 0.0          # fixed by its bounds (lo == hi)
            xw[i] = xi
        return g


def dense_gradient(g, shape, dtype, subject, where=""):
    """``g`` as a C-contiguous array of ``dtype`` and ``shape``; TypeError or
    ValueError, worded "<subject> a real array ...", otherwise."""
    try:
        arr = np.asarray(g)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise TypeError(f"{subject} a real array, got {_describe(g)}") from exc
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{subject} a real array, got {_describe(g)}")
    if arr.shape != shape:
        raise ValueError(f"{subject} an array of shape {shape}{where}, got shape "
                         f"{arr.shape}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _pair(out):
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return tuple(out)
    raise TypeError("with jac=True, fun must return a pair (f, g), got "
                    f"{_describe(out)}")


def as_scalar(f):
    """``f`` as a Python float; ValueError/TypeError naming fun otherwise."""
    if type(f) is float:
        return f
    if isinstance(f, (np.floating, np.integer, int)):
        return float(f)
    if isinstance(f, (list, tuple)):
        f = np.asarray(f)
    if isinstance(f, np.ndarray):
        if f.dtype.kind not in "fiub":
            raise TypeError(f"fun must return a real scalar, got {_describe(f)}")
        if f.size != 1:
            raise ValueError(f"fun must return a scalar, got {_describe(f)}")
        return float(f.reshape(()))
    if isinstance(f, (complex, np.complexfloating, str, bytes)):
        raise TypeError(f"fun must return a real scalar, got {_describe(f)}")
    try:
        return float(f)
    except (TypeError, ValueError):
        raise TypeError(f"fun must return a real scalar, got {_describe(f)}") from None


def out_message(who, got):
    """The error of a function that, with option ``jac_out``, did not write
    the gradient into its last argument as it should."""
    if who == "fun":
        return ("with jac=True and option 'jac_out', fun must write the gradient "
                f"into its last argument and return f alone; it returned {got}")
    return ("with option 'jac_out', jac must write the gradient into its last "
            f"argument and return None (or that argument); it returned {got}")


def numba_reason(exc):
    """The first lines of a Numba compilation error that say what failed
    (the line before them only names the compiler's pass)."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("Failed in ")]
    return " ".join(lines[:2])


def compile_error(who, function, argtypes, exc):
    """The TypeError of a user's Numba function (``who``: "fun" or "jac")
    that does not compile for the arguments numadam passes it."""
    name = getattr(getattr(function, "py_func", function), "__qualname__", repr(function))
    types_ = ", ".join(str(t) for t in argtypes)
    return TypeError(f"{who} ({name}, a Numba function) does not compile for the "
                     f"arguments numadam passes it ({types_}): {numba_reason(exc)}")


def first_evaluation_error(objective, call_args, exc):
    """:func:`compile_error` for a Numba compilation error raised by the first
    evaluation: which of ``fun`` and ``jac`` fails, for which arguments."""
    from numba import typeof
    from numba.core.errors import TypingError

    args = objective.args if call_args is None else call_args
    proto = np.empty(objective.shape, objective.dtype)
    proto.flags.writeable = False
    argtypes = tuple(typeof(a) for a in (proto, *args))
    for who in ("fun", "jac"):
        function = getattr(objective, who)
        if hasattr(function, "compile") and hasattr(function, "py_func"):
            try:
                function.compile(argtypes)
            except TypingError as again:
                return compile_error(who, function, argtypes, again)
    return compile_error("fun", objective.fun, argtypes, exc)


def untouched_message(combined):
    """The error of a ``jac_out`` function whose first call left its last
    argument all NaN, as numadam filled it before the call: untouched, or
    added to rather than written."""
    who = "with jac=True and option 'jac_out', fun" if combined else \
        "with option 'jac_out', jac"
    return (f"{who} must write the gradient into its last argument; after the first "
            "call every entry is still NaN, as it was filled before the call: the "
            "function left it untouched, or added to it instead of writing it")


def _describe(obj):
    if isinstance(obj, np.ndarray):
        return f"an array of shape {obj.shape} and dtype {obj.dtype}"
    if hasattr(obj, "nnz") and hasattr(obj, "shape"):
        return f"a {type(obj).__name__} of shape {obj.shape}"
    if isinstance(obj, tuple):
        return f"a tuple of length {len(obj)}"
    text = repr(obj)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(obj).__name__})"
