"""A read-only installation with a read-only HOME: numadam imports and runs,
compiling its kernels without Numba's disk cache, and says so once."""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import numadam
from numadam.problems import rosen, rosen_der

X0 = np.array([-1.2, 1.0, 0.5])

#: Runs a Python loop, a compiled loop and an Optimizer step, prints the
#: numbers and the warnings numadam gave.
SCRIPT = textwrap.dedent("""
    import warnings
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as seen:
        import numpy as np
        import numadam
        from numadam.problems import rosen, rosen_der
        from scipy.optimize import rosen as py_rosen, rosen_der as py_rosen_der
        x0 = np.array([-1.2, 1.0, 0.5])
        opts = {"maxiter": 200, "learning_rate": 0.01}
        a = numadam.minimize(py_rosen, x0, jac=py_rosen_der, options=opts)
        b = numadam.minimize(rosen, x0, jac=rosen_der, options=opts)
        opt = numadam.Optimizer("adam", np.zeros(3), learning_rate=0.1)
        opt.step(np.ones(3))
    mine = [str(w.message) for w in seen if "numadam" in str(w.message)]
    print(repr((a.x.tolist(), b.x.tolist(), opt.params.tolist(), mine)))
""")


def _expected():
    opts = {"maxiter": 200, "learning_rate": 0.01}
    a = numadam.minimize(rosen, X0, jac=rosen_der, options=opts)
    opt = numadam.Optimizer("adam", np.zeros(3), learning_rate=0.1)
    opt.step(np.ones(3))
    return a.x.tolist(), opt.params.tolist()


def _check(out):
    a, b, params, mine = eval(out.strip().splitlines()[-1])
    x, expected_params = _expected()
    assert a == x and b == x                    # the Python and compiled loops
    assert params == expected_params
    assert len(mine) == 1 and "NUMBA_CACHE_DIR" in mine[0], mine


def _env(**extra):
    """The environment of a child that imports the numadam this process
    runs (the installed one, or the source tree's)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    root = os.path.dirname(os.path.dirname(numadam.__file__))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in (env.get("PYTHONPATH"),) if p])
    env.update(extra)
    return env


def test_no_writable_cache_directory_compiles_without_the_cache(tmp_path):
    # Numba's cache locators all fail, as they do when the package's
    # directory and HOME are read-only
    prelude = textwrap.dedent("""
        from numba.core import caching
        def refuse(self):
            raise PermissionError(13, "read-only file system", self.get_cache_path())
        caching._CacheLocator.ensure_cache_path = refuse
    """)
    out = subprocess.run([sys.executable, "-c", prelude + SCRIPT], env=_env(),
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    _check(out.stdout)


def _can_mount_read_only(tmp_path):
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c",
         f"mount --bind {probe} {probe} && mount -o remount,bind,ro {probe}"],
        capture_output=True, timeout=30)
    return done.returncode == 0


def test_read_only_package_and_home(tmp_path):
    """The real set-up: the installed package and HOME mounted read-only in
    a mount namespace of their own (needs ``unshare -m``)."""
    if not _can_mount_read_only(tmp_path):
        pytest.skip("this machine cannot make read-only mounts (unshare -m)")
    package = os.path.dirname(numadam.__file__)
    home = tmp_path / "home"
    home.mkdir()
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    mounts = " && ".join(f"mount --bind {p} {p} && mount -o remount,bind,ro {p}"
                         for p in (package, home))
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$0" "$1"',
         sys.executable, str(script)],
        env=_env(HOME=str(home)), cwd=tmp_path, capture_output=True, text=True,
        timeout=600)
    assert out.returncode == 0, out.stderr
    _check(out.stdout)
