"""Whether Numba can keep numadam's compiled functions on disk.

Numba looks for a writable cache directory next to the source (the
package's ``__pycache__``), then in the user's cache directory (under
``HOME``), or only in ``NUMBA_CACHE_DIR`` when that is set. In a read-only
installation with a read-only ``HOME`` (a common container set-up) there is
none, and ``@njit(cache=True)`` raises at decoration. numadam then compiles
its kernels without the disk cache, in every process, and says so once.
"""

from __future__ import annotations

import functools
import warnings

from numba.core.caching import FunctionCache

__all__ = ["disk_cache"]


def _probe():  # pragma: no cover - never called: only its file is located
    return None


@functools.cache
def disk_cache():
    """True when Numba finds a writable cache directory for the package's
    files; else False, with one RuntimeWarning naming ``NUMBA_CACHE_DIR``."""
    try:
        FunctionCache(_probe)
    except RuntimeError as exc:
        if "no locator available" not in str(exc):
            raise
        warnings.warn(
            "numadam: Numba finds no writable directory to cache compiled kernels "
            "in (the package's directory and the user's cache directory are "
            "read-only), so they are compiled anew in every process; set "
            "NUMBA_CACHE_DIR to a writable directory to keep them",
            RuntimeWarning, stacklevel=2)
        return False
    return True
