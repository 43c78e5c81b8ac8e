"""Kernels for sparse gradients, built from the same rules as the dense ones.

A sparse gradient is ``(idx, val)``: ``idx`` holds unique row numbers and
``val`` the gradient of each row, shape ``(k, r)``, with ``x`` seen as rows of
``r`` coordinates (``r = 1``: single coordinates). Rows keep the inner loop
contiguous, so an embedding table's update vectorises like a dense one.

- ``lazy``: only the touched coordinates are read and written; the rule is
  the dense element rule (adam: torch.optim.SparseAdam's, ``lazy_update``).
- ``catchup``: a touched row first replays, in closed form, the zero-gradient
  steps it skipped since it was last updated (``catchup_factors`` once per
  row, ``catchup`` per coordinate), then takes the dense rule's step; ``last``
  (int64, one per row) records each row's last step. :func:`flush_kernel`
  brings every row up to date at the end of a run.
- ``dense``: :func:`densify_kernel` scatters the gradient into a dense buffer
  for the dense step kernel.

The gradient's norm is the dense kernel's, on ``val`` seen as a flat array.
Every kernel advances the step count and computes the step's scalars as the
dense step kernel does (``W``, ``P`` as in :func:`numadam._kernels.cpu.layout`),
runs the same first pass over ``val`` when the rule has reductions or the run
clips (the coordinates without a gradient add nothing to a sum of squares),
and backs up the touched values of x into ``xb`` when asked, so that a
non-finite value can be undone without a copy of all of x.
"""

from __future__ import annotations

import functools

from llvmlite import ir
from numba import prange, types, uint64
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

from .._rules import get_rule, round_scalars
from .._rules._math import clip
from ._jit import njit
from .cpu import (_JIT, G_R, fingerprint, gradient_block, gradient_factor, layout,
                  needs_sum, own_sum, reduction_plan, store_reductions)


#: How many rows ahead of the one being updated the lazy and catch-up
#: kernels prefetch (the first cache line of x and of each state slot).
#: Measured with ``python asv_bench/compare.py --only f``'s problem: the
#: rows of an embedding table lie at random addresses, and a row's first
#: miss otherwise stalls the update; eight rows ahead brings the lazy step
#: from 1.29 to 1.10 times the time of a kernel that moves the same bytes.
PREFETCH_ROWS = 8


