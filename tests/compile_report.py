"""Pytest plugin: how many Numba compilations the test run did, and how long they took.

At the end of the run a short section is printed, e.g.::

    numba compilations: 183 (212.4 s compiling, 61% of 348.0 s), cache loads: 57 (0.9 s);
    slowest: step_kernel.<locals>.step (array(float64, 1d, C), ...) 3.1 s, ...

What is counted, in this process (and, under pytest-xdist, in every worker):

* compilations: every ``"numba:compile"`` event of Numba's event API
  (``numba.core.event``).  A dispatcher broadcasts one each time it compiles
  a new signature, including a jitted function compiled because another one
  being compiled calls it, an ``@overload`` implementation, or an object-mode
  lifted loop.  The time of an event nested inside another is already part of
  the outer one's, so only outermost events add to the time and to the list
  of slowest compilations.  Failed compilations (typing errors) count too.
* cache loads: signatures loaded from Numba's on-disk cache (``cache=True``).
  These do not broadcast ``"numba:compile"``, so they are counted by wrapping
  ``numba.core.caching.Cache.load_overload`` for the duration of the run.

``numba.cuda.jit`` kernels do not broadcast ``"numba:compile"`` (CUDA's
dispatcher compiles without it), and on the CUDA simulator nothing is
compiled at all; a CUDA kernel loaded from the disk cache is still counted as
a cache load.  Compilations in subprocesses that tests start are not seen.

The percentage is of the run time counted from ``pytest_configure`` (where
the listener is installed, before test modules are imported) to the end of
the session.  Under pytest-xdist each worker sends its totals to the
controller in ``workeroutput``, and the controller prints their sum; the
percentage is then of the workers' summed run time.

If the environment variable ``NUMADAM_COMPILE_REPORT`` names a file, a JSON
object is written there with ``compilations``, ``failed_compilations``,
``compile_seconds``, ``cache_loads``, ``cache_load_seconds``,
``wall_seconds``, ``process_seconds`` (the time the percentage refers to),
``workers``, ``slowest``: the 20 slowest outermost compilations, each with
``function`` (qualified name), ``module``, ``signature`` and ``seconds``, and
``by_function``: for each compiled function (``module.qualname``), its
number of compilations (nested ones included) and the seconds of its
outermost ones.

Enable it with ``pytest_plugins = ["compile_report"]`` in a conftest.py, or
``-p compile_report`` with this directory on ``PYTHONPATH``.
"""

import json
import os
import time

import pytest
from numba.core import caching, event

_KEY = "numba_compile_report"
_N_SLOWEST = 20
_N_PRINTED = 5


class CompileTally(event.Listener):
    """Listener for ``"numba:compile"`` that also counts disk-cache loads."""

    def __init__(self):
        self.start = time.perf_counter()
        self.compilations = 0
        self.failed = 0
        self.seconds = 0.0
        self.cache_loads = 0
        self.cache_load_seconds = 0.0
        self.outermost = []        # (seconds, qualname, module, signature)
        self.by_function = {}      # "module.qualname": [compilations, seconds]
        self._started = []         # start times of the events now open

    def on_start(self, ev):
        self.compilations += 1
        self._started.append(time.perf_counter())

    def on_end(self, ev):
        seconds = time.perf_counter() - self._started.pop()
        # Event.is_failed is inverted in this Numba version; read the field.
        if getattr(ev, "_exc_details", None) is not None:
            self.failed += 1
        func = getattr(ev.data["dispatcher"], "py_func", None)
        key = (f"{getattr(func, '__module__', '')}."
               f"{getattr(func, '__qualname__', repr(func))}")
        entry = self.by_function.setdefault(key, [0, 0.0])
        entry[0] += 1
        if self._started:                # nested: its time is the caller's
            return
        entry[1] += seconds
        self.seconds += seconds
        signature = ", ".join(str(a) for a in ev.data["args"])
        self.outermost.append((seconds, getattr(func, "__qualname__", repr(func)),
                               getattr(func, "__module__", ""), signature))

    def counting_load_overload(self, load_overload):
        def wrapper(cache, sig, target_context):
            t0 = time.perf_counter()
            result = load_overload(cache, sig, target_context)
            if result is not None:
                self.cache_loads += 1
                self.cache_load_seconds += time.perf_counter() - t0
            return result
        return wrapper

    def totals(self):
        slowest = sorted(self.outermost, reverse=True)[:_N_SLOWEST]
        return dict(
            compilations=self.compilations,
            failed_compilations=self.failed,
            compile_seconds=self.seconds,
            cache_loads=self.cache_loads,
            cache_load_seconds=self.cache_load_seconds,
            wall_seconds=time.perf_counter() - self.start,
            slowest=[dict(function=f, module=m, signature=s, seconds=t)
                     for t, f, m, s in slowest],
            by_function={k: list(v) for k, v in self.by_function.items()},
        )


