"""CPU kernels built from the element-wise rules with ``numba.njit``.

Every kernel is made by a small factory and kept per ``(rule, flags, ...)``
key, both in this process (``functools.cache``) and on disk (Numba's
``cache=True``).  The compile-time switches a kernel is specialised on are
closure constants, so Numba folds them away and a disabled feature costs
nothing in the element loop.  Each factory makes a serial kernel (``range``)
and a parallel one (``prange``) from the same source; callers choose with
:func:`use_parallel`.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import os
import sys

import numpy as np
from llvmlite import ir
from numba import get_num_threads, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload, register_jitable

from .. import _rules
from .._rules import NC, Rule, get_rule, round_scalars, scalar_tuple
from .._rules import _math as rule_math
from .._rules._math import clip
from ._jit import njit
from .threads import usable_cpus

_JIT = dict(cache=True, error_model="numpy", nogil=True)

math_nan = float("nan")


def use_parallel(n, parallel=None, rule=None, dtype=np.float64):
    """Whether an array of ``n`` elements should use the parallel kernels:
    ``parallel`` when it is True or False, else by the size from which the
    rule's parallel kernel is faster (:attr:`numadam._rules.Rule.parallel_threshold`;
    the adaptive rules' value when ``rule`` is None)."""
    if parallel is None:
        f64, f32 = (get_rule(rule).parallel_threshold if rule is not None
                    else Rule._field_defaults["parallel_threshold"])
        return n >= (f32 if np.dtype(dtype) == np.float32 else f64)
    return bool(parallel)


def parallel_mode(n, parallel=None, rule=None, dtype=np.float64):
    """How the kernels of an array of ``n`` elements run: True (parallel,
    forced), False (serial: forced, below twice the size from which the
    parallel kernel wins on an idle machine, where the gain would not pay for
    measuring, or with one usable CPU) or None (measured:
    :class:`numadam._kernels.threads.Adaptive`)."""
    if parallel is not None:
        return bool(parallel)
    if usable_cpus() < 2 or not use_parallel(n // 2, None, rule, dtype):
        return False
    return None


@functools.cache
def fingerprint(rule_name):
    """A digest of the source of the rule's module and of the rule contract
    and helpers it builds on (:mod:`numadam._rules`, ``_rules._math``, and
    this module, whose first-pass helpers the sparse kernels inline too).

    It is a closure constant of every kernel built from the rule, so that
    Numba's on-disk cache, which watches only the file that defines the
    kernel, is invalidated when a rule or a helper it inlines changes.
    """
    digest = hashlib.sha256()
    for module in (sys.modules[get_rule(rule_name).update.__module__], _rules,
                   rule_math, sys.modules[__name__]):
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):  # pragma: no cover - no source on disk
            source = repr(module.__dict__.get("__file__")) + str(os.getpid())
        digest.update(source.encode())
    return digest.hexdigest()


def layout(rule_name, bounded, backup):
    """Where a step kernel finds its arrays.

    ``W`` (rows, n), in the parameters' dtype, holds the previous iterate
    (with ``backup``), the lower and upper bounds (with ``bounded``) and then
    the rule's state slots; ``P`` (float64) holds the hyperparameters, the
    running scalars ``aux``, room for the per-step scalars (``NC``) and then
    the gradient block (:func:`gradient_block`). Returns
    ``(first slot row of W, len(h), len(aux))``.
    """
    rule = get_rule(rule_name)
    return int(backup) + 2 * int(bounded), len(rule.hyper), len(rule.aux)


# The gradient block of P, read and written by the first pass of every step
# kernel (see :func:`gradient_block`).
#: ``clip_norm``, 0.0 when the run does not clip.
G_CLIP = 0
#: The sum of squares of the whole gradient when the caller computed it over
#: several arrays (:class:`numadam.Optimizer`); negative: the kernel sums
#: its own gradient.
G_TOTAL = 1
#: The clipping factor of the last step's gradient (1.0: none).
G_SCALE = 2
#: -1.0 to ascend (``maximize``), 1.0 to descend: the sign of every step's
#: factor of the gradient.
G_SIGN = 3
#: The rule's reductions (:attr:`numadam._rules.Rule.reductions`) of the last
#: step, from here on.
G_R = 4


