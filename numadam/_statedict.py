"""State dicts in torch.optim's layout, for :class:`numadam.Optimizer`.

``{"state": {i: {...}}, "param_groups": [{..., "params": [i, ...]}]}``: the
arrays numbered in order over the groups, each array's state under
torch.optim's names (``step``, ``exp_avg``, ``exp_avg_sq``,
``momentum_buffer``, ..., from :attr:`numadam._rules.Rule.state_names`), the
groups' hyperparameters under torch's keys (``lr``, ``betas``). NumPy
arrays throughout; a dict that ``torch.optim.<Method>.state_dict()`` made is
read too (its tensors converted with ``.numpy()``), without importing
torch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._arrays import host_array
from ._state import OptimizerState, running_powers

__all__ = ["export_group", "export_state", "import_group", "import_state",
           "TORCH_ONLY"]

#: Keys of torch.optim's param_groups that change nothing numadam computes
#: (how torch runs its kernels, and what its lr schedulers record).
TORCH_ONLY = frozenset({"foreach", "capturable", "differentiable", "fused",
                        "initial_lr"})


def export_group(values, shown, ids):
    """A group's entry: the hyperparameters of :class:`~numadam.ParamGroup`
    ``shown`` under torch's keys (``maximize`` among them) and the arrays'
    numbers."""
    entry = {}
    for name, value in shown.items():
        if name == "params":
            continue
        if name == "learning_rate":
            entry["lr"] = value
        elif name == "beta1" and "beta2" in shown:
            entry["betas"] = (shown["beta1"], shown["beta2"])
        elif name != "beta2" or "beta1" not in shown:
            entry[name] = value
    if values.get("clip_norm") is not None:
        entry["clip_norm"] = values["clip_norm"]
    entry["params"] = list(ids)
    return entry


def export_state(state, rule, shape):
    """One array's entry of ``"state"`` (None before its first step)."""
    t = int(state.aux[0])
    if t == 0:
        return None
    names = dict(rule.state_names)
    entry = {"step": np.float64(t)}
    S = host_array(state.S)
    for slot, row in zip(state.names, S):
        entry[names.get(slot, slot)] = row.reshape(shape).copy()
    if rule.name == "sgd" and not state.names:
        entry["momentum_buffer"] = None
    for j, (name, _) in enumerate(rule.aux):
        if name == "mu_product":
            entry["mu_product"] = np.float64(state.aux[j])
    entry["aux"] = np.array(state.aux, dtype=np.float64)     # numadam's, exact
    return entry


def _plain(value):
    """A torch tensor as a NumPy array (anything else as it is)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return value


def import_group(group, where):
    """The options of a group entry (torch's or numadam's), spelled as
    numadam's Optimizer takes them (``lr`` and ``betas`` are translated by
    the Optimizer), without the keys that only torch reads; also the
    entry's ``params`` list."""
    if not isinstance(group, Mapping) or "params" not in group:
        raise ValueError(f"{where} must be a dict with a 'params' list, got "
                         f"{type(group).__name__}")
    options = {k: _plain(v) for k, v in group.items()
               if k != "params" and k not in TORCH_ONLY}
    for name, value in options.items():
        if isinstance(value, np.ndarray) and value.ndim == 0:
            options[name] = value.item()
    if isinstance(options.get("betas"), (list, tuple)):
        options["betas"] = tuple(_plain(b) for b in options["betas"])
    return options, list(group["params"])


def import_state(entry, spec, rule, F, values, x, where):
    """The :class:`OptimizerState` of array ``x`` from its entry of
    ``"state"`` (a dict of arrays or tensors; None or empty: not stepped
    yet, None is returned)."""
    if entry is None or (isinstance(entry, Mapping) and not entry):
        return None
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be a dict of the array's state, got "
                         f"{type(entry).__name__}")
    entry = {k: _plain(v) for k, v in entry.items()}
    names = dict(rule.state_names)
    slots = tuple(rule.slots(F))
    n = x.size
    rows = []
    for slot in slots:
        key = names.get(slot, slot)
        if entry.get(key) is None:
            raise ValueError(f"{where} has no {key!r}, which {spec.name} with these "
                             f"options keeps (it has {sorted(entry)})")
        arr = np.asarray(entry[key])
        if arr.size != n or arr.dtype.kind not in "fiu":
            raise ValueError(f"{where}[{key!r}] must be a real array of {n} elements (the "
                             f"shape {x.shape} of its parameter), got shape {arr.shape} "
                             f"and dtype {arr.dtype}")
        rows.append(arr.reshape(-1))
    S = np.array(rows, dtype=x.dtype).reshape(len(slots), n)
    if "step" in entry:
        step = float(np.asarray(entry["step"]))
    elif rule.name == "sgd":
        # torch's SGD keeps no step count: a momentum buffer means a step
        step = 1.0 if entry.get("momentum_buffer") is not None else 0.0
    else:
        raise ValueError(f"{where} has no 'step'")
    if not (np.isfinite(step) and step >= 0 and step == int(step)):
        raise ValueError(f"{where}['step'] must be a whole number >= 0, got {step!r}")
    aux_names = [name for name, _ in rule.aux]
    given = entry.get("aux")
    if given is not None:
        aux = np.array(given, dtype=np.float64).reshape(-1)
        if aux.shape != (len(aux_names),) or aux[0] != step:
            raise ValueError(f"{where}['aux'] must hold {len(aux_names)} running "
                             f"scalars ({', '.join(aux_names)}) at step {step:g}, got "
                             f"{given!r}")
    else:
        aux = np.zeros(len(aux_names))
        for j, beta, _ in running_powers(rule):
            aux[j] = values[beta] ** step          # rounding errors stay 0
        for j, name in enumerate(aux_names):
            if name == "t":
                aux[j] = step
            elif name == "mu_product":
                if "mu_product" not in entry:
                    raise ValueError(f"{where} has no 'mu_product'")
                aux[j] = float(np.asarray(entry["mu_product"]))
    return OptimizerState(spec.name, rule.name, F, slots, S, aux)
