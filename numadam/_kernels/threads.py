"""Serial or parallel: the CPU kernel chosen by measured step times.

A parallel (``prange``) kernel beats the serial one on large arrays of an
idle machine, and loses badly on a busy one: when other processes hold the
cores, each parallel step waits for its slowest thread, and a descheduled
thread costs a whole time slice (milliseconds, against microseconds for the
serial step). The size alone cannot tell which is faster, so by default the
choice is measured.

:class:`Adaptive` is a kernel made of its serial and parallel forms. It
times its first calls of each (the probe: the first call of a form is not
counted, it may start Numba's threads), keeps the faster, and probes again

- when a parallel step takes far longer than the probe said (a core got
  busy: three such steps), and
- after enough steps that the probe's cost is a small share of the time
  spent (the load may have gone: 2% of the kernel's time at most, and at
  most 0.4 s of it between probes, longer while probes keep finding the
  parallel steps collapsed).

A form that is far slower than the other twice in a probe (once, when the
last probe found it so too) is not timed again in that probe. While a probe
found parallel steps collapsing in the last second, a new :class:`Adaptive`
starts serial and probes later, so that many short runs on a busy machine do
not each pay for a probe.

Parallel kernels run one thread at a time in this process
(:data:`PARALLEL_LOCK`): a thread that finds the lock taken runs the serial
form (forced ``parallel=True`` waits for it). Numba's ``workqueue``
threading layer aborts the process when two threads launch parallel work at
once, and on a machine with few cores two parallel kernels only slow each
other down.

:func:`usable_cpus` is the number of threads a parallel kernel uses: the
CPUs this process may run on (``os.sched_getaffinity``), capped by a cgroup
CPU quota (containers) and by ``NUMBA_NUM_THREADS``.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time

import numba

#: Held while a numadam parallel kernel runs.
PARALLEL_LOCK = threading.Lock()

#: Probe runs of each form, after its first (uncounted) call.
SAMPLES = 3
#: A parallel form is kept only when its median beats the serial one's by this.
MARGIN = 0.95
#: Counted calls this many times the best so far end a form's probe (one
#: when the last probe found the parallel form collapsed too).
HOPELESS = 4.0
HOPELESS_CALLS = 2
#: A parallel step is slow beyond ``SLOW * typical + SLACK_NS``.
SLOW = 3.0
SLACK_NS = 50_000
#: Slow steps that start a new probe.
SLOW_STEPS = 3
#: The probe's extra cost is at most ``1 / BUDGET`` of the kernel's time.
BUDGET = 50
#: At least this many steps between probes.
LEAST_STEPS = 64
#: At most this much kernel time between probes (ns), doubled for each probe
#: in a row that finds parallel steps collapsed, up to 16 times.
MOST_NS = 400_000_000
#: A probe that saw parallel steps collapse makes new kernels start serial
#: for this long (ns).
COLLAPSE_MEMORY_NS = 1_000_000_000

_clock = time.perf_counter_ns
_collapsed_at = [-COLLAPSE_MEMORY_NS]
_warm = set()


def _read(path):
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:
        return None


def cgroup_quota(proc="/proc/self/cgroup", root="/sys/fs/cgroup"):
    """The CPU quota of this process's cgroup (and its ancestors), in CPUs,
    or None without one (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``)."""
    try:
        with open(proc) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            bases = [root]
        elif "cpu" in controllers.split(","):
            bases = [os.path.join(root, controllers), os.path.join(root, "cpu")]
        else:
            continue
        for base in bases:
            here = path.strip("/")
            while True:
                d = os.path.join(base, here) if here else base
                if controllers == "":
                    v = _read(os.path.join(d, "cpu.max"))
                    if v and len(v) == 2 and v[0] != "max":
                        quotas.append(int(v[0]) / int(v[1]))
                else:
                    q = _read(os.path.join(d, "cpu.cfs_quota_us"))
                    p = _read(os.path.join(d, "cpu.cfs_period_us"))
                    if q and p and int(q[0]) > 0 and int(p[0]) > 0:
                        quotas.append(int(q[0]) / int(p[0]))
                if not here:
                    break
                here = os.path.dirname(here)
    return min(quotas) if quotas else None


@functools.cache
def usable_cpus():
    """The threads a parallel kernel runs on (see the module's notes)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    quota = cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, min(n, numba.config.NUMBA_NUM_THREADS))


def _with_threads(kernel, threads):
    """``kernel`` run on ``threads`` threads (Numba's count is per calling
    thread: set for the call and restored)."""
    def call(*args):
        before = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            return kernel(*args)
        finally:
            numba.set_num_threads(before)
    return call


def parallel_form(kernel):
    """The parallel ``kernel`` on :func:`usable_cpus` threads."""
    threads = usable_cpus()
    if threads == numba.config.NUMBA_NUM_THREADS:
        return kernel
    return _with_threads(kernel, threads)


class Forced:
    """A parallel kernel forced by ``parallel=True``: it waits for another
    thread's parallel kernel to end (:data:`PARALLEL_LOCK`)."""

    __slots__ = ("run", "dispatchers")

    def __init__(self, kernel):
        self.run = parallel_form(kernel)
        self.dispatchers = (kernel,)

    def __call__(self, *args):
        with PARALLEL_LOCK:
            return self.run(*args)


def choose(make, parallel):
    """The kernel ``make(parallel)`` builds, for ``parallel`` True (forced:
    :class:`Forced`), False (serial) or None (measured: :class:`Adaptive`)."""
    if parallel is None:
        return Adaptive(make(False), make(True))
    return Forced(make(True)) if parallel else make(False)


def choose_like(kernel, make):
    """The kernel ``make(parallel)`` builds, run as ``kernel`` (from
    :func:`choose`) runs: following an :class:`Adaptive` one's choice."""
    if isinstance(kernel, Adaptive):
        return kernel.follow(make(False), make(True))
    return Forced(make(True)) if isinstance(kernel, Forced) else make(False)


def dispatchers(kernel):
    """The Numba dispatchers behind a kernel :func:`choose` gave."""
    return getattr(kernel, "dispatchers", (kernel,))


def runs_parallel(kernel):
    """Whether ``kernel`` (from :func:`choose`) runs its parallel form now."""
    if isinstance(kernel, Adaptive):
        return kernel.current == 1
    return isinstance(kernel, Forced)


class Adaptive:
    """The serial kernel ``serial`` or the parallel ``parallel`` (the same
    arguments), whichever measured faster lately; see the module's notes.
    ``dispatchers`` are the Numba functions they call (by default
    themselves): a form's first call, which may start Numba's threads, is
    not timed, once per process for each.

    Called as the kernels are. :meth:`follow` gives a pair of other kernels
    run in the same form (the loops' norm, change and average passes).
    :meth:`timed` and :meth:`record` serve work whose time the caller scales
    (the compiled loop's slices, timed per step).
    """

    __slots__ = ("forms", "current", "limit", "left", "slow", "order", "times",
                 "best", "probing", "hopeless", "backoff", "dispatchers")

    def __init__(self, serial, parallel, dispatchers=None):
        self.dispatchers = dispatchers or (serial, parallel)
        self.forms = (serial, parallel_form(parallel))
        self.current = 0
        self.slow = 0
        self.limit = math.inf
        self.left = 0
        self.order = []
        self.probing = False
        self.hopeless = [0, 0]
        self.backoff = 1
        self.times = ([], [])
        self.best = math.inf
        if _clock() - _collapsed_at[0] < COLLAPSE_MEMORY_NS:
            # parallel steps collapsed lately: serial now, a probe later
            self.left = COLLAPSE_MEMORY_NS // BUDGET
        else:
            self._start()

    @property
    def parallel(self):
        """Whether the parallel form runs now."""
        return self.current == 1

    def _start(self):
        order = [-1 - i for i, k in enumerate(self.dispatchers) if k not in _warm]
        for _ in range(SAMPLES):
            order += [0, 1]
        self.order = order
        self.probing = True
        self.hopeless = [0, 0]
        self.times = ([], [])
        self.best = math.inf
        self.slow = 0

    def __call__(self, *args):
        i, counted, r, dt = self.timed(*args)
        self.record(i, dt, counted)
        return r

    def timed(self, *args):
        """Run the form :meth:`pick` gives on ``args``: ``(form, counted,
        result, ns)``. When the parallel form is picked but another thread's
        parallel kernel runs, the serial form runs instead, not counted."""
        i, counted = self.pick()
        if i == 1:
            if not PARALLEL_LOCK.acquire(False):
                self.lost()
                i, counted = 0, False
            else:
                try:
                    t = _clock()
                    r = self.forms[1](*args)
                    return 1, counted, r, _clock() - t
                finally:
                    PARALLEL_LOCK.release()
        t = _clock()
        r = self.forms[0](*args)
        return 0, counted, r, _clock() - t

    def pick(self):
        """``(form, counted)``: the form to run next, and whether its time
        counts (not the first call of a form)."""
        if not self.order:
            return self.current, True
        i = self.order.pop(0)
        return (i, True) if i >= 0 else (-1 - i, False)

    def lost(self):
        """The parallel form picked could not run (another thread's parallel
        kernel held :data:`PARALLEL_LOCK`): the probe goes on without it."""
        if self.probing:
            self.order = [j for j in self.order if j not in (1, -2)]
            if not self.order:
                self._decide()

    def record(self, i, dt, counted=True):
        """Form ``i`` took ``dt`` ns (per unit of work)."""
        if not counted:
            _warm.add(self.dispatchers[i])
            if self.probing and not self.order:
                self._decide()
            return
        if self.probing:
            self.times[i].append(dt)
            if dt > HOPELESS * self.best:
                self.hopeless[i] += 1
                if self.hopeless[i] >= (1 if self.backoff > 1 else HOPELESS_CALLS):
                    # far slower than the other form: no more samples of it
                    self.order = [j for j in self.order if j != i]
            else:
                self.best = min(self.best, dt)
            if not self.order:
                self._decide()
            return
        # a slow step counts as the limit: slow steps are counted apart
        self.left -= min(dt, self.limit)
        if self.left < 0:
            self._start()
        elif dt > self.limit:
            self.slow += 1
            if self.slow >= SLOW_STEPS:
                self._start()

    def _decide(self):
        med = [_median(t) for t in self.times]
        use = 1 if med[1] < MARGIN * med[0] else 0
        other = 1 - use
        if other == 1 and med[1] > HOPELESS * med[0]:
            _collapsed_at[0] = _clock()
            self.backoff = min(2 * self.backoff, 16)
        else:
            self.backoff = 1
        self.current = use
        typical = med[use] if med[use] < math.inf else 0
        self.limit = SLOW * typical + SLACK_NS if use == 1 else math.inf
        extra = sum(t - typical for t in self.times[other])
        self.left = max(min(BUDGET * extra, MOST_NS * self.backoff),
                        LEAST_STEPS * typical)
        self.probing = False

    def follow(self, serial, parallel):
        """A kernel of other work run as this one runs: ``parallel`` while
        the parallel form is in use and free to run, else ``serial``."""
        wide = parallel_form(parallel)
        me = self

        def call(*args):
            if me.current == 1 and PARALLEL_LOCK.acquire(False):
                try:
                    return wide(*args)
                finally:
                    PARALLEL_LOCK.release()
            return serial(*args)
        return call


def _median(values):
    if not values:
        return math.inf
    s = sorted(values)
    return s[len(s) // 2]
