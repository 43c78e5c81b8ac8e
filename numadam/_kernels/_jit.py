"""``njit`` for functions made by factories, with a name of their own.

Numba names a compiled function after its ``__qualname__``, its argument
types and a counter that starts afresh in every process, and its on-disk
cache finds an entry by the qualified name, the source file and the
argument types. Two functions of one factory (``step_kernel.<locals>.step``
for two rules, say) share all three, so without more the cache would hand
one the other's machine code, and a compiled function that calls one of
them could be linked to the other.

:func:`njit` gives each function a qualified name of its own before Numba
sees it: the factory's name followed by a digest of the function's closure
(the rule's name and flags, serial or parallel, the functions it calls,
described in turn down to their own closures and code), which is the same
in every process for the same function, so the cache finds its entries
again. ``salt`` adds a text of the caller's to the digest, for what the
closure does not show (:func:`package_fingerprint`: the code of helpers in
other files, which Numba's cache, watching only the defining file, would
not see change).
"""

from __future__ import annotations

import functools
import hashlib
import os

import numba
from numba.core.caching import FunctionCache

from .._cache import disk_cache

_DEPTH = 6          # how deep closures of closures are described


def _code_text(code):
    """A text of a code object that is the same in every process."""
    simple = (str, bytes, int, float, bool, type(None), tuple)
    consts = ",".join(_code_text(c) if hasattr(c, "co_code") else repr(c)
                      for c in code.co_consts
                      if hasattr(c, "co_code") or isinstance(c, simple))
    return (f"{code.co_code.hex()}|{','.join(code.co_names)}|"
            f"{','.join(code.co_varnames)}|{consts}")


class Undescribed(ValueError):
    """A closure holds a value with no text that is the same in every
    process."""


def _describe(value, depth=0):
    """A text that is the same in every process for the same value."""
    if isinstance(value, (str, bool, int, float, type(None))):
        return repr(value)
    if isinstance(value, tuple):
        return "(" + ",".join(_describe(v, depth) for v in value) + ")"
    if isinstance(value, numba.core.types.Type):
        return f"numba.{value}"
    func = getattr(value, "py_func", value)
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    module = getattr(func, "__module__", None)
    if name is None:
        text = repr(value)
        if " at 0x" in text:
            raise Undescribed(type(value).__qualname__)
        return f"{type(value).__qualname__}:{text}"
    text = f"{module}.{name}"
    if getattr(func, "__numadam_named__", False) or depth >= _DEPTH:
        return text              # the name carries the digest already
    code = getattr(func, "__code__", None)
    if code is None:
        return text
    if code.co_filename.startswith("<"):
        # made from generated source: its code and the globals it names
        glob = getattr(func, "__globals__", {})
        named = ";".join(f"{g}={_describe(glob[g], depth + 1)}"
                         for g in code.co_names if g in glob)
        return f"{text}{{{_code_text(code)};{named}}}"
    if func.__closure__ or "<locals>" in name:
        # a closure: its code and its closure say which one it is
        return f"{text}{{{_code_text(code)};{_closure_text(func, depth + 1)}}}"
    return text


def _closure_text(fn, depth=0):
    cells = fn.__closure__ or ()
    return ";".join(f"{name}={_describe(cell.cell_contents, depth)}"
                    for name, cell in zip(fn.__code__.co_freevars, cells))


def unique_name(fn, salt=""):
    """``fn.__qualname__`` with a digest of its closure (and ``salt``)
    appended; the same for a function renamed before."""
    base = getattr(fn, "__numadam_qualname__", fn.__qualname__)
    text = _closure_text(fn) + "|" + salt
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{base}_{digest}"


def rename(fn, salt=""):
    """Give ``fn`` its :func:`unique_name`, in place; returns ``fn``."""
    name = unique_name(fn, salt)
    fn.__numadam_qualname__ = getattr(fn, "__numadam_qualname__", fn.__qualname__)
    fn.__qualname__ = name
    fn.__numadam_named__ = True
    return fn


class NamedCache(FunctionCache):
    """Numba's on-disk cache, keyed by the digest of :func:`unique_name`.

    Numba's own key hashes the pickled closure, and a closure that holds a
    Numba function pickles differently in every process (the function's
    pickle carries a random identifier), so such a function would compile
    anew in every process. The digest describes the same closure by what
    the code depends on: values, and functions by name, code and closure.
    """

    def __init__(self, py_func, key):
        super().__init__(py_func)
        self._key = key

    def _index_key(self, sig, codegen):
        code = hashlib.sha256(self._py_func.__code__.co_code).hexdigest()
        return (sig, codegen.magic_tuple(), (code, self._key))


def njit(*args, salt="", **options):
    """``numba.njit`` that renames the function first (:func:`unique_name`)
    and, with ``cache=True``, caches it on disk under that name's digest
    (:class:`NamedCache`). A closure holding a value that has no text the
    same in every process keeps its name and Numba's own cache. Without a
    writable cache directory (:func:`numadam._cache.disk_cache`) nothing is
    cached."""
    if options.get("cache", False) and not disk_cache():
        options["cache"] = False

    def wrap(fn):
        try:
            rename(fn, salt)
        except Undescribed:
            return numba.njit(*args, **options)(fn)
        rest = {k: v for k, v in options.items() if k != "cache"}
        dispatcher = numba.njit(*args, **rest)(fn)
        if options.get("cache", False):
            dispatcher._cache = NamedCache(fn, fn.__qualname__)
        return dispatcher

    if args and callable(args[0]) and not options:
        fn, args = args[0], ()
        return wrap(fn)
    return wrap


@functools.cache
def package_fingerprint():
    """A digest of the source of every module of the package: the salt of
    compiled functions that inline code from many of its files."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = sorted(os.path.relpath(os.path.join(folder, name), root)
                   for folder, _, files in os.walk(root)
                   for name in files if name.endswith(".py"))
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.encode())
        with open(os.path.join(root, path), "rb") as fh:
            digest.update(fh.read())
    return digest.hexdigest()
