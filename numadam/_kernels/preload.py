"""Load cached kernels without Numba's first-compilation set-up.

The first call of any cached ``@njit`` function in a process makes Numba
initialise its whole compiler first: the typing and lowering registries for
all of Python and NumPy, about 0.3 s on the reference machine, more than the
rest of a small ``minimize``. Machine code loaded from the cache needs none
of that, only Numba's runtime (NRT) and the code itself, and Numba's own
loader records anything else it needs (the threads of parallel kernels) in
the cache entry.

:func:`load` takes that short path for numadam's kernels. It is an
optimisation only: when the cache holds no entry for the arguments, or
anything at all goes wrong, it returns and the kernel's first call goes
through Numba's usual path (compile, or load after the full set-up). Numba
validates the cache entry exactly as it always does (source stamp, signature,
CPU), and a later compilation anywhere in the process still sets up the
compiler in full, because the light set-up is used only inside :func:`load`.
"""

from __future__ import annotations

from numba.core.compiler_lock import global_compiler_lock
from numba.core.runtime import rtsys


def _light_refresh(ctx):
    rtsys.initialize(ctx)


def load(dispatcher, *args):
    """Make ``dispatcher`` ready for ``args`` from the on-disk cache, cheaply;
    return whether it is ready (False: its first call compiles, or this
    could not tell)."""
    try:
        sig = tuple(dispatcher.typeof_pyval(a) for a in args)
        if sig in dispatcher.overloads:
            return True
        if dispatcher._cache is None or not dispatcher._can_compile:
            return False
        with global_compiler_lock:
            ctx = dispatcher.targetctx
            ctx.refresh = lambda: _light_refresh(ctx)
            try:
                cres = dispatcher._cache.load_overload(sig, ctx)
            finally:
                del ctx.refresh
            if cres is None or cres.objectmode:
                return False
            dispatcher._cache_hits[sig] += 1
            ctx.insert_user_function(cres.entry_point, cres.fndesc, [cres.library])
            dispatcher.add_overload(cres)
            return True
    except Exception:  # pragma: no cover - any failure: Numba's usual path
        return False


def compile_for(dispatcher, *args):
    """Compile ``dispatcher`` for ``args`` now (or load it from the disk
    cache, as its first call would)."""
    dispatcher.compile(tuple(dispatcher.typeof_pyval(a) for a in args))
