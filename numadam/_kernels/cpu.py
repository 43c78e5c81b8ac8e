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
import os
import sys

import numpy as np
from numba import prange

from .. import _rules
from .._rules import Rule, get_rule, round_scalars, scalar_tuple
from .._rules import _math as rule_math
from .._rules._math import clip
from ._jit import njit

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


@functools.cache
def fingerprint(rule_name):
    """A digest of the source of the rule's module and of the rule contract
    and helpers it builds on (:mod:`numadam._rules`, ``_rules._math``).

    It is a closure constant of every kernel built from the rule, so that
    Numba's on-disk cache, which watches only the file that defines the
    kernel, is invalidated when a rule or a helper it inlines changes.
    """
    digest = hashlib.sha256()
    for module in (sys.modules[get_rule(rule_name).update.__module__], _rules,
                   rule_math):
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
    running scalars ``aux`` and room for the per-step scalars. Returns
    ``(first slot row of W, len(h), len(aux))``.
    """
    rule = get_rule(rule_name)
    return int(backup) + 2 * int(bounded), len(rule.hyper), len(rule.aux)


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
    """
    rule = get_rule(rule_name)
    coefficients = rule.coefficients
    update = rule.update
    loop = prange if parallel else range
    version = fingerprint(rule_name)
    _, H, A = layout(rule_name, False, False)
    n_slots = len(rule.slots(F))

    @njit(parallel=parallel, **_JIT)
    def step(x, g, W, P, lr):
        _ = version
        cf = P[H + A:]
        T = x.dtype.type
        coefficients(P[:H], P[H:H + A], lr, F, cf, T)
        c = round_scalars(cf, T)
        off = W.shape[0] - n_slots
        backup = off == 1 or off == 3
        bounded = off >= 2
        lo_row = off - 2
        S = W[off:]
        for i in loop(x.shape[0]):
            xn = update(i, x, g[i], S, c, F)
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
    they include the sparse modes' scalars (``Rule.sparse_coefficients``)."""
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
