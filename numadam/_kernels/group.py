"""One compiled step over several arrays: a parameter group.

A model's parameters are many arrays (weight matrices, biases, embeddings)
that take the same method and options. Stepping each with its own kernel
call costs a dispatch per array, and a Python loop around them; packing
them into one flat buffer would make the user's arrays copies. The group
kernel instead reads the arrays where they are, through a table of their
addresses, as ``torch``'s multi-tensor kernels do:

``T`` (int64, shape ``(ROWS, k)``)
    for array ``j``: the address of its data (``T[ROW_X, j]``), of its
    gradient for this step (``T[ROW_G, j]``, written by :func:`addresses`
    before each call), of its block of the state (``T[ROW_W, j]``, a
    C-contiguous ``(rows, n_j)`` array laid out as
    :func:`numadam._kernels.cpu.layout` says), its size ``n_j`` and the rows
    of its block;
``C`` (int64, shape ``(3, chunks)``)
    the parallel kernel's pieces of work: array, first and last element.

Each array is seen as a C-contiguous array of its own inside the kernel, so
the element loop is the dense kernel's loop (:func:`numadam._kernels.cpu.step_kernel`)
with the same arithmetic: the group's step gives bitwise what stepping each
array alone gives, and the first pass sums the squares array by array in the
same order as :class:`numadam.Optimizer` does for separate arrays.

The kernel compiles once per rule, flags, dtype and serial/parallel, however
many arrays the group has and whatever their shapes; only the small
:func:`addresses`, which reads the addresses of a tuple of gradients,
compiles for each new structure of gradients (a fraction of a second, cached
on disk).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import carray, literal_unroll, prange, types
from numba.extending import intrinsic, overload

from .._rules import get_rule, round_scalars
from .._rules._math import clip
from . import cpu
from ._jit import njit

__all__ = ["ROW_X", "ROW_G", "ROW_W", "ROW_N", "ROW_R", "ROWS", "addresses_kernel",
           "chunks", "group_step_kernel", "group_sum_squares"]

ROW_X, ROW_G, ROW_W, ROW_N, ROW_R = range(5)
ROWS = 5

#: The parallel kernel splits a group into at most this many parts of equal
#: size (a part may span several arrays, an array several parts), so that
#: Numba's static schedule gives every thread the same work for any number
#: of threads up to 16 that divides it...
PARTS = 48
#: ...and parts of at least this many elements.
LEAST = 2048


@intrinsic
def _voidptr(typingctx, addr):
    """``_voidptr(addr)``: the integer ``addr`` as a ``void *``."""
    if not isinstance(addr, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return types.voidptr(addr), codegen


def _address(a):  # pragma: no cover - replaced by its overload
    raise NotImplementedError


@overload(_address, inline="always")
def _address_impl(a):
    if not isinstance(a, types.Array):
        return None
    if a.layout == "C":
        return lambda a: a.ctypes.data
    return lambda a: 0


def _same_shape(a, shapes, k):  # pragma: no cover - replaced by its overload
    raise NotImplementedError


@overload(_same_shape, inline="always")
def _same_shape_impl(a, shapes, k):
    if a.ndim == 0:
        return lambda a, shapes, k: True

    def impl(a, shapes, k):
        s = a.shape
        for d in range(len(s)):
            if s[d] != shapes[k, d]:
                return False
        return True
    return impl


@functools.cache
def addresses_kernel(dtype_name, ndims):
    """``addresses(arrays, out, shapes) -> bool``: write the data address of
    each array of the tuple ``arrays`` (C-contiguous, writable, of
    ``dtype_name`` and the numbers of dimensions ``ndims``) into ``out``;
    False when an array's shape is not its row of ``shapes``. About 1 µs
    for ten arrays, where reading them in Python costs 0.5 µs each.

    One function per structure, compiled for that one tuple type, with
    compilation disabled after: a call with other arrays raises TypeError
    (the caller checks and converts those in Python). A cached function of
    many signatures would share one on-disk index between processes that
    add to it at once, which Numba does not guard against."""
    key = f"{dtype_name}:{','.join(map(str, ndims))}"

    @njit(cache=True, nogil=True)
    def addresses(arrays, out, shapes):
        _ = key
        k = 0
        same = True
        for a in literal_unroll(arrays):
            out[k] = _address(a)
            same = same and _same_shape(a, shapes, k)
            k += 1
        return same

    dtype = np.dtype(dtype_name)
    probe = tuple(np.zeros((1,) * d, dtype) for d in ndims)
    addresses(probe, np.zeros(len(ndims), np.int64),
              np.ones((len(ndims), max(ndims, default=0) + 1), np.int64))
    addresses.disable_compile()
    return addresses


def chunks(sizes, parts=PARTS, least=LEAST):
    """The parallel kernel's tables for arrays of ``sizes``: ``C`` (int64,
    shape ``(3, pieces)``: array, first and last element of each piece) and
    ``B`` (the first piece of each part, and the number of pieces last).

    The group's elements, array after array, are cut into equal parts; a
    piece is the part of one array that falls in one part."""
    total = int(sum(sizes))
    n_parts = max(1, min(parts, total // least))
    cuts = [(q * total) // n_parts for q in range(n_parts + 1)]
    pieces, first = [], []
    start = 0
    q = 0
    for j, n in enumerate(sizes):
        end = start + n
        lo = start
        while lo < end:
            while cuts[q + 1] <= lo:
                q += 1
            hi = min(end, cuts[q + 1])
            if len(first) <= q:
                first.extend([len(pieces)] * (q + 1 - len(first)))
            pieces.append((j, lo - start, hi - start))
            lo = hi
        start = end
    first.extend([len(pieces)] * (n_parts + 1 - len(first)))
    C = np.array(pieces, dtype=np.int64).reshape(-1, 3).T.copy()
    return C, np.array(first, dtype=np.int64)


@functools.cache
def group_sum_squares(dtype_name, parallel):
    """``sumsq(T) -> float``: the sum of the squares of the group's gradients,
    array by array with the dense kernels' first pass, added in order."""
    dtype = np.dtype(dtype_name).type
    first = cpu.sum_squares_kernel(parallel)

    @njit(**cpu._JIT)
    def sumsq(T):
        total = 0.0
        for j in range(T.shape[1]):
            g = carray(_voidptr(T[ROW_G, j]), (T[ROW_N, j],), dtype)
            total += first(g)
        return total

    return sumsq