@intrinsic
def prefetch(typingctx, a, i):
    """Hint that element ``i`` of the 1-D array ``a`` will be written soon
    (``llvm.prefetch``): no effect on results, no fault on any address."""
    if not (isinstance(a, types.Array) and a.ndim == 1 and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # write access, high temporal locality, data cache
        builder.call(fn, [ptr, i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(a, i), codegen


@register_jitable
def prefetch_row(x, S, idx, j, r):
    """Prefetch the start of row ``idx[j + PREFETCH_ROWS]`` in x and in every
    state slot, when there is such a row."""
    ahead = j + PREFETCH_ROWS
    if ahead < idx.shape[0]:
        b = row_start(idx[ahead], r)
        prefetch(x, b)
        for s in range(S.shape[0]):
            prefetch(S[s], b)


@register_jitable
def row_start(row, r):
    """The first coordinate of row ``row``, as an unsigned integer.

    Row numbers are checked before any kernel runs (:mod:`numadam._sparse`),
    so every coordinate is non-negative; saying so with an unsigned index
    spares Numba's negative-index wrap-around, which would make the
    addresses of a row non-affine and keep LLVM from vectorising its
    update (four times slower on a row in cache). Coordinates of a row are
    ``row_start(row, r) + uint64(q)``.
    """
    return uint64(row) * uint64(r)


@functools.cache
def lazy_kernel(rule_name, F, parallel, bounded, backup):
    """``step(x, idx, val, W, P, lr, xb)``: the lazy sparse step."""
    rule = get_rule(rule_name)
    coefficients = rule.coefficients
    sparse_coefficients = rule.sparse_coefficients
    reduced = rule.reduced_coefficients
    update = rule.lazy_update if rule.lazy_update is not None else rule.update
    loop = prange if parallel else range
    version = fingerprint(rule_name)
    off, H, A = layout(rule_name, bounded, backup)
    K, _ = gradient_block(rule_name)
    rule_sums, gsq_at = reduction_plan(rule)
    lo_row = int(backup)
    hi_row = lo_row + 1

    @njit(parallel=parallel, **_JIT)
    def step(x, idx, val, W, P, lr, xb):
        _ = version
        cf = P[H + A:]
        T = x.dtype.type
        coefficients(P[:H], P[H:H + A], lr, F, cf, T)
        sparse_coefficients(lr, cf)
        S = W[off:]
        r = val.shape[1]
        own = own_sum(val, needs_sum(P, K, rule_sums))
        s = gradient_factor(P, K, own)
        if rule_sums:
            store_reductions(P, K, own, s, gsq_at)
            reduced(P[K + G_R:], cf, F)
        c = round_scalars(cf, T)
        sT = T(s)
        for j in loop(idx.shape[0]):
            prefetch_row(x, S, idx, j, r)
            base = row_start(idx[j], r)
            for q in range(r):
                i = base + uint64(q)
                xn = update(i, x, val[j, q] * sT, S, c, F)
                if backup:
                    xb[j, q] = x[i]
                if bounded:
                    xn = clip(xn, W, lo_row, hi_row, i)
                x[i] = xn

    return step


@functools.cache
def catchup_kernel(rule_name, F, parallel, bounded, backup):
    """``step(x, idx, val, W, P, lr, xb, last)``: the catch-up sparse step."""
    rule = get_rule(rule_name)
    coefficients = rule.coefficients
    sparse_coefficients = rule.sparse_coefficients
    reduced = rule.reduced_coefficients
    update = rule.update
    factors = rule.catchup_factors
    replay = rule.catchup
    has_catchup = factors is not None
    loop = prange if parallel else range
    version = fingerprint(rule_name)
    off, H, A = layout(rule_name, bounded, backup)
    K, _ = gradient_block(rule_name)
    rule_sums, gsq_at = reduction_plan(rule)
    lo_row = int(backup)
    hi_row = lo_row + 1

    @njit(parallel=parallel, **_JIT)
    def step(x, idx, val, W, P, lr, xb, last):
        _ = version
        cf = P[H + A:]
        T = x.dtype.type
        coefficients(P[:H], P[H:H + A], lr, F, cf, T)
        sparse_coefficients(lr, cf)
        t = int(P[H])
        S = W[off:]
        r = val.shape[1]
        own = own_sum(val, needs_sum(P, K, rule_sums))
        s = gradient_factor(P, K, own)
        if rule_sums:
            store_reductions(P, K, own, s, gsq_at)
            reduced(P[K + G_R:], cf, F)
        c = round_scalars(cf, T)
        sT = T(s)
        for j in loop(idx.shape[0]):
            prefetch_row(x, S, idx, j, r)
            row = idx[j]
            base = row_start(row, r)
            skipped = t - last[row] - 1
            if has_catchup and skipped > 0:
                f = factors(skipped, cf, F)
                for q in range(r):
                    i = base + uint64(q)
                    if backup:
                        xb[j, q] = x[i]
                    x[i] = replay(i, x, S, f, F)
            elif backup:
                for q in range(r):
                    xb[j, q] = x[base + uint64(q)]
            for q in range(r):
                i = base + uint64(q)
                xn = update(i, x, val[j, q] * sT, S, c, F)
                if bounded:
                    xn = clip(xn, W, lo_row, hi_row, i)
                x[i] = xn
            last[row] = t

    return step


@functools.cache
def flush_kernel(rule_name, F, parallel, bounded, backup):
    """``flush(x, W, P, last, r)``: replay, for every row, the steps it missed
    up to the current step (the last step's scalars stand for them)."""
    rule = get_rule(rule_name)
    factors = rule.catchup_factors
    replay = rule.catchup
    has_catchup = factors is not None
    loop = prange if parallel else range
    version = fingerprint(rule_name)
    off, H, A = layout(rule_name, bounded, backup)
    lo_row = int(backup)
    hi_row = lo_row + 1

    @njit(parallel=parallel, **_JIT)
    def flush(x, W, P, last, r):
        _ = version
        cf = P[H + A:]
        t = int(P[H])
        S = W[off:]
        for row in loop(last.shape[0]):
            missed = t - last[row]
            if has_catchup and missed > 0:
                f = factors(missed, cf, F)
                base = row_start(row, r)
                for q in range(r):
                    i = base + uint64(q)
                    xn = replay(i, x, S, f, F)
                    if bounded:
                        xn = clip(xn, W, lo_row, hi_row, i)
                    x[i] = xn
            last[row] = t

    return flush


@functools.cache
def densify_kernel(parallel):
    """``densify(idx, val, g)``: the sparse gradient as the dense ``g``."""
    loop = prange if parallel else range

    @njit(parallel=parallel, **_JIT)
    def densify(idx, val, g):
        for i in loop(g.shape[0]):
            g[i] = 0.0
        r = val.shape[1]
        for j in loop(idx.shape[0]):
            base = row_start(idx[j], r)
            for q in range(r):
                g[base + uint64(q)] = val[j, q]

    return densify


@functools.cache
def change_kernel(parallel):
    """``change(x, idx, xb)``: ``(max |x - x_before|, max |x|)`` over the rows a
    sparse step touched (``xb`` holds their values before it)."""
    loop = prange if parallel else range

    @njit(parallel=parallel, **_JIT)
    def change(x, idx, xb):
        d = 0.0
        s = 0.0
        r = xb.shape[1]
        for j in loop(idx.shape[0]):
            base = row_start(idx[j], r)
            for q in range(r):
                xi = x[base + uint64(q)]
                d = max(d, abs(xi - xb[j, q]))
                s = max(s, abs(xi))
        return d, s

    return change


@functools.cache
def restore_kernel(parallel):
    """``restore(x, idx, xb)``: put back the touched values saved in ``xb``."""
    loop = prange if parallel else range

    @njit(parallel=parallel, **_JIT)
    def restore(x, idx, xb):
        r = xb.shape[1]
        for j in loop(idx.shape[0]):
            base = row_start(idx[j], r)
            for q in range(r):
                x[base + uint64(q)] = xb[j, q]

    return restore
