"""Arrays as numadam takes them: the starting point, the bounds, and arrays
that may live on a GPU. The lowest layer of the package: it imports nothing
of numadam's."""

from __future__ import annotations

import numbers

import numpy as np
from scipy.optimize import Bounds

__all__ = ["as_x0", "as_bounds", "is_device_array", "device_copy", "host_array"]


def as_x0(x0):
    """A fresh, C-contiguous float32/float64 copy of ``x0``."""
    try:
        arr = np.asarray(x0)
    except Exception as exc:
        raise TypeError(f"x0 must be array_like of real numbers, got "
                        f"{type(x0).__name__}") from exc
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f" or arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"x0 must hold float32, float64 or integer values, got "
                        f"dtype {arr.dtype}")
    arr = np.atleast_1d(arr)
    if arr.ndim != 1:
        raise ValueError(f"x0 must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("x0 must have at least one element, got shape (0,)")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"x0 must be finite, but x0[{i}] is {float(arr[i])!r}")
    return np.array(arr, dtype=arr.dtype, order="C", copy=True)


def as_bounds(bounds, x):
    """``(lo, hi)`` arrays in x's dtype, or ``(None, None)`` when unbounded."""
    if bounds is None:
        return None, None
    n = x.shape[0]
    if isinstance(bounds, Bounds):
        try:
            lo = np.broadcast_to(np.asarray(bounds.lb, dtype=np.float64), (n,))
            hi = np.broadcast_to(np.asarray(bounds.ub, dtype=np.float64), (n,))
        except ValueError:
            raise ValueError(f"bounds must broadcast to the shape of x0, {(n,)}; "
                             f"got lb of shape {np.shape(bounds.lb)} and ub of "
                             f"shape {np.shape(bounds.ub)}") from None
    else:
        try:
            pairs = list(bounds)
        except TypeError:
            raise TypeError(f"bounds must be a scipy.optimize.Bounds or a sequence "
                            f"of (min, max) pairs, got {type(bounds).__name__}") from None
        if len(pairs) != n:
            raise ValueError(f"bounds must have one (min, max) pair per element of "
                             f"x0 ({n}), got {len(pairs)}")
        lo = np.empty(n)
        hi = np.empty(n)
        for i, pair in enumerate(pairs):
            try:
                a, b = pair
            except (TypeError, ValueError):
                raise ValueError(f"bounds[{i}] must be a (min, max) pair, got "
                                 f"{pair!r}") from None
            lo[i] = -np.inf if a is None else _bound_value(a, i)
            hi[i] = np.inf if b is None else _bound_value(b, i)
    if np.isnan(lo).any() or np.isnan(hi).any():
        raise ValueError("bounds must not contain NaN")
    bad = np.flatnonzero(lo > hi)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"bounds must have min <= max, but bounds[{i}] is "
                         f"({float(lo[i])!r}, {float(hi[i])!r})")
    if np.isneginf(lo).all() and np.isposinf(hi).all():
        return None, None
    return (np.ascontiguousarray(lo, dtype=x.dtype),
            np.ascontiguousarray(hi, dtype=x.dtype))


def _bound_value(v, i):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"bounds[{i}] must hold real numbers or None, got {v!r}")
    return float(v)


def is_device_array(a):
    """Whether ``a`` is a CUDA device array (or the CUDA simulator's)."""
    return hasattr(a, "__cuda_array_interface__") or type(a).__name__ == "FakeCUDAArray"


def host_array(a):
    """``a`` as a NumPy array: copied to the host when it lives on a GPU."""
    return a if isinstance(a, np.ndarray) else a.copy_to_host()


def device_copy(a):
    """A new Numba device array with the values of device array ``a``."""
    from numba import cuda

    out = cuda.device_array(a.shape, a.dtype)
    out.copy_to_device(a)
    return out
