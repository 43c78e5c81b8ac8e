"""Option declarations, their validation, and the validated run options.

An :class:`Option` knows its name, kind, default, allowed range and
documentation.  The same declaration validates user input, renders the
``Options`` section of a method's docstring and feeds :func:`show_options`.
:class:`RunOptions` holds the common options of a run, each checked once at
the door (:func:`run_options`), as typed attributes.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
import sys
import warnings
from dataclasses import dataclass, make_dataclass

import numpy as np
from scipy.optimize import OptimizeWarning

__all__ = ["Option", "UPDATE_OPTIONS", "COMMON_OPTIONS", "RunOptions", "run_options",
           "check_count", "warn_user"]

_REQUIRED = object()


@dataclass(frozen=True)
class Option:
    """One option of a method.

    ``kind`` is one of

    - ``"real"``: a finite real number, optionally within ``[lower, upper]``
      (open ends where ``lower_open``/``upper_open``);
    - ``"int"``: an integer ``>= lower`` (0 unless given);
    - ``"flag"``: True or False; ``"level"``: the same, also given as an
      integer (0 is False), as scipy's ``disp`` is;
    - ``"switch"``: True, False or None (None: numadam decides);
    - ``"choice"``: one of ``choices``;
    - ``"seed"``: an integer >= 0 or a :class:`numpy.random.SeedSequence`;
    - ``"positions"``: a sequence of distinct integers >= 0 (positions in
      ``args``, checked against them when the run starts);
    - ``"object"``: anything; the consumer named in the documentation
      checks it before any evaluation (``state``: the engine's
      ``check_state``).

    ``optional`` options also take None, which means "not given".
    """

    name: str
    default: object
    doc: str
    kind: str = "real"
    lower: float | None = None
    upper: float | None = None
    lower_open: bool = False
    upper_open: bool = False
    symbol: str = ""
    choices: tuple = ()
    optional: bool = False

    # ------------------------------------------------------------------
    def allowed(self):
        """The allowed values, as a sentence fragment."""
        text = self._allowed()
        if self.optional and self.kind not in ("switch", "choice", "object"):
            text = f"{text}, or None"
        return text

    def _allowed(self):
        if self.kind == "flag":
            return "True or False"
        if self.kind == "level":
            return "True or False"
        if self.kind == "switch":
            if self.choices:
                names = ", ".join(repr(c) for c in self.choices)
                return f"True, False, None or {names}"
            return "True, False or None"
        if self.kind == "int":
            return f"an integer >= {int(self.lower or 0)}"
        if self.kind == "choice":
            names = [repr(c) for c in self.choices]
            return ", ".join(names[:-1]) + " or " + names[-1]
        if self.kind == "seed":
            return "an integer >= 0 or a numpy.random.SeedSequence"
        if self.kind == "positions":
            return "a sequence of distinct positions in args"
        if self.kind == "object":
            return ""
        lo, hi = self.lower, self.upper
        if lo is None and hi is None:
            return "a finite real number"
        parts = []
        if lo is not None:
            parts.append(f"{_fmt_bound(lo)} {'<' if self.lower_open else '<='} ")
        parts.append(self.name)
        if hi is not None:
            parts.append(f" {'<' if self.upper_open else '<='} {_fmt_bound(hi)}")
        return "".join(parts)

    def type_name(self):
        return {"real": "float", "int": "int", "flag": "bool", "level": "bool",
                "switch": "bool, str or None" if self.choices else "bool or None",
                "choice": "str or None", "seed": "int",
                "positions": "sequence of int"}.get(self.kind, "object")

    def check(self, value, owner):
        """Return ``value`` normalised, or raise naming the option.

        ``owner`` names the method in the message.
        """
        if value is None and (self.optional or self.kind in ("switch", "object")):
            return None
        if self.kind == "choice":
            if isinstance(value, str) and value in self.choices or (
                    value is None and None in self.choices):
                return value
            raise ValueError(f"{owner}: option {self.name!r} must be "
                             f"{self._allowed()}, got {value!r}")
        checker = getattr(self, f"_check_{self.kind}")
        return checker(value, f"{owner}: option {self.name!r}")

    def _check_flag(self, value, what):
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise TypeError(f"{what} must be True or False, got {value!r} "
                        f"({type(value).__name__})")

    def _check_level(self, value, what):
        if isinstance(value, (bool, np.bool_, numbers.Integral)):
            return bool(value)
        raise TypeError(f"{what} must be {self._allowed()}, got {value!r} "
                        f"({type(value).__name__})")

    def _check_switch(self, value, what):
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, str) and value in self.choices:
            return value
        error = ValueError if isinstance(value, str) and self.choices else TypeError
        raise error(f"{what} must be {self._allowed()}, got {value!r} "
                    f"({type(value).__name__})")

    def _check_int(self, value, what):
        return check_count(value, what, int(self.lower or 0))

    def _check_seed(self, value, what):
        if isinstance(value, np.random.SeedSequence):
            return value
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{what} must be an integer >= 0 or None, got {value!r}")
        if value < 0:
            raise ValueError(f"{what} must be an integer >= 0 or None, got {value!r}")
        return int(value)

    def _check_positions(self, value, what):
        try:
            items = list(value)
        except TypeError:
            raise TypeError(f"{what} must be a sequence of positions in args, got "
                            f"{value!r}") from None
        if not all(isinstance(p, numbers.Integral) and not isinstance(p, (bool, np.bool_))
                   for p in items):
            raise TypeError(f"{what} must be a sequence of positions in args, got "
                            f"{value!r}")
        if not items or len(set(items)) != len(items) or min(items) < 0:
            raise ValueError(f"{what} must name distinct positions >= 0, at least one, "
                             f"got {value!r}")
        return tuple(int(p) for p in items)

    def _check_object(self, value, what):
        return value

    def _check_real(self, value, what):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{what} must be a real number, got {value!r} "
                            f"({type(value).__name__})")
        v = float(value)
        ok = math.isfinite(v)
        if ok and self.lower is not None:
            ok = v > self.lower if self.lower_open else v >= self.lower
        if ok and self.upper is not None:
            ok = v < self.upper if self.upper_open else v <= self.upper
        if not ok:
            raise ValueError(f"{what} must satisfy {self._allowed()}, got {value!r}")
        return v

    def describe(self):
        """numpydoc-style lines for a docstring's Options section."""
        head = f"{self.name} : {self.type_name()}, default {self._default_text()}"
        body = self.doc
        allowed = self.allowed()
        if self.kind == "real" and allowed:
            body = f"{body} Allowed: ``{allowed}``."
        return head, body

    def _default_text(self):
        if self.default is _REQUIRED:
            return "required"
        if isinstance(self.default, float):
            return _fmt(self.default)
        return repr(self.default)


