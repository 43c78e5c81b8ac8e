"""The structure of an :class:`numadam.Optimizer`'s parameters.

An Optimizer takes one array, a list or tuple of arrays, a dict of arrays,
or torch-style parameter groups (a list of dicts, each with a ``"params"``
entry that is one of the former and the group's own options). Its
gradients, bounds and states come in the same structure. :class:`Params`
records the structure once, flattens what comes in it to a list with one
entry per array (the *leaves*, in order: a dict's in its key order, groups
one after the other) and builds the structure back from such a list.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._arrays import is_device_array

__all__ = ["Params"]


def _is_array(a):
    return isinstance(a, np.ndarray) or is_device_array(a)


class Params:
    """The structure of ``params`` (see the module's docstring).

    ``kind`` is ``"array"``, ``"list"``, ``"dict"`` or ``"groups"``;
    ``leaves`` the arrays in order, ``labels`` their names in messages
    (``params[1]``, ``params['w']``, ``params[0]['params'][2]``), ``group``
    the group of each leaf and ``groups`` each group's own options (one empty
    dict unless ``kind`` is ``"groups"``).
    """

    def __init__(self, params, name="params"):
        self.name = name
        if isinstance(params, (list, tuple)) and params and all(
                isinstance(p, Mapping) for p in params):
            self.kind = "groups"
            self.parts = []
            self.groups = []
            for i, group in enumerate(params):
                where = f"{name}[{i}]"
                if "params" not in group:
                    raise ValueError(f"{where} must have a 'params' entry: a parameter "
                                     f"group is a dict of 'params' and the group's "
                                     f"options, got keys {sorted(map(str, group))}")
                self.parts.append(Params(group["params"], f"{where}['params']"))
                self.groups.append({k: v for k, v in group.items() if k != "params"})
            if any(p.kind == "groups" for p in self.parts):
                raise TypeError(f"{name}: the 'params' of a parameter group must be an "
                                "array, a list of arrays or a dict of arrays, not groups")
            self.leaves = [a for p in self.parts for a in p.leaves]
            self.labels = [label for p in self.parts for label in p.labels]
            self.suffixes = [f"[{i}]{sfx}" for i, p in enumerate(self.parts)
                             for sfx in p.suffixes]
            self.group = [i for i, p in enumerate(self.parts) for _ in p.leaves]
            return
        self.groups = [{}]
        if _is_array(params):
            self.kind = "array"
            self.leaves = [params]
            self.labels = [name]
            self.suffixes = [""]
        elif isinstance(params, (list, tuple)):
            self.kind = "list"
            self.leaves = list(params)
            self.suffixes = [f"[{i}]" for i in range(len(params))]
            self.labels = [name + sfx for sfx in self.suffixes]
        elif isinstance(params, Mapping):
            self.kind = "dict"
            self.keys = list(params)
            self.leaves = [params[k] for k in self.keys]
            self.suffixes = [f"[{k!r}]" for k in self.keys]
            self.labels = [name + sfx for sfx in self.suffixes]
        else:
            raise TypeError(f"{name} must be an array, a list or tuple of arrays, a dict "
                            "of arrays or a list of parameter groups (dicts with "
                            f"'params'), got {type(params).__name__}")
        if not self.leaves:
            raise ValueError(f"{name} must hold at least one array, got an empty "
                             f"{type(params).__name__}")
        bad = [(label, a) for label, a in zip(self.labels, self.leaves) if not _is_array(a)]
        if bad:
            label, a = bad[0]
            raise TypeError(f"{label} must be a NumPy array or a CUDA device array, got "
                            f"{type(a).__name__}")
        self.group = [0] * len(self.leaves)

    def __len__(self):
        return len(self.leaves)

    def flatten(self, value, what, leaf_ok=None):
        """The entries of ``value``, given in this structure, one per leaf.

        ``what`` names ``value`` in messages (``"the gradient"``); a list
        or tuple of the right length is taken for a list of arrays, a
        mapping with the same keys for a dict, a list with one entry per
        group for groups. ``leaf_ok(v)``, when given, says whether ``v`` is
        a single entry (a gradient or a pair of bounds), for the messages of
        a structure that is not there."""
        if self.kind == "array":
            return [value]
        if self.kind == "dict":
            if not isinstance(value, Mapping):
                raise TypeError(f"{what} must be a dict with the keys of {self.name}, "
                                f"got {type(value).__name__}")
            if len(value) != len(self.keys) or any(k not in value for k in self.keys):
                missing = [k for k in self.keys if k not in value]
                extra = [k for k in value if k not in self.keys]
                raise ValueError(f"{what} must have the keys of {self.name}: "
                                 + "; ".join(s for s in (
                                     f"missing {missing}" if missing else "",
                                     f"unknown {extra}" if extra else "") if s))
            return [value[k] for k in self.keys]
        n = len(self.parts) if self.kind == "groups" else len(self.leaves)
        unit = "groups" if self.kind == "groups" else "arrays"
        if not isinstance(value, (list, tuple)) or (leaf_ok is not None and leaf_ok(value)):
            raise TypeError(f"{what} of an Optimizer of {n} {unit} must be a list or "
                            f"tuple with one entry per {unit[:-1]}, got "
                            f"{type(value).__name__}")
        if len(value) != n:
            raise ValueError(f"{what} of an Optimizer of {n} {unit} must be a list or "
                             f"tuple with one entry per {unit[:-1]}, got {len(value)}")
        if self.kind == "list":
            return list(value)
        out = []
        for i, (part, v) in enumerate(zip(self.parts, value)):
            out.extend(part.flatten(v, f"{what}[{i}]", leaf_ok))
        return out

    def build(self, leaves):
        """The structure back from a list with one entry per leaf."""
        if self.kind == "array":
            return leaves[0]
        if self.kind == "list":
            return list(leaves)
        if self.kind == "dict":
            return dict(zip(self.keys, leaves))
        out, start = [], 0
        for part in self.parts:
            out.append(part.build(leaves[start:start + len(part)]))
            start += len(part)
        return out

    def label(self, what, j):
        """The name of leaf ``j``'s entry of ``what`` (``"gradient"``), given
        in this structure, in messages: ``gradient[1]``, ``gradient['w']``."""
        return what + self.suffixes[j]
