"""Sparse gradients: their forms, their validation and coalescing.

A sparse gradient names the coordinates that have a gradient this step. It
comes as

- ``numadam.SparseGradient(indices, values)``,
- a SciPy sparse array or matrix of shape ``(1, n)`` or ``(n,)``, or shaped
  like the parameter's table, ``(n // b, b)`` (each stored entry one
  coordinate, row by row),
- or, from Numba functions (which cannot build Python objects), a tuple
  ``(indices, values)`` with the meaning of SparseGradient.

Internally it is a pair ``(idx, val)``: ``idx`` int64 of length ``k`` and
``val`` of shape ``(k, r)`` in the run's dtype, where ``x`` is viewed as rows
of ``r`` coordinates (``r = 1``: single coordinates).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._cache import disk_cache

__all__ = ["SparseGradient", "Coalescer", "raw_parts"]


class SparseGradient:
    """A gradient that is zero except at some coordinates (or rows) of x.

    Parameters
    ----------
    indices : array_like of int, shape (k,)
        Where the gradient is non-zero: coordinates of ``x`` when ``values``
        is 1-D, row numbers when it is 2-D. Any order; a repeated index has
        its values summed.
    values : array_like of float, shape (k,) or (k, r)
        The gradient there. With shape ``(k, r)``, ``x`` is viewed as
        ``(n // r, r)`` rows (``n`` must be a multiple of ``r``) and
        ``values[j]`` is the gradient of row ``indices[j]``: the layout of
        an embedding table's gradient, as ``torch.nn.Embedding(sparse=True)``
        produces it.

    Examples
    --------
    >>> import numpy as np, numadam
    >>> g = numadam.SparseGradient([3, 0, 3], [1.0, 2.0, 0.5])
    >>> g.todense(5)
    array([2. , 0. , 0. , 1.5, 0. ])
    """

    __slots__ = ("indices", "values")

    def __init__(self, indices, values):
        idx = np.asarray(indices)
        val = np.asarray(values)
        if idx.ndim != 1 or not (idx.dtype.kind in "iu" or idx.size == 0):
            raise TypeError(f"SparseGradient indices must be a 1-D integer array, got "
                            f"shape {idx.shape} and dtype {idx.dtype}")
        if val.ndim not in (1, 2) or val.shape[0] != idx.shape[0]:
            raise ValueError(f"SparseGradient values must have shape (k,) or (k, r) "
                             f"with k = len(indices) = {idx.shape[0]}, got shape "
                             f"{val.shape}")
        if val.dtype.kind not in "fiu":
            raise TypeError(f"SparseGradient values must be real, got dtype {val.dtype}")
        self.indices = idx
        self.values = val

    def todense(self, n):
        """The gradient as a dense array of ``n`` coordinates."""
        out = np.zeros(n, dtype=np.result_type(self.values.dtype, np.float64))
        r = 1 if self.values.ndim == 1 else self.values.shape[1]
        rows = out.reshape(-1, r)
        np.add.at(rows, self.indices.astype(np.int64), self.values.reshape(-1, r))
        return out

    def __repr__(self):
        return (f"SparseGradient(indices of shape {self.indices.shape}, values of "
                f"shape {self.values.shape})")


def raw_parts(g, n, dtype, rows_of=None):
    """``(idx, val)`` of a sparse gradient, before coalescing, or None when
    ``g`` is not sparse. ``val`` has shape ``(k, r)`` and the run's dtype.
    With ``rows_of`` (a lazy step's table row length), a CSR table whose
    stored entries are whole rows comes in the row form (the same
    coordinates)."""
    if isinstance(g, SparseGradient):
        idx, val = g.indices, g.values
    elif isinstance(g, tuple) and len(g) == 2 and all(
            isinstance(a, np.ndarray) for a in g):
        try:
            sg = SparseGradient(*g)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"jac returned a tuple that is not a sparse gradient "
                            f"(indices, values): {exc}") from None
        idx, val = sg.indices, sg.values
    else:
        try:
            import scipy.sparse as sp
        except ImportError:  # pragma: no cover - scipy is a dependency
            return None
        if not sp.issparse(g):
            return None
        table = g.ndim == 2 and g.shape[0] != 1
        if (table and g.shape[0] * g.shape[1] != n) or (not table and g.shape[-1] != n):
            raise ValueError(f"jac returned a sparse gradient of shape {g.shape}, but "
                             f"x0 has {n} elements: give shape (1, {n}) or ({n},), or "
                             "a table (rows, columns) of that many elements")
        if table and g.format == "csr":
            # each stored entry is one coordinate of the table, row by row
            columns = g.shape[1]
            if rows_of == columns and g.nnz % columns == 0:
                rows = np.empty(g.nnz // columns, np.int64)
                if _csr_whole_rows(g.indptr, g.indices, columns, rows):
                    return rows, np.ascontiguousarray(
                        g.data.reshape(-1, columns), dtype=dtype)
            idx = np.empty(g.nnz, np.int64)
            _csr_coordinates(g.indptr, g.indices, columns, idx)
            val = g.data
        else:
            coo = g.tocoo()
            coords = coo.coords if hasattr(coo, "coords") else (coo.row, coo.col)
            idx, val = coords[-1], coo.data
            if table:
                idx = coords[0].astype(np.int64) * g.shape[1] + coords[1]
    if val.ndim == 1:
        val = val.reshape(-1, 1)
    r = val.shape[1]
    if r == 0 or n % r:
        raise ValueError(f"a sparse gradient with rows of {r} values needs x0's size "
                         f"({n}) to be a multiple of {r}")
    return (np.ascontiguousarray(idx, dtype=np.int64),
            np.ascontiguousarray(val, dtype=dtype))


@njit(cache=disk_cache(), nogil=True)
def _csr_coordinates(indptr, indices, columns, out):
    """The flat coordinates (row * columns + column) of a CSR table's
    stored entries, in their order."""
    for i in range(indptr.shape[0] - 1):
        for j in range(indptr[i], indptr[i + 1]):
            out[j] = i * columns + indices[j]


@njit(cache=disk_cache(), nogil=True)
def _csr_whole_rows(indptr, indices, columns, rows):
    """Whether every stored row of a CSR table is whole (its ``columns``
    entries in order); if so ``rows`` holds their numbers."""
    k = 0
    for i in range(indptr.shape[0] - 1):
        start = indptr[i]
        count = indptr[i + 1] - start
        if count == 0:
            continue
        if count != columns or k == rows.shape[0]:
            return False
        for c in range(columns):
            if indices[start + c] != c:
                return False
        rows[k] = i
        k += 1
    return k == rows.shape[0]


@njit(cache=disk_cache(), nogil=True)
def whole_rows(idx, r):
    """Whether the coordinates ``idx`` are whole rows of ``r``, in blocks of
    ``r`` consecutive coordinates each starting a row (``r * i``, ...,
    ``r * i + r - 1``): the form of a table's gradient given by coordinates,
    which the row form steps at the cost of rows."""
    k = idx.shape[0]
    if k == 0 or k % r != 0:
        return False
    for j in range(0, k, r):
        first = idx[j]
        if first < 0 or first % r != 0:
            return False
        for c in range(1, r):
            if idx[j + c] != first + c:
                return False
    return True


def as_rows(idx, val, r):
    """``(idx, val)`` given by coordinates (``val`` of shape ``(k, 1)``) in
    the row form of rows of ``r`` when they are whole rows (the same
    coordinates, so the same lazy step), else as they are."""
    if r > 1 and val.shape[1] == 1 and whole_rows(idx, r):
        return idx[::r] // r, val.reshape(-1, r)
    return idx, val


@njit(cache=disk_cache(), nogil=True)
def _coalesce(idx, val, n_rows, mark, where, stamp, out_idx, out_val):
    """Sum repeated indices, in the order they come; return the number of
    unique ones, ``-(j + 1)`` when ``idx[j]`` is the first index out of
    range, or ``-2**62`` when the input is sorted and unique already."""
    k = 0
    r = val.shape[1]
    sorted_unique = True
    prev = -1
    for j in range(idx.shape[0]):
        i = idx[j]
        if i < 0 or i >= n_rows:
            return -1 - j
        if i <= prev:
            sorted_unique = False
        prev = i
    if sorted_unique:
        return -(2 ** 62)          # nothing to do: use the input as it is
    for j in range(idx.shape[0]):
        i = idx[j]
        if mark[i] != stamp:
            mark[i] = stamp
            where[i] = k
            out_idx[k] = i
            for c in range(r):
                out_val[k, c] = val[j, c]
            k += 1
        else:
            w = where[i]
            for c in range(r):
                out_val[w, c] += val[j, c]
    return k


class Coalescer:
    """Check indices and sum repeated ones, in O(k) with scratch arrays.

    Input that is already sorted and unique passes through untouched. The
    row length ``r`` is the first gradient's; with ``fixed`` (catch-up,
    which keeps a step count per row) every later one must keep it, else
    (lazy steps, which touch exactly the coordinates given in either form)
    gradients may come by coordinates one step and by rows the next.
    """

    def __init__(self, n, dtype, fixed=True):
        self.n = n
        self.dtype = dtype
        self.fixed = fixed
        self.r = None
        self.stamp = 0
        self._scratch = {}

    def __call__(self, idx, val):
        r = val.shape[1]
        if self.r is None:
            self.r = r
            n_rows = self.n // r
            self.mark = np.zeros(n_rows, np.int64)
            self.where = np.zeros(n_rows, np.int64)
            self._scratch[r] = (self.mark, self.where)
        elif r != self.r and self.fixed:
            raise ValueError(f"the sparse gradients of a run must keep their row "
                             f"length: {self.r} before, {r} now")
        scratch = self._scratch.get(r)
        if scratch is None:
            scratch = self._scratch[r] = (np.zeros(self.n // r, np.int64),
                                          np.zeros(self.n // r, np.int64))
        k = idx.shape[0]
        out_idx = np.empty(k, np.int64)
        out_val = np.empty((k, r), self.dtype)
        self.stamp += 1
        got = _coalesce(idx, val, self.n // r, scratch[0], scratch[1], self.stamp,
                        out_idx, out_val)
        if got == -(2 ** 62):
            return idx, val
        if got < 0:
            bad = int(idx[-1 - got])
            what = (f"row index {bad} out of range for {self.n // r} rows of {r}"
                    if r > 1 else f"index {bad} out of range for x0 of size {self.n}")
            raise IndexError(f"jac returned a sparse gradient with {what}")
        return out_idx[:got], out_val[:got]
