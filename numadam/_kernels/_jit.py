"""``njit`` for kernels made by factories, with a name of their own.

Numba names a compiled function after its ``__qualname__``, its argument
types and a counter that starts afresh in every process. Kernels loaded from
the on-disk cache keep the name they were compiled under, so two kernels of
one factory (``step_kernel.<locals>.step`` for two rules, say)
compiled by different processes can come back with the same symbol; a
compiled loop that calls one of them may then be linked to the other.

:func:`njit` gives each kernel a qualified name of its own before Numba sees
it: the factory's name followed by a digest of the kernel's closure (the
rule's name and flags, serial or parallel, its functions by name), which is
the same in every process, so the cache finds its entries again.
"""

from __future__ import annotations

import hashlib

import numba


def _describe(value):
    """A text that is the same in every process for the same value."""
    if isinstance(value, (str, bool, int, float, type(None))):
        return repr(value)
    if isinstance(value, tuple):
        return "(" + ",".join(_describe(v) for v in value) + ")"
    func = getattr(value, "py_func", value)
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    module = getattr(func, "__module__", None)
    if name is not None:
        return f"{module}.{name}"
    return type(value).__qualname__


def unique_name(fn):
    """``fn.__qualname__`` with a digest of its closure appended."""
    cells = fn.__closure__ or ()
    text = ";".join(f"{name}={_describe(cell.cell_contents)}"
                    for name, cell in zip(fn.__code__.co_freevars, cells))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{fn.__qualname__}_{digest}"


def njit(*args, **options):
    """``numba.njit`` that renames the function first (:func:`unique_name`)."""
    if args and callable(args[0]) and not options:
        fn = args[0]
        fn.__qualname__ = unique_name(fn)
        return numba.njit(fn)

    def wrap(fn):
        fn.__qualname__ = unique_name(fn)
        return numba.njit(*args, **options)(fn)
    return wrap
