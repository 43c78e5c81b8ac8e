"""CUDA kernels built from the element-wise rules with ``numba.cuda.jit``.

The kernels call the very functions the CPU kernels call (``rule.update``,
``rule.lazy_update``, ``rule.catchup`` ...): there is no second copy of the
math. :data:`numadam._rules._math.DEVICE_FUNCTIONS` lists them; this module
registers each for the CUDA target when it is first imported (importing
numadam alone never imports CUDA). ``fma`` maps onto the hardware's fused
multiply-add.

The per-step scalars are computed on the host, in float64 and rounded once
to the element type, by :func:`numadam._kernels.cpu.scalars_kernel`, and
passed as a tuple argument: the step count and the running scalars stay on
the host, and a step is one kernel launch.

The first pass of a step (see :mod:`numadam._rules`) is two more launches
when a run clips: :func:`sum_squares_kernel` adds the gradient's squares into
a float64 device array ``R``, and :func:`scale_kernel` turns the sum into the
gradient's factor, in a one-element device array ``Sc`` of x's dtype that
every step kernel reads (1 without clipping: the product changes no bit).
Nothing crosses to the host. A rule's own reductions feed per-step scalars,
which are the host's: for such a rule the device engine copies ``R`` back
once per step.

Runs of :func:`numadam.minimize` use *guarded* kernels, which let the
termination tests run on the device, so that no value has to cross to the
host per step (see :mod:`numadam._device`). ``B`` is a small float64 array
of control values:

- three rotating buffers of four values, ``B[4b:4b+4]`` for step ``k`` with
  ``b = k % 3``: the largest ``|g|``, a non-finite flag (both written by
  :func:`probe_kernel`), and the largest ``|x_{k+1} - x_k|`` and ``|x_{k+1}|``
  (written by a tracking step kernel, for xtol);
- ``B[GTOL]``, ``B[XTOL]``: the tolerances (``gtol < 0`` disables the test);
- ``B[STOP]``, ``B[STOP_STEP]``: why and at which step the run stopped.

A guarded step ``k`` first reads its buffer (and, for xtol, the previous
step's); when a test holds it records the stop and changes nothing, and
every later kernel returns at once. Otherwise its first thread clears the
buffer of step ``k + 1``. Kernel launches on one stream run in order, so the
buffers need no other synchronisation.

Kernels are made by small factories cached per (rule, flags, ...); Numba
compiles each for the argument types it meets (float32 or float64).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float64

from .._rules import get_rule
from .._rules._math import DEVICE_FUNCTIONS, clip, fma

SIMULATOR = cuda.jit.__module__.startswith("numba.cuda.simulator")

#: Threads per block. The simulator runs every thread as a Python thread, so
#: it gets small blocks.
THREADS = 16 if SIMULATOR else 256

# the control array B (see the module docstring)
B_SIZE = 16
GTOL, XTOL, STOP, STOP_STEP = 12, 13, 14, 15
STOP_GTOL, STOP_XTOL, STOP_NONFINITE = 1.0, 2.0, 3.0


def _register_device_functions():
    """Make the rules' functions callable from CUDA kernels."""
    if SIMULATOR:
        return          # the simulator runs them as Python
    from numba.cuda.extending import overload

    get_rule("adam")    # imports every rule module, filling DEVICE_FUNCTIONS

    def returning(fn):
        def typer(*args, **kwargs):
            return fn
        return typer

    for fn in DEVICE_FUNCTIONS:
        overload(fn, strict=False)(returning(fn))

    @overload(fma)
    def _fma(a, b, c):
        return lambda a, b, c: cuda.fma(a, b, c)


_register_device_functions()


@functools.cache
def _max_blocks():
    """Blocks for the grid-stride kernels that reduce: a few per SM."""
    if SIMULATOR:
        return 4
    return 8 * cuda.get_current_device().MULTIPROCESSOR_COUNT


