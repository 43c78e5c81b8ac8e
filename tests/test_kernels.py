"""The kernels' building blocks: exact division by a per-step scalar, fma,
the parallel threshold and the cheap loading of cached kernels."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import njit

import numadam
from numadam._kernels import cpu
from numadam._rules._math import div_by, fma


@njit
def _div_all(a, d):
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        r = a.dtype.type(1.0) / d[i]
        out[i] = div_by(a[i], d[i], r)
    return out


@njit
def _fma_all(a, b, c):
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        out[i] = fma(a[i], b[i], c[i])
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_div_by_is_bitwise_the_division(dtype):
    rng = np.random.default_rng(0)
    n = 1_000_000
    a = (rng.standard_normal(n) * np.exp(rng.uniform(-20, 20, n))).astype(dtype)
    d = np.concatenate([
        np.exp(rng.uniform(-10, 10, n // 2)),
        np.sqrt(1 - 0.999 ** np.arange(1, n - n // 2 + 1)),   # sqrt(1 - beta2**t)
    ]).astype(dtype)
    a[:4] = [0.0, -0.0, np.inf, np.nan]
    q = _div_all(a, d)
    expected = a / d
    same = (q == expected) | (np.isnan(q) & np.isnan(expected))
    assert same.all(), f"{(~same).sum()} quotients differ"
    assert np.signbit(q[1]) == np.signbit(expected[1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fma_python_fallback_matches_the_compiled_one(dtype):
    rng = np.random.default_rng(1)
    a, b, c = (rng.standard_normal(500).astype(dtype) for _ in range(3))
    c = -a * b + c * np.asarray(1e-9, dtype)      # cancellation: rounding matters
    compiled = _fma_all(a, b, c)
    python = np.array([fma(x, y, z) for x, y, z in zip(a, b, c)], dtype=dtype)
    np.testing.assert_array_equal(python, compiled)
    # and an fma differs from the twice-rounded a * b + c somewhere
    assert np.any(compiled != a * b + c)


def test_parallel_threshold_depends_on_rule_and_dtype():
    assert not cpu.use_parallel(1000, None, "adam", np.float64)
    assert cpu.use_parallel(10_000, None, "adam", np.float64)
    assert not cpu.use_parallel(10_000, None, "adam", np.float32)
    assert not cpu.use_parallel(10_000, None, "sgd", np.float64)
    assert cpu.use_parallel(10, True, "sgd", np.float64)
    assert not cpu.use_parallel(10**8, False, "adam", np.float64)


def test_cached_kernels_load_without_numbas_full_set_up():
    """With a warm cache, a small minimize in a new process runs numadam's
    kernels without Numba loading its compiler registries (about 0.3 s)."""
    script = textwrap.dedent("""
        import sys
        import numpy as np, numadam
        res = numadam.minimize(lambda x: float(x @ x), np.ones(3),
                               jac=lambda x: 2 * x, options={"maxiter": 10})
        print(repr(res.x.tolist()), "numba.typed.typeddict" in sys.modules)
    """)
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True,
                           text=True, check=True).stdout.split() for _ in range(2)]
    # the first run may compile (a cold cache); the second loads
    assert runs[1][-1] == "False"
    assert runs[0][:-1] == runs[1][:-1]
    x = np.ones(3)
    expected = numadam.minimize(lambda x: float(x @ x), x, jac=lambda x: 2 * x,
                                options={"maxiter": 10}).x
    assert " ".join(runs[1][:-1]) == repr(expected.tolist())
