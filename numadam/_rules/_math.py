"""Arithmetic helpers for the rules, compiled for the CPU and CUDA alike.

``div_by(a, d, r)`` is ``a / d`` for a per-step scalar ``d`` whose reciprocal
``r = 1 / d`` was computed once per step. It multiplies by ``r`` and corrects
the quotient with two fused multiply-adds (Markstein's method): with ``r``
correctly rounded, the result is the correctly rounded quotient, bitwise the
IEEE division, while the per-element work is a multiply and two FMAs instead
of a division. Dividers are the scarce unit of both CPUs and GPUs: an adam
step with two divisions and a square root per element is compute-bound, with
one it is memory-bound. The identity holds when the remainder ``a - q d`` is
a normal number, which is the case for every quotient the rules form
(``sqrt(v) / sqrt(1 - beta2**t)`` and the like); a zero, infinite or NaN
``a`` gives what the division gives, sign included.
"""

import math
from fractions import Fraction

import numpy as np
from numba.core import types
from numba.extending import intrinsic, overload

#: The functions the rules call inside element loops, in definition order.
#: They are registered here for Numba's CPU target; the CUDA kernels
#: (:mod:`numadam._kernels.cuda`) register them for the CUDA target when they
#: are first built, so that importing numadam never imports CUDA.
DEVICE_FUNCTIONS = []


def jitable(fn=None, *, inline=False):
    """Make ``fn`` callable from Numba-compiled code, as
    :func:`numba.extending.register_jitable` does, and record it for the CUDA
    target. ``inline=True`` inlines it at Numba's IR level on the CPU, which
    lets the ``prange`` loops it sits in vectorise (NVVM inlines device
    functions by itself)."""

    def wrap(fn):
        def typer(*args, **kwargs):
            return fn

        overload(fn, target="cpu", inline="always" if inline else "never",
                 strict=False)(typer)
        DEVICE_FUNCTIONS.append(fn)
        return fn

    return wrap if fn is None else wrap(fn)


def fma(a, b, c):
    """``a * b + c`` rounded once, in the type of ``a`` (Python fallback:
    used by the CUDA simulator and any pure-Python run of the rules)."""
    if isinstance(a, np.float32):
        exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
        return np.float32(_round_to_float32(exact))
    if hasattr(math, "fma"):
        return math.fma(a, b, c)
    if not all(math.isfinite(v) for v in (a, b, c)):
        return a * b + c
    return float(Fraction(a) * Fraction(b) + Fraction(c))


def _round_to_float32(q):
    """The float32 nearest to the rational ``q`` (ties to even)."""
    if q == 0:
        return 0.0
    lo = np.float32(float(q))             # within one float32 ulp of q
    cands = [np.nextafter(lo, np.float32(-np.inf)), lo,
             np.nextafter(lo, np.float32(np.inf))]
    best = min(cands, key=lambda v: (abs(Fraction(float(v)) - q),
                                     int(np.float32(v).view(np.int32)) & 1))
    return float(best)


@intrinsic
def _fma(typingctx, a, b, c):
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return a(a, b, c), codegen


@overload(fma, target="cpu")
def _fma_overload(a, b, c):
    if isinstance(a, types.Float) and a == b == c:
        return lambda a, b, c: _fma(a, b, c)


@jitable(inline=True)
def div_by(a, d, r):
    """``a / d``, bitwise, given ``r = 1 / d`` (see the module docstring)."""
    q = a * r
    e = fma(-q, d, a)
    q2 = fma(e, r, q)
    if q2 != q2 or a == 0.0:   # a inf, NaN or a signed zero: a * r is a / d
        return q
    return q2


@jitable(inline=True)
def clip(xn, W, lo_row, hi_row, i):
    """``xn`` projected onto ``[W[lo_row, i], W[hi_row, i]]`` (the bounds rows
    of the kernels' work array)."""
    if xn < W[lo_row, i]:
        return W[lo_row, i]
    if xn > W[hi_row, i]:
        return W[hi_row, i]
    return xn


@jitable
def geometric_sum(r, rk, k):
    """``r + r**2 + ... + r**k`` given ``rk = r**k`` (``k`` when ``r == 1``)."""
    if r == 1.0:
        return k * 1.0
    return r * (1.0 - rk) / (1.0 - r)


@jitable
def decay_pair(c, j, beta):
    """Write a decay rate and its complement, ``beta`` and ``1 - beta``, into
    the per-step scalars ``c[j]`` and ``c[j + 1]``."""
    c[j] = beta
    c[j + 1] = 1.0 - beta
