"""Ctrl-C during a run: the run stops where it can keep its result.

While a run of :func:`numadam.minimize` holds a :class:`Guard` (in the
process's main thread, when SIGINT has Python's default handler), SIGINT
does not raise at once. The guard's handler sets the run's stop flag, which
the Python loop reads once per step and the compiled loop between its slices
of about 20 ms. The run then evaluates and tests the iterate at hand,
``x_k``, and ends there, without its step: with ``x_k``, its value and
gradient and the state that continues from it, exactly as a run given
``maxiter = k`` ends.

The user's code (``fun``, ``jac``, the callback) is let finish when it ends
within :data:`GRACE` seconds of the signal; after that, or at a second
Ctrl-C, KeyboardInterrupt is raised inside it, and the run ends with the
iterate that evaluation was for, whose value and gradient are then not
known (NaN in the result). Either way the run returns or raises
:class:`Interrupted`, carrying the result, well within half a second of the
signal, unless a single compiled kernel or Numba objective call runs longer.
"""

from __future__ import annotations

import signal
import threading

import numpy as np

__all__ = ["Guard", "Interrupted", "GRACE", "INTERRUPTED"]

#: ``res.status`` of an interrupted run.
INTERRUPTED = 98

#: Seconds the user's code may run on after Ctrl-C before it is interrupted.
GRACE = 0.3


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) ended a :func:`numadam.minimize` run: a
    :class:`KeyboardInterrupt` that carries the run's result as
    ``.result``, an :class:`~scipy.optimize.OptimizeResult` with status 98
    whose ``x`` and ``state`` continue the run (``options={"state":
    exc.result.state}``)."""

    def __init__(self, result):
        super().__init__(result.message)
        self.result = result


class Guard:
    """The SIGINT handler of one run, installed while the guard is entered.

    ``stop`` is the flag (a one-element array) the loop reads each step;
    ``asked`` tells that Ctrl-C came.
    :meth:`call` runs the user's code: it returns ``(True, value)``, or
    ``(False, None)`` when the interrupt was raised inside it. A guard that
    could not install its handler (not the main thread, or a handler of the
    user's) leaves SIGINT as it was and :meth:`call` just calls.
    """

    def __init__(self):
        self.stop = np.zeros(1, np.int64)
        self.asked = False        # Ctrl-C came
        self.installed = False
        self._previous = None
        self._depth = 0           # how deep in the user's code the run is
        self._timer = None
        self._token = 0
        self._hurry = False       # GRACE is over: raise in the user's code
        self._main = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._main = threading.main_thread().ident
            self.installed = True
        return self

    def __exit__(self, *exc):
        self._cancel()
        if self.installed:
            signal.signal(signal.SIGINT, self._previous)
            self.installed = False
        return False

    def _handle(self, signum, frame):
        if self._depth > 0 and (self._hurry or self.asked):
            # GRACE is over, or a second Ctrl-C: interrupt the user's code
            raise KeyboardInterrupt
        self.asked = True
        self.stop[0] = 1
        if self._depth > 0:
            self._arm()

    def _arm(self):
        if self._timer is None:
            self._timer = threading.Timer(GRACE, self._late, (self._token,))
            self._timer.daemon = True
            self._timer.start()

    def _late(self, token):
        # in the timer's thread: the user's code is still running
        if token == self._token and self._depth > 0:
            self._hurry = True
            # a real signal to the main thread, which also ends a blocking
            # call there (a sleep, a read) as Ctrl-C would
            signal.pthread_kill(self._main, signal.SIGINT)

    def _cancel(self):
        self._token += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._hurry = False

    def evaluator(self, evaluate):
        """``evaluate(x, out=None, call_args=None) -> (f, g)``, the
        objective's evaluator, as the user's code: ``(None, None)`` when
        Ctrl-C interrupted it."""
        if not self.installed:
            return evaluate
        call = self.call

        def guarded(x, out=None, call_args=None):
            done, fg = call(evaluate, x, out, call_args)
            return fg if done else (None, None)
        return guarded

    def call(self, fn, *args):
        """``fn(*args)``, the user's code: ``(True, value)``, or ``(False,
        None)`` when Ctrl-C interrupted it."""
        if not self.installed:
            return True, fn(*args)
        self._depth += 1
        if self.asked:
            self._arm()
        try:
            return True, fn(*args)
        except KeyboardInterrupt:
            return False, None
        finally:
            self._depth -= 1
            if self._timer is not None and self._depth == 0:
                self._cancel()