_tally_key = pytest.StashKey[CompileTally]()
_workers_key = pytest.StashKey[list]()
_original_key = pytest.StashKey[object]()
_total_key = pytest.StashKey[dict]()


def _merge(own, workers):
    """The controller's totals plus those the xdist workers sent."""
    total = dict(own, process_seconds=own["wall_seconds"], workers=len(workers))
    if workers:
        total["process_seconds"] = sum(w["wall_seconds"] for w in workers)
        for w in workers:
            for key in ("compilations", "failed_compilations", "compile_seconds",
                        "cache_loads", "cache_load_seconds"):
                total[key] += w[key]
        by_function = {k: list(v) for k, v in own["by_function"].items()}
        for w in workers:
            for k, (count, seconds) in w["by_function"].items():
                entry = by_function.setdefault(k, [0, 0.0])
                entry[0] += count
                entry[1] += seconds
        total["by_function"] = by_function
        slowest = own["slowest"] + [e for w in workers for e in w["slowest"]]
        slowest.sort(key=lambda e: e["seconds"], reverse=True)
        total["slowest"] = slowest[:_N_SLOWEST]
    return total


def pytest_configure(config):
    tally = CompileTally()
    config.stash[_tally_key] = tally
    config.stash[_workers_key] = []
    config.stash[_original_key] = caching.Cache.load_overload
    caching.Cache.load_overload = tally.counting_load_overload(
        caching.Cache.load_overload)
    event.register("numba:compile", tally)


def pytest_unconfigure(config):
    tally = config.stash.get(_tally_key, None)
    if tally is not None:
        event.unregister("numba:compile", tally)
        caching.Cache.load_overload = config.stash[_original_key]


@pytest.hookimpl(optionalhook=True)           # an xdist hook
def pytest_testnodedown(node, error):
    totals = getattr(node, "workeroutput", {}).get(_KEY)
    if totals is not None:
        node.config.stash[_workers_key].append(totals)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    config = session.config
    totals = config.stash[_tally_key].totals()
    if hasattr(config, "workerinput"):            # an xdist worker
        config.workeroutput[_KEY] = totals
        return
    total = _merge(totals, config.stash[_workers_key])
    config.stash[_total_key] = total
    path = os.environ.get("NUMADAM_COMPILE_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(total, f, indent=1)


def pytest_terminal_summary(terminalreporter, config):
    total = config.stash.get(_total_key, None)
    if total is None:
        return
    share = total["compile_seconds"] / max(total["process_seconds"], 1e-9)
    where = f" in {total['workers']} workers" if total["workers"] else ""
    failed = (f", {total['failed_compilations']} failed"
              if total["failed_compilations"] else "")
    slowest = ", ".join(
        f"{e['function']} ({_shorten(e['signature'])}) {e['seconds']:.1f} s"
        for e in total["slowest"][:_N_PRINTED])
    terminalreporter.write_sep("-", "numba compile report")
    terminalreporter.write_line(
        f"numba compilations: {total['compilations']}{failed} "
        f"({total['compile_seconds']:.1f} s compiling, {share:.0%} of "
        f"{total['process_seconds']:.1f} s{where}), "
        f"cache loads: {total['cache_loads']} ({total['cache_load_seconds']:.1f} s)"
        + (f"; slowest: {slowest}" if slowest else ""))


def _shorten(text, width=60):
    return text if len(text) <= width else text[:width - 3] + "..."
