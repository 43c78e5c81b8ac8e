"""Checkpoints: a run's whole state on disk, and the run resumed from it.

A run given ``options={"checkpoint": path}`` writes its state to ``path``
every ``checkpoint_every`` steps (an integer) or seconds (a float; 60.0 by
default), at the top of an iteration: the iterate ``x_k`` has had its step
and is not yet evaluated. The file holds everything the iteration carries
at that point (the engine's arrays, which include the optimiser's slots, the
step count and the kept iterate; both gradient rows; the minibatch
permutation, its position and the generators' states; the schedule's
parameters, which hold ``reduce_on_plateau``'s own state; the smoothed
tests' state; the iterate average; catch-up's last-update steps; the history
so far; the counts), and the options of the run, so that
:func:`numadam.resume` continues it bitwise as if it had never stopped.

The format is NumPy's ``.npz``: the arrays by name, and ``meta``, a JSON
text with the scalars, the run's options and a description of the run that
a resume checks (method, size, dtype, switches). A file is written whole to
``path + ".tmp"``, flushed to disk (``fsync``), then renamed over ``path``
(an atomic replacement on POSIX file systems) and the directory is synced:
a crash at any moment leaves the previous checkpoint or the new one, never
a part of one.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
import zipfile

import numpy as np

__all__ = ["FORMAT", "Checkpointer", "read", "write", "encode_options",
           "decode_options"]

#: The format's name and version, the first thing a reader checks.
FORMAT = "numadam-checkpoint-1"

#: Arrays a checkpoint may hold (absent: not used by the run).
ARRAYS = ("x", "W", "P", "G0", "G1", "SP", "TS", "RB", "H", "A", "AS", "last",
          "perm", "gi", "gv", "pi", "pv", "bi", "bx")


def write(path, arrays, meta):
    """Write a checkpoint atomically: a temporary file beside ``path``,
    fsync, rename over ``path``, fsync of the directory."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)),
             **{k: v for k, v in arrays.items() if v is not None})
    with open(tmp, "wb") as fh:
        fh.write(buffer.getbuffer())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    folder = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def read(path):
    """``(arrays, meta)`` of the checkpoint at ``path``; ValueError naming
    the file when it is not a numadam checkpoint."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"][()]))
            arrays = {k: np.array(data[k]) for k in data.files if k != "meta"}
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path!r} is not a numadam checkpoint ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a numadam checkpoint (format "
                         f"{meta.get('format') if isinstance(meta, dict) else None!r}, "
                         f"expected {FORMAT!r})")
    return arrays, meta


# ------------------------------------------------------------- options --

def _encode(value):
    from .schedules import Schedule

    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else {"__float__": repr(v)}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        items = [_encode(v) for v in value]
        return items if isinstance(value, list) else {"__tuple__": items}
    if isinstance(value, Schedule):
        return {"__schedule__": {
            "segments": [[kind, list(map(float, nums)), list(map(float, extra))]
                         for kind, nums, extra in value.segments],
            "boundaries": [int(b) for b in value.boundaries], "text": value.text}}
    raise TypeError(type(value).__name__)


def _decode(value):
    from .schedules import Schedule

    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__float__" in value:
        return float(value["__float__"])
    if "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    s = value["__schedule__"]
    return Schedule(tuple((int(kind), tuple(nums), tuple(extra))
                          for kind, nums, extra in s["segments"]),
                    tuple(s["boundaries"]), s["text"])


def encode_options(options):
    """``options`` (the run's, as given) as JSON values: ``(encoded,
    missing)``, ``missing`` naming the options that cannot be stored (a
    Python callable learning rate), which a resume must be given again. The
    ``state`` option is left out (the checkpoint holds the state)."""
    encoded, missing = {}, []
    for name, value in options.items():
        if name in ("state", "seed"):
            continue          # the checkpoint holds the state and the streams
        try:
            encoded[name] = _encode(value)
        except TypeError:
            missing.append(name)
    return encoded, missing


def decode_options(encoded):
    return {name: _decode(value) for name, value in encoded.items()}


# ------------------------------------------------------------- writing --

class Checkpointer:
    """When a run writes its checkpoints: ``every`` steps (an int) or
    seconds (a float), counted from the run's start or last write."""

    def __init__(self, path, every, k):
        self.path = os.fspath(path)
        self.by_steps = isinstance(every, int)
        self.every = every
        self.next_step = k + every if self.by_steps else None
        self.next_time = None if self.by_steps else time.monotonic() + every
        self.failed = False       # a write failed (warned once)

    def due(self, k):
        if self.by_steps:
            return k >= self.next_step
        return time.monotonic() >= self.next_time

    def written(self, k):
        if self.by_steps:
            self.next_step = k + self.every
        else:
            self.next_time = time.monotonic() + self.every

    def limit(self, k, steps_per_second):
        """The step at which the loop next returns to look: the next
        checkpoint's, or (by seconds) about a twentieth of a period ahead."""
        if self.by_steps:
            return self.next_step
        ahead = steps_per_second * min(self.every, 1.0) / 20.0
        return k + max(1, int(min(ahead, 2 ** 40)))