def _fmt(v):
    """Short text of a number for messages and docs (1e-08 -> 1e-8)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e6:
        return repr(v)
    text = repr(v)
    if "e-0" in text:
        text = text.replace("e-0", "e-")
    return text


def _fmt_bound(v):
    return str(int(v)) if float(v).is_integer() else _fmt(v)


def check_count(value, what, least=0):
    """``value`` as an int, or raise: TypeError for a non-number, ValueError
    for a non-integer or a value below ``least``; ``what`` names it."""
    allowed = f"an integer >= {least}"
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be {allowed}, got {value!r}")
    if isinstance(value, numbers.Integral):
        v = int(value)
    elif isinstance(value, numbers.Real) and float(value).is_integer():
        v = int(value)
    elif isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be {allowed}, got {value!r}")
    else:
        raise TypeError(f"{what} must be {allowed}, got {value!r} "
                        f"({type(value).__name__})")
    if v < least:
        raise ValueError(f"{what} must be {allowed}, got {value!r}")
    return v


#: Options of the update that every method takes besides its own
#: hyperparameters, in :func:`numadam.minimize` and :class:`numadam.Optimizer`
#: alike: :class:`numadam._registry.MethodSpec` appends them to each method's
#: options, so they are validated, shown and documented with them.
UPDATE_OPTIONS = (
    Option("clip_norm", None, "Clip the gradient to this global L2 norm before "
           "the update, as ``torch.nn.utils.clip_grad_norm_`` does: with ``n = "
           "sqrt(sum(g**2))``, summed in float64 over every array (an Optimizer's "
           "arrays together; a sparse gradient's coalesced values), g is "
           "multiplied by ``clip_norm / (n + 1e-6)`` when that is below 1, before "
           "weight decay and the rest of the update. ``optax.clip_by_global_norm`` "
           "scales by ``clip_norm / n`` when ``n > clip_norm`` (no 1e-6). The "
           "termination tests, res.jac and the history see the gradient as jac "
           "returns it. None (the default) does not clip.", lower=0.0,
           lower_open=True, optional=True, symbol="c"),
    Option("maximize", False, "Ascend the objective instead of descending it, as "
           "torch.optim's ``maximize=True`` does: every step uses the negated "
           "gradient (after clipping, before weight decay and the rest of the "
           "update). ``res.fun`` and ``res.jac`` are the objective's own value and "
           "gradient; the termination tests are unchanged (``gtol``, ``ftol`` and "
           "``xtol`` look at sizes of changes, not at their sign).", kind="flag"),
)

#: Options every numadam method accepts in :func:`numadam.minimize`, besides
#: its hyperparameters and :data:`UPDATE_OPTIONS`.
COMMON_OPTIONS = (
    Option("maxiter", 1000, "Maximum number of update steps. ``res.nit`` "
           "counts the steps taken.", kind="int"),
    Option("gtol", 1e-5, "Stop successfully when ``max(abs(g)) <= gtol`` at "
           "the current iterate. 0 disables the test.", lower=0.0),
    Option("ftol", 0.0, "Stop successfully when "
           "``abs(f_prev - f) <= ftol * max(abs(f_prev), abs(f), 1)`` after a "
           "step. 0 (the default) disables the test.", lower=0.0),
    Option("xtol", 0.0, "Stop successfully when "
           "``max(abs(x - x_prev)) <= xtol * max(1, max(abs(x)))`` after a step. "
           "0 (the default) disables the test.", lower=0.0),
    Option("disp", False, "Show a progress bar (tqdm, if installed) and print "
           "scipy's summary when the run ends.", kind="level"),
    Option("parallel", None, "Use the parallel (``prange``) kernels: True, "
           "False, or None: serial below a size (of x for dense steps, the number "
           "of touched values for sparse ones) from which the parallel ones can "
           "win, and above it the faster as measured during the run (see "
           ":ref:`performance`).", kind="switch"),
    Option("state", None, "An :class:`~numadam.OptimizerState` from an earlier "
           "result (``res.state``) to continue that run exactly (checked against "
           "the method and x0 before the first evaluation), or the path of a "
           "``checkpoint``: the run it holds goes on from its iterate (x0 is "
           "not used), as :func:`numadam.resume` does with this call's options.",
           kind="object"),
    Option("compiled", None, "Run the whole loop compiled: None (the default) "
           "does when fun and jac are Numba functions, False never does, True "
           "requires it. The compiled loop calls them as first-class functions "
           "of their signature, so it is compiled once per method, switches and "
           "signature and kept in Numba's disk cache; ``'inline'`` requires it "
           "too, compiled for this objective alone with its code inlined (a few "
           "tens of ns faster per step on tiny objectives, compiled anew in every "
           "process).", kind="switch", choices=("inline",)),
    Option("callback_every", 1, "Call the callback every this many steps (an "
           "integer >= 1); the compiled loop runs compiled in between.",
           kind="int", lower=1),
    Option("jac_out", False, "jac (or fun with jac=True) takes a last argument "
           "``out`` and writes the gradient into it, so that no gradient is "
           "allocated per step; jac returns None (or ``out``), fun returns f "
           "alone.", kind="flag"),
    Option("batch_size", None, "Draw a minibatch of this many rows of the array "
           "arguments each step (shuffled epochs without replacement).", kind="int",
           lower=1, optional=True),
    Option("batch_args", None, "Positions in ``args`` of the arrays to slice into "
           "minibatches; by default every NumPy array with ndim >= 1 and every 2-D "
           "scipy.sparse matrix. Any argument with a ``shape`` and rows to index "
           "(``a[rows]``) may be named.", kind="positions", optional=True),
    Option("epochs", None, "With batch_size: the number of passes over the data, "
           "instead of maxiter.", kind="int", lower=1, optional=True),
    Option("seed", None, "Seed of the run's random streams: the minibatch "
           "permutations and the generator passed for ``numadam.RNG`` in args.",
           kind="seed", optional=True),
    Option("smoothing", None, "Decay of the moving averages of the loss and the "
           "gradient norm that ftol and gtol test: 0 for full-batch runs, "
           "1 - 1/(batches per epoch) with minibatches by default.", lower=0.0,
           upper=1.0, upper_open=True, optional=True),
    Option("patience", None, "Steps over which the smoothed tests must hold: 1 "
           "for full-batch runs, one epoch with minibatches by default.",
           kind="int", lower=1, optional=True),
    Option("average", None, "Iterate averaging: None, 'ema' (an exponential "
           "moving average) or 'polyak' (the running mean). res.x is then the "
           "average and res.x_last the last iterate.", kind="choice",
           choices=(None, "ema", "polyak")),
    Option("average_decay", 0.999, "Decay of the 'ema' average.", lower=0.0,
           upper=1.0, upper_open=True),
    Option("average_start", 0, "Average the iterates after this many steps.",
           kind="int"),
    Option("sparse", None, "How to apply sparse gradients (jac returning a "
           "numadam.SparseGradient, a scipy.sparse row or (indices, values)): "
           "'lazy', 'catchup' or 'dense'.", kind="choice",
           choices=(None, "lazy", "catchup", "dense")),
    Option("device", None, "Where the run keeps x, the gradient and the state: "
           "None (the host, or the GPU when x0 is a CUDA device array), 'cpu' or "
           "'cuda' (see the GPU guide).", kind="choice", choices=(None, "cpu", "cuda")),
    Option("checkpoint", None, "A file path: the run writes its whole state "
           "there (a ``.npz`` file, replaced atomically) every "
           "``checkpoint_every``, so that :func:`numadam.resume` continues it "
           "bitwise after a crash or a kill (see :ref:`guide-checkpoints`).",
           kind="object"),
    Option("checkpoint_every", 60.0, "How often a run with ``checkpoint`` writes "
           "it: every this many steps (an integer >= 1) or seconds (a float > 0).",
           kind="object"),
    Option("on_interrupt", "raise", "What Ctrl-C (SIGINT) during the run does: "
           "the run stops at its next step (within half a second) and, with "
           "'raise', raises :class:`numadam.Interrupted`, a KeyboardInterrupt "
           "whose ``.result`` is the run's result so far (status 98, ``x`` and "
           "``state`` to continue from); with 'return', returns that result.",
           kind="choice", choices=("raise", "return")),
    Option("history", None, "Record the loss, the gradient norm (max(abs(g))) "
           "and the learning rate in res.history: None, 'step' or 'epoch' (means "
           "over each epoch).", kind="choice", choices=(None, "step", "epoch")),
)

#: The names of :data:`COMMON_OPTIONS`.
RUN_OPTION_NAMES = frozenset(o.name for o in COMMON_OPTIONS)


def _field_type(opt):
    return {"real": float, "int": int, "flag": bool, "level": bool}.get(opt.kind, object)


RunOptions = make_dataclass(
    "RunOptions",
    [(o.name, _field_type(o)) for o in COMMON_OPTIONS]
    + [("maxiter_given", bool), ("learning_rate_schedule", object)],
    frozen=True,
    namespace={"__module__": __name__, "__doc__": """The common options of a run,
    validated (see :func:`run_options`).

    One attribute per entry of :data:`COMMON_OPTIONS`, in its normalised
    form (floats, ints, bools, None for "not given"), plus ``maxiter_given``
    (whether the user gave maxiter) and ``learning_rate_schedule`` (the
    method's learning rate when it is a schedule or a callable, else None;
    filled in once the method's options are resolved).
    Frozen: a driver that needs another value (maxiter from epochs) makes a
    new one with :func:`dataclasses.replace`.
    """})


def run_options(given, owner):
    """Validate the common options in ``given`` (a dict of name to value; the
    others take their defaults) and return the :class:`RunOptions`.

    Every value is checked against its declaration, then the options that
    depend on each other, before anything runs; errors name the option, what
    it got and what is allowed. ``owner`` (the method's name) starts each
    message.
    """
    values = {opt.name: opt.check(given.get(opt.name, opt.default), owner)
              for opt in COMMON_OPTIONS}
    if values["batch_size"] is None:
        for name in ("batch_args", "epochs"):
            if values[name] is not None:
                raise ValueError(f"{owner}: option {name!r} needs option 'batch_size'"
                                 + (" (full-batch runs count steps with maxiter)"
                                    if name == "epochs" else ""))
        if values["history"] == "epoch":
            raise ValueError(f"{owner}: option history='epoch' needs option "
                             "'batch_size'; use history='step' for full-batch runs")
    values["checkpoint"], values["checkpoint_every"] = _checkpoint_options(
        values["checkpoint"], values["checkpoint_every"], owner)
    if values["epochs"] is not None and "maxiter" in given:
        raise ValueError(f"{owner}: give either option 'epochs' or option 'maxiter', "
                         "not both")
    return RunOptions(**values, maxiter_given="maxiter" in given,
                      learning_rate_schedule=None)


def _checkpoint_options(path, every, owner):
    """``checkpoint`` as a str path whose directory exists, and
    ``checkpoint_every`` as an int (steps) or a float (seconds)."""
    if isinstance(every, (bool, np.bool_)) or not isinstance(every, numbers.Real):
        raise TypeError(f"{owner}: option 'checkpoint_every' must be an integer >= 1 "
                        f"(steps) or a float > 0 (seconds), got {every!r}")
    if isinstance(every, numbers.Integral):
        if every < 1:
            raise ValueError(f"{owner}: option 'checkpoint_every' must be an integer "
                             f">= 1 (steps) or a float > 0 (seconds), got {every!r}")
        every = int(every)
    else:
        every = float(every)
        if not (math.isfinite(every) and every > 0.0):
            raise ValueError(f"{owner}: option 'checkpoint_every' must be an integer "
                             f">= 1 (steps) or a float > 0 (seconds), got {every!r}")
    if path is None:
        return None, every
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise TypeError(f"{owner}: option 'checkpoint' must be a file path (str or "
                        f"os.PathLike) or None, got {type(path).__name__}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if path == "" or os.path.isdir(path):
        raise ValueError(f"{owner}: option 'checkpoint' must name a file, got {path!r}")
    if not os.path.isdir(folder):
        raise ValueError(f"{owner}: option 'checkpoint' names a file in {folder!r}, "
                         "which is not a directory")
    return path, every


#: torch.optim's spellings of options, taken as they are where the method
#: has the options they stand for (:func:`translate_aliases`), with the
#: numadam names they stand for.
TORCH_ALIASES = {
    "lr": ("learning_rate",),
    "betas": ("beta1", "beta2"),
}

#: Names other libraries use for options, with the numadam name: hints for
#: an unknown option, not aliases.
ALIASES = {
    "beta_1": "beta1",
    "beta_2": "beta2",
    "b1": "beta1",
    "b2": "beta2",
    "epsilon": "eps",
    "max_iter": "maxiter",
    "decay": "weight_decay",
    "rho": "alpha",
}


def translate_aliases(options, valid, owner):
    """``options`` with torch.optim's spellings (:data:`TORCH_ALIASES`)
    replaced by the names they stand for, where all of those are in
    ``valid``: ``lr`` for ``learning_rate``, ``betas=(b1, b2)`` for
    ``beta1`` and ``beta2``. A new dict when anything is replaced (the
    caller's is left as it was). Raises TypeError for an option given in
    both spellings, ValueError for ``betas`` that is not a pair."""
    if not any(alias in options for alias in TORCH_ALIASES):
        return options
    out = dict(options)
    for alias, names in TORCH_ALIASES.items():
        if alias not in out or not all(n in valid for n in names):
            continue
        both = [n for n in names if n in out]
        if both:
            raise TypeError(f"{owner}: option {alias!r} is torch.optim's spelling of "
                            f"{' and '.join(map(repr, names))}: give one spelling, not "
                            f"both (got {alias!r} and {both[0]!r})")
        value = out.pop(alias)
        if len(names) == 1:
            out[names[0]] = value
            continue
        try:
            parts = tuple(value)
        except TypeError:
            parts = ()
        if len(parts) != len(names) or isinstance(value, (str, bytes)):
            raise ValueError(f"{owner}: option {alias!r} must be a pair "
                             f"({', '.join(names)}), got {value!r}")
        out.update(zip(names, parts))
    return out


def unknown_option_message(unknown, valid, lead="Unknown solver options", known=()):
    """scipy's "Unknown solver options" text (or ``lead``), with hints for
    near misses (none for the names in ``known``, which the caller
    explains)."""
    msg = f"{lead}: " + ", ".join(map(str, unknown))
    hints = []
    for name in unknown:
        if name in known:
            continue
        if name in ALIASES:
            hints.append(f"{name!r} is spelled {ALIASES[name]!r} here")
            continue
        close = closest(str(name), valid)
        if close:
            hints.append(f"did you mean {close!r} for {name!r}?")
    if hints:
        msg += " (" + "; ".join(hints) + ")"
    return msg


def edit_distance(a, b):
    """Optimal string alignment distance: insertions, deletions,
    substitutions and swaps of neighbours each cost 1."""
    prev2 = None
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def closest(name, candidates):
    """The candidate nearest to ``name`` (case-insensitive), or None if none
    is plausibly meant."""
    key = name.lower()
    if len(key) >= 3:
        prefixed = [c for c in candidates if c.lower().startswith(key)]
        if len(prefixed) == 1:
            return prefixed[0]
    best = min(candidates, key=lambda c: (edit_distance(key, c.lower()),
                                          -difflib.SequenceMatcher(None, key, c.lower()).ratio()))
    distance = edit_distance(key, best.lower())
    if distance <= max(1, len(key) // 3) or difflib.SequenceMatcher(
            None, key, best.lower()).ratio() >= 0.6:
        return best
    return None


_OWN_DIR = os.path.dirname(os.path.abspath(__file__))


def warn_user(message, category=OptimizeWarning):
    """Warn with the stack level of the first frame outside numadam and scipy."""
    frame = sys._getframe(1)
    level = 2
    skip = (_OWN_DIR, os.path.join("scipy", "optimize"))
    while frame is not None and any(p in frame.f_code.co_filename for p in skip):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def check_rate(value, name="learning_rate", at=""):
    """``value``, a learning rate, as a float; TypeError or ValueError
    naming it (``name``, and ``at``, say " at step 3") unless it is a finite
    real number >= 0: a negative rate would ascend, a NaN or an infinite
    one would wreck x."""
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        lr = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}{at}") from None
    if not (math.isfinite(lr) and lr >= 0.0):
        shown = value if type(value) in (int, float) else lr
        raise ValueError(f"{name} must be finite and >= 0, got {shown!r}{at}")
    return lr