def blocks(n, reduce=False):
    """Blocks for ``n`` elements: one element per thread, or a grid-stride
    grid of a few blocks per SM for kernels that reduce."""
    b = max(1, -(-n // THREADS))
    if reduce or SIMULATOR:
        b = min(b, _max_blocks())
    return b


def control_array(gtol=-1.0, xtol=0.0):
    """A fresh control array ``B`` on the device."""
    B = np.zeros(B_SIZE)
    B[GTOL] = gtol
    B[XTOL] = xtol
    return cuda.to_device(B)


# --------------------------------------------------------------- helpers --

@cuda.jit(device=True)
def _block_max2(sh, a, b):
    """The largest ``a`` and ``b`` over the block (every thread must call)."""
    tid = cuda.threadIdx.x
    sh[0, tid] = a
    sh[1, tid] = b
    cuda.syncthreads()
    s = THREADS // 2
    while s > 0:
        if tid < s:
            if sh[0, tid + s] > sh[0, tid]:
                sh[0, tid] = sh[0, tid + s]
            if sh[1, tid + s] > sh[1, tid]:
                sh[1, tid] = sh[1, tid + s]
        cuda.syncthreads()
        s //= 2
    return sh[0, 0], sh[1, 0]


@cuda.jit(device=True)
def _block_sum(sh, a):
    """The sum of ``a`` over the block (every thread must call)."""
    tid = cuda.threadIdx.x
    sh[tid] = a
    cuda.syncthreads()
    s = THREADS // 2
    while s > 0:
        if tid < s:
            sh[tid] += sh[tid + s]
        cuda.syncthreads()
        s //= 2
    return sh[0]


@cuda.jit(device=True)
def _guard(B, k, track):
    """The guarded kernels' test before step ``k``: True to skip the step.

    Records the stop in ``B`` (the first thread) and otherwise clears the
    buffer of step ``k + 1``."""
    if B[STOP] != 0.0:
        return True
    b = 4 * (k % 3)
    stop = 0.0
    if B[b + 1] != 0.0:
        stop = STOP_NONFINITE
    elif B[b] <= B[GTOL]:
        stop = STOP_GTOL
    elif track and k > 0:
        p = 4 * ((k + 2) % 3)
        scale = B[p + 3]
        if scale < 1.0:
            scale = 1.0
        if B[p + 2] <= B[XTOL] * scale:
            stop = STOP_XTOL
    first = cuda.blockIdx.x == 0 and cuda.threadIdx.x == 0
    if stop != 0.0:
        if first:
            B[STOP] = stop
            B[STOP_STEP] = k
        return True
    if first:
        nb = 4 * ((k + 1) % 3)
        B[nb] = 0.0
        B[nb + 1] = 0.0
        B[nb + 2] = 0.0
        B[nb + 3] = 0.0
    return False


@cuda.jit(device=True)
def _widen(d, s, xn, xo):
    """``(max(d, |xn - xo|), max(s, |xn|))`` in float64, for xtol."""
    e = abs(float64(xn) - float64(xo))
    a = abs(float64(xn))
    return (e if e > d else d), (a if a > s else s)


@functools.cache
def test_kernel(track):
    """``test[1, 1](B, k)``: the guarded kernels' tests before step ``k``
    (:func:`_guard`), without the step: how a run that ends on the host
    learns whether the device's tests hold at its last iterate."""

    @cuda.jit
    def test(B, k):
        _guard(B, k, track)

    return test


@cuda.jit(device=True)
def _record_change(sh, B, k, d, s):
    """Reduce the step's ``max |x_new - x|`` and ``max |x_new|`` into ``B``."""
    d, s = _block_max2(sh, d, s)
    if cuda.threadIdx.x == 0:
        b = 4 * (k % 3)
        cuda.atomic.max(B, b + 2, d)
        cuda.atomic.max(B, b + 3, s)


# ----------------------------------------------------------------- dense --

@functools.cache
def step_kernel(rule_name, F, bounded, guarded=False, track=False, backup=False):
    """The dense step: ``step[blocks, THREADS](x, g, W, c, B, k, Sc)``.

    ``W`` holds the previous iterate (with ``backup``, written by the step),
    the lower and upper bounds (with ``bounded``) and then the rule's state
    slots, as :func:`numadam._kernels.cpu.layout` lays them out; ``c`` is the
    step's scalars (a tuple in x's dtype); ``Sc[0]`` the gradient's factor
    (:func:`scale_kernel`; 1 without clipping). With ``guarded`` the step
    first runs the tests of ``B``; with ``track`` (xtol) it also reduces the
    change of x into ``B``, and must be launched with ``blocks(n,
    reduce=True)``."""
    update = get_rule(rule_name).update
    lo = int(backup)
    off = lo + 2 * int(bounded)

    @cuda.jit
    def step(x, g, W, c, B, k, Sc):
        if guarded and _guard(B, k, track):
            return
        S = W[off:]
        sc = Sc[0]
        d = 0.0
        s = 0.0
        for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
            xn = update(i, x, g[i] * sc, S, c, F)
            if bounded:
                xn = clip(xn, W, lo, lo + 1, i)
            if track:
                d, s = _widen(d, s, xn, x[i])
            if backup:
                W[0, i] = x[i]
            x[i] = xn
        if track:
            sh = cuda.shared.array((2, THREADS), float64)
            _record_change(sh, B, k, d, s)

    return step


@functools.cache
def probe_kernel():
    """``probe[blocks(n, True), THREADS](g, B, k)``: the largest ``|g_i|`` and
    whether any ``g_i`` is not finite, into step ``k``'s buffer of ``B``."""

    @cuda.jit
    def probe(g, B, k):
        if B[STOP] != 0.0:
            return
        m = 0.0
        bad = 0.0
        for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
            a = abs(float64(g[i]))
            if a > m:
                m = a
            if not a < math.inf:     # an inf or a NaN
                bad = 1.0
        flag = bad
        sh = cuda.shared.array((2, THREADS), float64)
        m, flag = _block_max2(sh, m, flag)
        if cuda.threadIdx.x == 0:
            b = 4 * (k % 3)
            cuda.atomic.max(B, b, m)
            if flag != 0.0:
                B[b + 1] = 1.0

    return probe


@functools.cache
def sum_squares_kernel():
    """``sumsq[blocks(n, True), THREADS](a, R, j)``: add ``sum(a**2)`` over the
    1-D array ``a``, in float64, to ``R[j]`` (the first pass of a step)."""

    @cuda.jit
    def sumsq(a, R, j):
        acc = 0.0
        for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
            v = float64(a[i])
            acc += v * v
        sh = cuda.shared.array(THREADS, float64)
        acc = _block_sum(sh, acc)
        if cuda.threadIdx.x == 0:
            cuda.atomic.add(R, j, acc)

    return sumsq


@functools.cache
def scale_kernel():
    """``scale[1, 1](R, j, Sc, clip_norm, reset, sign)``: the gradient's
    factor from the sum of squares ``R[j]``, as
    ``torch.nn.utils.clip_grad_norm_`` forms it (``clip_norm / (norm +
    1e-6)``, at most 1; NaN stays NaN), times ``sign`` (-1.0 to ascend), into
    ``Sc[0]`` in Sc's dtype; with ``reset``, ``R[j] = 0`` for the next step."""

    @cuda.jit
    def scale(R, j, Sc, clip_norm, reset, sign):
        if cuda.grid(1) == 0:
            coef = clip_norm / (math.sqrt(R[j]) + 1e-6)
            if coef >= 1.0:
                coef = 1.0
            Sc[0] = sign * coef
            if reset:
                R[j] = 0.0

    return scale


@functools.cache
def fill_kernel():
    """``fill[blocks(n), THREADS](a, value)``: every element of 1-D ``a``."""

    @cuda.jit
    def fill(a, value):
        for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
            a[i] = value

    return fill


@functools.cache
def clip_kernel():
    """``clip[blocks(n), THREADS](x, W, lo)``: ``x`` projected onto the bounds
    rows ``lo`` and ``lo + 1`` of ``W``."""

    @cuda.jit
    def clip_x(x, W, lo):
        for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
            x[i] = clip(x[i], W, lo, lo + 1, i)

    return clip_x


# ---------------------------------------------------------------- sparse --

@functools.cache
def lazy_kernel(rule_name, F, bounded, guarded=False, track=False, backup=False):
    """The lazy sparse step: ``lazy[blocks(m), THREADS](x, idx, val, W, c, B,
    k, xb, Sc)`` for ``m = val.size``, ``val`` of shape ``(len(idx), r)``
    holding the gradient of the rows ``idx`` of x seen as rows of ``r``. With
    ``backup`` the touched values of x are saved in ``xb`` (the shape of
    ``val``) before they change; ``W`` is laid out and ``Sc`` read as for
    :func:`step_kernel`."""
    rule = get_rule(rule_name)
    update = rule.lazy_update if rule.lazy_update is not None else rule.update
    lo = int(backup)
    off = lo + 2 * int(bounded)

    @cuda.jit
    def lazy(x, idx, val, W, c, B, k, xb, Sc):
        if guarded and _guard(B, k, track):
            return
        S = W[off:]
        r = val.shape[1]
        sc = Sc[0]
        d = 0.0
        s = 0.0
        for e in range(cuda.grid(1), idx.shape[0] * r, cuda.gridsize(1)):
            j = e // r
            q = e - j * r
            i = idx[j] * r + q
            if backup:
                xb[j, q] = x[i]
            xn = update(i, x, val[j, q] * sc, S, c, F)
            if bounded:
                xn = clip(xn, W, lo, lo + 1, i)
            if track:
                d, s = _widen(d, s, xn, x[i])
            x[i] = xn
        if track:
            sh = cuda.shared.array((2, THREADS), float64)
            _record_change(sh, B, k, d, s)

    return lazy


@functools.cache
def catchup_kernel(rule_name, F, bounded, guarded=False, track=False, backup=False):
    """The catch-up sparse step: ``catchup[blocks(m), THREADS](x, idx, val, W,
    c, cf, B, k, last, t, xb, Sc)``: each touched coordinate first replays the
    ``t - last[row] - 1`` steps its row skipped, then takes the step. ``cf``
    is the step's float64 scalars, ``t`` the step number; :func:`mark_kernel`
    then records ``t`` in ``last``. ``backup``, ``xb`` and ``Sc`` as for
    :func:`lazy_kernel`."""
    rule = get_rule(rule_name)
    update = rule.update
    factors = rule.catchup_factors
    replay = rule.catchup
    has_catchup = factors is not None
    lo = int(backup)
    off = lo + 2 * int(bounded)

    @cuda.jit
    def catchup(x, idx, val, W, c, cf, B, k, last, t, xb, Sc):
        if guarded and _guard(B, k, track):
            return
        S = W[off:]
        r = val.shape[1]
        sc = Sc[0]
        d = 0.0
        s = 0.0
        for e in range(cuda.grid(1), idx.shape[0] * r, cuda.gridsize(1)):
            j = e // r
            q = e - j * r
            row = idx[j]
            i = row * r + q
            x0 = x[i]
            if backup:
                xb[j, q] = x0
            skipped = t - last[row] - 1
            if has_catchup and skipped > 0:
                f = factors(skipped, cf, F)
                x[i] = replay(i, x, S, f, F)
            xn = update(i, x, val[j, q] * sc, S, c, F)
            if bounded:
                xn = clip(xn, W, lo, lo + 1, i)
            if track:
                d, s = _widen(d, s, xn, x0)
            x[i] = xn
        if track:
            sh = cuda.shared.array((2, THREADS), float64)
            _record_change(sh, B, k, d, s)

    return catchup


@functools.cache
def mark_kernel():
    """``mark[blocks(len(idx)), THREADS](idx, last, t, B)``: ``last[idx] = t``
    unless the run has stopped."""

    @cuda.jit
    def mark(idx, last, t, B):
        if B[STOP] != 0.0:
            return
        for j in range(cuda.grid(1), idx.shape[0], cuda.gridsize(1)):
            last[idx[j]] = t

    return mark


@functools.cache
def flush_kernel(rule_name, F, bounded, backup=False):
    """``flush[blocks(n), THREADS](x, W, cf, last, r, t)``: replay, for every
    coordinate, the steps its row missed up to step ``t``; then
    ``fill(last, t)``."""
    rule = get_rule(rule_name)
    factors = rule.catchup_factors
    replay = rule.catchup
    has_catchup = factors is not None
    lo = int(backup)
    off = lo + 2 * int(bounded)

    @cuda.jit
    def flush(x, W, cf, last, r, t):
        if not has_catchup:
            return
        S = W[off:]
        for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
            missed = t - last[i // r]
            if missed > 0:
                f = factors(missed, cf, F)
                xn = replay(i, x, S, f, F)
                if bounded:
                    xn = clip(xn, W, lo, lo + 1, i)
                x[i] = xn

    return flush


@functools.cache
def scatter_kernel():
    """``scatter[blocks(m), THREADS](inverse, val, out)``: ``out[inverse[j]]
    += val[j]`` row by row (``out`` zeroed): duplicate rows summed."""

    @cuda.jit
    def scatter(inverse, val, out):
        r = val.shape[1]
        for e in range(cuda.grid(1), inverse.shape[0] * r, cuda.gridsize(1)):
            j = e // r
            q = e - j * r
            cuda.atomic.add(out, (inverse[j], q), val[j, q])

    return scatter


@functools.cache
def densify_kernel():
    """``densify[blocks(m), THREADS](idx, val, g)``: write the rows of a sparse
    gradient into ``g`` (already zeroed)."""

    @cuda.jit
    def densify(idx, val, g):
        r = val.shape[1]
        for e in range(cuda.grid(1), idx.shape[0] * r, cuda.gridsize(1)):
            j = e // r
            g[idx[j] * r + e - j * r] = val[j, e - j * r]

    return densify