def gradient_block(rule_name):
    """``(offset, size)`` of the gradient block in ``P``: ``G_CLIP``,
    ``G_TOTAL``, ``G_SCALE`` and the rule's reductions, after the per-step
    scalars."""
    rule = get_rule(rule_name)
    return len(rule.hyper) + len(rule.aux) + NC, G_R + len(rule.reductions)


# ---------------------------------------------------------- first pass --
#
# A step kernel's first pass must leave its element loop as fast as it was,
# and that loop is fragile. Measured on adam (see asv_bench/step_layout.py):
# a loop of any kind written into the kernel changes how LLVM unswitches the
# element loop on the layout (up to 7 times slower with bounds); a call of
# another Numba function, or an array made in a branch, keeps Numba from
# pruning the reference counts of the kernel's arrays (eight atomic
# operations, +20 ns a step, a third of a step on two variables); an
# ``if scaled`` in the element loop, or a second copy of the loop for the
# scaled gradient, loses its vectorisation on some layout. What keeps both:
# the serial sum is a function LLVM may not inline, called from an intrinsic
# behind a branch (:func:`sum_squares_call`), and the element loop reads
# ``g[i] * s`` with ``s = 1`` when nothing is clipped, which changes no bit
# and costs a multiply per element (a few percent on adam's compute-bound
# step, nothing on two variables).

#: The parallel first pass sums squares in blocks of this many elements on
#: the threads, the blocks' sums added in order ...
SUM_BLOCK = 1 << 16
#: ... from this many elements on: one thread sums 1e5 float64 in about
#: 18 us, faster than the threads do, and as fast as memory allows past a
#: few million (measured on the 2-core reference machine).
SUM_PARALLEL = 1 << 21


def _sum_squares_function(module, elt):
    """``double numadam_sum_squares_<elt>_<tag>(elt *p, i64 n)`` in
    ``module``: ``sum(p[:n]**2)``, each element widened to double, the
    additions free to be reordered (so that the loop vectorises); internal
    and never inlined."""
    dbl = ir.DoubleType()
    i64 = ir.IntType(64)
    fnty = ir.FunctionType(dbl, [elt.as_pointer(), i64])
    # a name of the module's own: Numba records the functions a cached
    # library defines by name, internal ones included
    tag = hashlib.sha256(module.name.encode()).hexdigest()[:16]
    fn = cgutils.get_or_insert_function(module, fnty, f"numadam_sum_squares_{elt}_{tag}")
    if not fn.is_declaration:
        return fn
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    p, n = fn.args
    entry = fn.append_basic_block("entry")
    loop = fn.append_basic_block("loop")
    done = fn.append_basic_block("done")
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", n, i64(0)), loop, done)
    b = ir.IRBuilder(loop)
    i = b.phi(i64)
    acc = b.phi(dbl)
    v = b.load(b.gep(p, [i]))
    if elt != dbl:
        v = b.fpext(v, dbl)
    acc2 = b.fadd(acc, b.fmul(v, v), flags=("reassoc",))
    i2 = b.add(i, i64(1))
    i.add_incoming(i64(0), entry)
    i.add_incoming(i2, loop)
    acc.add_incoming(dbl(0.0), entry)
    acc.add_incoming(acc2, loop)
    b.cbranch(b.icmp_signed("<", i2, n), loop, done)
    b = ir.IRBuilder(done)
    r = b.phi(dbl)
    r.add_incoming(dbl(0.0), entry)
    r.add_incoming(acc2, loop)
    b.ret(r)
    return fn