@functools.cache
def group_step_kernel(rule_name, F, parallel, dtype_name):
    """The dense update step of a rule over a group: ``step(T, C, P, lr)``.

    ``P`` is an engine's scalars (:func:`numadam._engine.plan`), shared by
    the group's arrays: the step count advances once per call. The first
    pass, when the rule or clipping needs it, sums the squares of all the
    group's gradients (or takes the sum a caller put in ``P``'s gradient
    block), and every array's update sees the same factor.
    """
    rule = get_rule(rule_name)
    coefficients = rule.coefficients
    reduced = rule.reduced_coefficients
    update = rule.update
    version = cpu.fingerprint(rule_name)
    _, H, A = cpu.layout(rule_name, False, False)
    K, _ = cpu.gradient_block(rule_name)
    rule_sums, gsq_at = cpu.reduction_plan(rule)
    n_slots = len(rule.slots(F))
    dtype = np.dtype(dtype_name).type
    itemsize = np.dtype(dtype_name).itemsize
    sumsq = group_sum_squares(dtype_name, parallel)
    G_R = cpu.G_R

    def scalars(P, lr, own):
        cf = P[H + A:]
        coefficients(P[:H], P[H:H + A], lr, F, cf, dtype)
        s = cpu.gradient_factor(P, K, own)
        if rule_sums:
            cpu.store_reductions(P, K, own, s, gsq_at)
            reduced(P[K + G_R:], cf, F)
        return round_scalars(cf, dtype), dtype(s)

    # a call, not inlined: the parallel pass's array analysis cannot follow
    # the tuple an inlined function returns
    scalars = njit(**cpu._JIT)(scalars)

    def piece(T, j, lo, hi, c, sT):
        # the arrays seen from element lo on, so that the loop index starts
        # at 0: an index known to be >= 0 lets LLVM drop the negative-index
        # wrap-around and vectorise the loop as the dense kernel's (twice
        # the speed of range(lo, hi) over the whole arrays); W's rows keep
        # their stride n_j, and only elements below hi - lo are touched
        n = T[ROW_N, j]
        rows = T[ROW_R, j]
        m = hi - lo
        shift = lo * itemsize
        x = carray(_voidptr(T[ROW_X, j] + shift), (m,), dtype)
        g = carray(_voidptr(T[ROW_G, j] + shift), (m,), dtype)
        W = carray(_voidptr(T[ROW_W, j] + shift), (rows, n), dtype)
        off = rows - n_slots
        bounded = off >= 2
        lo_row = off - 2
        S = W[off:]
        for i in range(m):
            xn = update(i, x, g[i] * sT, S, c, F)
            if bounded:
                xn = clip(xn, W, lo_row, lo_row + 1, i)
            x[i] = xn

    # the element loop of one piece of one array, a function of its own so
    # that the parallel kernel's loop over pieces leaves it as the serial
    # kernel compiles it
    piece = njit(**cpu._JIT)(piece)

    if not parallel:
        @njit(**cpu._JIT)
        def step(T, C, B, P, lr):
            _ = version
            own = sumsq(T) if cpu.needs_sum(P, K, rule_sums) else 0.0
            c, sT = scalars(P, lr, own)
            for j in range(T.shape[1]):
                piece(T, j, 0, T[ROW_N, j], c, sT)
        return step

    @njit(parallel=True, **cpu._JIT)
    def step_parallel(T, C, B, P, lr):
        _ = version
        own = sumsq(T) if cpu.needs_sum(P, K, rule_sums) else 0.0
        c, sT = scalars(P, lr, own)
        for q in prange(B.shape[0] - 1):
            for p in range(B[q], B[q + 1]):
                piece(T, C[0, p], C[1, p], C[2, p], c, sT)
    return step_parallel