@intrinsic
def sum_squares_call(typingctx, a, lo, m):
    """``sum_squares_call(a, lo, m)``: the sum of the squares of the ``m``
    elements of the C-contiguous float array ``a`` (any shape, in memory
    order) from the ``lo``-th on, in float64, by a call of
    :func:`_sum_squares_function`."""
    if not (isinstance(a, types.Array) and a.layout == "C"
            and isinstance(a.dtype, types.Float) and isinstance(lo, types.Integer)
            and isinstance(m, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        aty = signature.args[0]
        ary = context.make_array(aty)(context, builder, args[0])
        fn = _sum_squares_function(builder.module, context.get_data_type(aty.dtype))
        start = context.cast(builder, args[1], signature.args[1], types.int64)
        count = context.cast(builder, args[2], signature.args[2], types.int64)
        return builder.call(fn, [builder.gep(ary.data, [start]), count])

    return types.float64(a, lo, m), codegen


def own_sum(a, need):  # pragma: no cover - replaced by its overload
    """``sum(a**2)`` in float64 when ``need``, else 0: the serial first pass
    over a gradient (1-D) or a sparse gradient's values (2-D)."""
    raise NotImplementedError


@overload(own_sum, inline="always")
def _own_sum_impl(a, need):
    if not (isinstance(a, types.Array) and isinstance(a.dtype, types.Float)):
        return None
    if a.layout == "C":
        return lambda a, need: sum_squares_call(a, 0, a.size) if need else 0.0

    def impl(a, need):                  # other layouts: plain code, in order
        s = 0.0
        if need:
            for v in a.flat:
                w = np.float64(v)
                s += w * w
        return s
    return impl


@njit(**_JIT)
def sum_squares(g):
    """``sum(g**2)`` in float64 as the serial kernels' first pass forms it
    (for :class:`numadam.Optimizer`'s sum over several arrays)."""
    return own_sum(g, True)


@njit(parallel=True, **_JIT)
def _sum_squares_threads(g):
    n = g.shape[0]
    nb = (n + SUM_BLOCK - 1) // SUM_BLOCK
    parts = np.empty(nb)
    for b in prange(nb):
        lo = b * SUM_BLOCK
        parts[b] = sum_squares_call(g, lo, min(SUM_BLOCK, n - lo))
    s = 0.0
    for b in range(nb):
        s += parts[b]
    return s


def _sum_squares_wide(g):  # pragma: no cover - replaced by its overload
    raise NotImplementedError


@overload(_sum_squares_wide)
def _sum_squares_wide_impl(g):
    if not (isinstance(g, types.Array) and g.ndim == 1 and g.layout == "C"):
        return lambda g: own_sum(g, True)

    def impl(g):
        if g.shape[0] < SUM_PARALLEL:
            return own_sum(g, True)
        return _sum_squares_threads(g)
    return impl


@njit(**_JIT)
def sum_squares_parallel(g):
    """``sum(g**2)`` over a 1-D array in float64: the parallel kernels' first
    pass. From :data:`SUM_PARALLEL` elements on, in blocks of
    :data:`SUM_BLOCK` on the threads (their sums added in order); below, one
    thread streams faster than waking the others."""
    return _sum_squares_wide(g)


def sum_squares_kernel(parallel):
    """``sumsq(g) -> float``: the sum of squares of a 1-D gradient as the
    dense kernels' first pass forms it (serial or parallel); the sparse
    kernels' is :func:`sum_squares` of the values."""
    if parallel:
        start_threads()
        return sum_squares_parallel
    return sum_squares


def start_threads():
    """Start Numba's threading layer, before a cached function that calls a
    parallel one without being parallel itself is loaded: Numba starts the
    layer when it loads a parallel function from the disk cache, not when
    it loads a caller of one, whose machine code then cannot be linked
    ("Symbol not found: allocate_sched")."""
    get_num_threads()


@register_jitable
def needs_sum(P, K, rule_sums):
    """Whether the first pass sums the squares of the kernel's own gradient
    (``P[K:]`` is the gradient block): the rule reads them, or the run clips
    and no caller gave the sum over all its arrays."""
    return rule_sums or (P[K + G_CLIP] > 0.0 and P[K + G_TOTAL] < 0.0)


@register_jitable
def own_sum_parallel(g, need):
    """The parallel kernels' first pass: :func:`sum_squares_parallel` when
    ``need`` (a call behind a branch costs nothing next to a parallel
    step)."""
    if need:
        return sum_squares_parallel(g)
    return 0.0


@register_jitable
def clip_factor(clip_norm, total):
    """The factor of a gradient whose squares sum to ``total``, as
    ``torch.nn.utils.clip_grad_norm_`` forms it: ``clip_norm / (norm +
    1e-6)`` clamped to at most 1 (NaN stays NaN, as in torch)."""
    coef = clip_norm / (math.sqrt(total) + 1e-6)
    if coef >= 1.0:
        return 1.0
    return coef


@register_jitable
def gradient_factor(P, K, own):
    """The step's factor of the gradient: its sign ``P[K + G_SIGN]`` (-1.0
    with ``maximize``: the negation is exact, as torch's ``-grad``) times
    1.0 without clipping, else :func:`clip_factor` of the sum over all
    arrays (``P[K + G_TOTAL]``, or this gradient's ``own``), recorded in
    ``P[K + G_SCALE]``."""
    clip_norm = P[K + G_CLIP]
    sign = P[K + G_SIGN]
    if clip_norm > 0.0:
        total = P[K + G_TOTAL]
        s = clip_factor(clip_norm, own if total < 0.0 else total)
        P[K + G_SCALE] = s
        return sign * s
    return sign


@register_jitable
def store_reductions(P, K, own, s, gsq_at):
    """The rule's reductions of the gradient it sees (``s`` times the one
    given) into ``P[K + G_R:]``: ``"gsq"`` at ``gsq_at`` (-1: not read)."""
    if gsq_at >= 0:
        P[K + G_R + gsq_at] = own * (s * s)


def reduction_plan(rule):
    """``(reads any reduction, position of "gsq" or -1)`` for the kernels'
    first pass: closure constants, so that a rule without reductions
    compiles no code for them."""
    red = rule.reductions
    return len(red) > 0, (red.index("gsq") if "gsq" in red else -1)


@functools.cache
def step_kernel(rule_name, F, parallel):
    """The dense update step of a rule: ``step(x, g, W, P, lr)``.

    It advances the step count, computes the per-step scalars (in float64,
    rounded once to x's dtype) and updates ``x`` and the state slots in
    place; see :func:`layout` for ``W`` and ``P``. When ``W`` holds bounds
    the new iterate is projected onto them; when it holds a row for the
    previous iterate, x is saved there in the same pass. Both are read from
    the number of rows of ``W`` when the step runs, so one kernel serves
    every layout (the branches are the same for every element, and LLVM
    moves them out of the loop). Five arguments keep the Python-side call
    cheap: Numba's dispatch costs about 80 ns per array argument.

    The first pass (:func:`own_sum`, the sum of squares of ``g``) reads
    ``g`` only when the rule declares reductions or the gradient block of
    ``P`` asks for clipping. The element loop reads ``g[i] * s``, with the step's
    factor ``s`` rounded to x's dtype: 1 without clipping, which changes no
    bit; the multiply costs less than a branch that would skip it (measured
    with ``asv_bench/step_layout.py``).
    """
    rule = get_rule(rule_name)
    coefficients = rule.coefficients
    reduced = rule.reduced_coefficients
    update = rule.update
    loop = prange if parallel else range
    version = fingerprint(rule_name)
    _, H, A = layout(rule_name, False, False)
    K, _ = gradient_block(rule_name)
    rule_sums, gsq_at = reduction_plan(rule)
    first = own_sum_parallel if parallel else own_sum
    n_slots = len(rule.slots(F))

    @njit(parallel=parallel, **_JIT)
    def step(x, g, W, P, lr):
        _ = version
        cf = P[H + A:]
        T = x.dtype.type
        coefficients(P[:H], P[H:H + A], lr, F, cf, T)
        own = first(g, needs_sum(P, K, rule_sums))
        s = gradient_factor(P, K, own)
        if rule_sums:
            store_reductions(P, K, own, s, gsq_at)
            reduced(P[K + G_R:], cf, F)
        c = round_scalars(cf, T)
        sT = T(s)
        off = W.shape[0] - n_slots
        backup = off == 1 or off == 3
        bounded = off >= 2
        lo_row = off - 2
        S = W[off:]
        for i in loop(x.shape[0]):
            xn = update(i, x, g[i] * sT, S, c, F)
            if backup:
                W[0, i] = x[i]
            if bounded:
                xn = clip(xn, W, lo_row, lo_row + 1, i)
            x[i] = xn

    return step


@functools.cache
def scalars_kernel(rule_name, F, H, A):
    """``scalars(P, lr, proto) -> (c, cf)``: advance the step count in ``P``
    and return the step's scalars as :func:`step_kernel` forms them: ``c``
    rounded to the dtype of the array ``proto``, ``cf`` in float64. For
    kernels that run elsewhere (CUDA) and take the scalars as arguments;
    they include the sparse modes' scalars (``Rule.sparse_coefficients``);
    :func:`reduced_scalars_kernel` completes them for rules with reductions."""
    rule = get_rule(rule_name)
    coefficients = rule.coefficients
    sparse_coefficients = rule.sparse_coefficients
    version = fingerprint(rule_name)

    @njit(**_JIT)
    def scalars(P, lr, proto):
        _ = version
        cf = P[H + A:]
        T = proto.dtype.type
        coefficients(P[:H], P[H:H + A], lr, F, cf, T)
        sparse_coefficients(lr, cf)
        return round_scalars(cf, T), scalar_tuple(cf)

    return scalars


@functools.cache
def reduced_scalars_kernel(rule_name, F, H, A):
    """``reduced(P, R, proto) -> (c, cf)``: the scalars :func:`scalars_kernel`
    left in ``P``, completed by the rule's ``reduced_coefficients`` from its
    reductions ``R`` (float64), rounded as there."""
    reduced = get_rule(rule_name).reduced_coefficients
    version = fingerprint(rule_name)

    @njit(**_JIT)
    def finish(P, R, proto):
        _ = version
        cf = P[H + A:]
        reduced(R, cf, F)
        T = proto.dtype.type
        return round_scalars(cf, T), scalar_tuple(cf)

    return finish


@functools.cache
def grad_norm_kernel(parallel):
    """``gnorm(g)``: the largest ``|g_i|``, or NaN if any ``g_i`` is not finite."""
    loop = prange if parallel else range

    @njit(parallel=parallel, **_JIT)
    def gnorm(g):
        m = 0.0
        bad = 0.0
        for i in loop(g.shape[0]):
            gi = g[i]
            m = max(m, abs(gi))
            bad += gi - gi
        if bad != 0.0 or m != m:
            return math_nan
        return m

    return gnorm


@functools.cache
def change_kernel(parallel):
    """``change(x, xprev)``: ``(max |x - xprev|, max |x|)`` for the xtol test."""
    loop = prange if parallel else range

    @njit(parallel=parallel, **_JIT)
    def change(x, xprev):
        d = 0.0
        s = 0.0
        for i in loop(x.shape[0]):
            d = max(d, abs(x[i] - xprev[i]))
            s = max(s, abs(x[i]))
        return d, s

    return change


@functools.cache
def average_kernel(parallel):
    """``average(A, x, w)``: ``A += w * (x - A)``, the iterate average's step."""
    loop = prange if parallel else range

    @njit(parallel=parallel, **_JIT)
    def average(A, x, w):
        ww = x.dtype.type(w)
        for i in loop(x.shape[0]):
            a = A[i]
            A[i] = a + ww * (x[i] - a)

    return average


#: Minibatch gathers of at least this many bytes use the parallel kernel
#: (measured on the 2-core reference machine: 256 rows of 100 float64 take
#: 36 us serial and 19 us parallel; below about 32 KB threads do not pay).
GATHER_PARALLEL_BYTES = 32 * 1024


@functools.cache
def gather_kernel(ndim, parallel):
    """``gather(a, buf, perm, pos, m)``: rows ``perm[pos:pos + m]`` of ``a``
    into ``buf[:m]``. Element by element for 1-D and 2-D arrays (three times
    faster than assigning rows), row by row beyond."""
    loop = prange if parallel else range
    if ndim == 1:
        def gather(a, buf, perm, pos, m):
            for r in loop(m):
                buf[r] = a[perm[pos + r]]
    elif ndim == 2:
        def gather(a, buf, perm, pos, m):
            for r in loop(m):
                src = perm[pos + r]
                for j in range(a.shape[1]):
                    buf[r, j] = a[src, j]
    else:
        def gather(a, buf, perm, pos, m):
            for r in loop(m):
                buf[r] = a[perm[pos + r]]
    return njit(parallel=parallel, **_JIT)(gather)
