"""Optimizer base class: parameter groups, per-parameter state, and a safetensors-friendly state_dict.

A subclass implements ``_update(p, grad, group, state)``: one parameter's step on raw arrays, in
place, with torch's formula and operation order (so trajectories match torch's to float32
rounding). ``state_dict()`` returns host numpy arrays (0-d for scalars such as ``step``) and plain
Python numbers, in torch's layout::

    {"state": {index: {"exp_avg": ndarray, "step": ndarray(int64), ...}},
     "param_groups": [{"lr": 0.001, ..., "params": [index, ...]}]}

where ``index`` numbers the parameters in the order of their groups. A checkpoint writer can
flatten ``state`` into safetensors names such as ``"state.3.exp_avg"`` and keep ``param_groups``
as JSON metadata.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend, profiler
from ..autograd import enable_grad
from ..tensor import Tensor

__all__ = ["Optimizer", "check_number"]


def check_number(owner: str, name: str, value, low: float = 0.0, high: float = math.inf) -> None:
    """Raise ValueError naming ``owner`` and ``name`` unless ``value`` is a real number with
    ``low <= value < high`` (written as torch does, ``not low <= value``, so NaN fails too)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value < high:
        bound = f"in [{low}, {high})" if high != math.inf else f"a finite number >= {low}"
        what = "learning rate " if name == "lr" else ""
        raise ValueError(f"{owner}: invalid {what}{name}={value!r}; it must be {bound}")


#: Hyper-parameters every optimizer checks in each parameter group, by torch's names: (low, high).
_RANGES = {"lr": (0.0, math.inf), "momentum": (0.0, math.inf), "dampening": (0.0, math.inf),
           "weight_decay": (0.0, math.inf), "eps": (0.0, math.inf)}


class Optimizer:
    """Base of all optimizers. ``params``: an iterable of Tensors, or of dicts (parameter groups)
    each with a ``"params"`` entry and optional per-group hyper-parameters overriding ``defaults``."""

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state: dict = {}  # Parameter -> {name: array or int}
        self.param_groups: list[dict] = []
        owner = type(self).__name__
        if isinstance(params, Tensor) or not hasattr(params, "__iter__"):
            raise TypeError(f"{owner}: params argument given to the optimizer should be an iterable of Tensors or "
                            f"dicts, but got {type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError(f"{owner}: optimizer got an empty parameter list (params)")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {group[k]}" for k in sorted(group) if k != "params")
        return "\n".join(lines) + "\n)"

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters (with its own hyper-parameters) to optimise."""
        owner = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{owner}: param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        if "params" not in group:
            raise ValueError(f"{owner}: a parameter group must have a 'params' entry, got keys {sorted(group)}")
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"{owner}: optimizer can only optimize Tensors, got {type(p).__name__} in params")
            if not p.is_leaf:
                raise ValueError(f"{owner}: can't optimize a non-leaf Tensor (params)")
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        self._check_group(group)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]) or len({id(p) for p in group["params"]}) != len(
                group["params"]):
            raise ValueError(f"{owner}: some parameters appear in more than one parameter group (or twice in one)")
        self.param_groups.append(group)

    def _check_group(self, group: dict) -> None:
        """Refuse NaN, infinite and negative rates, decays, momenta and eps, and betas outside [0, 1)."""
        owner = type(self).__name__
        for name, (low, high) in _RANGES.items():
            if name in group:
                check_number(owner, name, group[name], low, high)
        if "betas" in group:
            betas = group["betas"]
            if not isinstance(betas, (tuple, list)) or len(betas) != 2:
                raise ValueError(f"{owner}: invalid betas={betas!r}; it must be a pair (beta1, beta2)")
            for i, beta in enumerate(betas):
                check_number(owner, f"betas[{i}]", beta, 0.0, 1.0)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient: to None (default), or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.data.fill(0)

    def step(self, closure=None):
        """One update of every parameter that has a gradient. ``closure`` (optional) re-evaluates the
        model and returns the loss, which step returns."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with profiler.range_(f"{type(self).__name__}.step", "optimizer"):
            self._step_all()
        return loss

    def _step_all(self):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            fused = self._fused_params(params) if self._update_cpu is not None else []
            if fused:
                self._update_cpu(fused, group, [self.state.setdefault(p, {}) for p in fused])
            done = {id(p) for p in fused}
            for p in params:
                if id(p) not in done:
                    self._update(p, p.grad.data, group, self.state.setdefault(p, {}))
                p._version += 1  # the array changed in place: a graph that saved it must not use it

    def _update(self, p, grad, group, state):
        raise NotImplementedError

    # A subclass with a fused CPU kernel sets this to a method (params, group, states) that updates
    # a list of parameters of one dtype in one call (pyfastdl.kernels.optim).
    _update_cpu = None

    @staticmethod
    def _fused_params(params):
        """The parameters the fused CPU kernels can take: numpy float32/64, contiguous, gradient
        alike; all of the first such parameter's dtype (any others take the per-parameter path)."""
        ok = [p for p in params if isinstance(p.data, np.ndarray) and p.data.dtype.kind == "f"
              and p.data.dtype.itemsize in (4, 8) and p.data.flags.c_contiguous and p.data.flags.writeable
              and p.grad.data.dtype == p.data.dtype and p.grad.data.shape == p.data.shape]
        return [p for p in ok if p.data.dtype == ok[0].data.dtype] if ok else []

    # ---- checkpointing ------------------------------------------------------------------------
    def _indexed_params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict:
        """The optimizer's state as host numpy arrays and Python numbers (see the module docstring)."""
        index = {id(p): i for i, p in enumerate(self._indexed_params())}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {}
        for p, s in self.state.items():
            state[index[id(p)]] = {k: _to_host(v) for k, v in s.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore from :meth:`state_dict`'s output; arrays move to each parameter's device and dtype.
        Everything is checked before anything changes: group and parameter counts, the hyper-parameters
        (as the constructor checks them) and each state array's shape."""
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError(f"{owner}: state_dict must be an optimizer's state_dict() (a dict with 'state' and "
                             f"'param_groups'), got {type(state_dict).__name__}"
                             + (f" with keys {sorted(map(str, state_dict))}" if isinstance(state_dict, dict) else ""))
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{owner}: loaded state dict has {len(groups)} parameter groups; this optimizer has "
                             f"{len(self.param_groups)}")
        merged = []
        for i, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if not isinstance(saved, dict) or len(saved.get("params", ())) != len(group["params"]):
                raise ValueError(f"{owner}: loaded state dict's parameter group {i} has "
                                 f"{len(saved.get('params', ())) if isinstance(saved, dict) else 'no'} parameters; "
                                 f"this optimizer's has {len(group['params'])}")
            merged.append({**group, **{k: v for k, v in saved.items() if k != "params"}})
            self._check_group(merged[-1])
        by_saved_index = {int(i): p for saved, group in zip(groups, self.param_groups)
                          for i, p in zip(saved["params"], group["params"])}
        state = {}
        for key, s in state_dict["state"].items():
            p = by_saved_index.get(int(key))
            if p is None:
                raise ValueError(f"{owner}: the state of parameter {key!r}, which no parameter group lists")
            state[p] = {k: _from_host(v, p) for k, v in s.items()}
            for k, v in state[p].items():
                if getattr(v, "ndim", 0) and v.shape != p.shape:  # (0-d entries: counts such as step)
                    raise ValueError(f"{owner}: state {key}.{k} has shape {tuple(v.shape)}; its parameter has "
                                     f"shape {p.shape}")
        self.state = state
        for group, new in zip(self.param_groups, merged):
            group.update(new)


def _to_host(value):
    """An array state entry as a host numpy copy; a Python number as a 0-d numpy array."""
    if isinstance(value, (int, float)):
        return np.asarray(value)
    return backend.to_device(value, "cpu").copy()


def _from_host(value, p):
    """Undo :func:`_to_host` for parameter ``p``: 0-d integers become Python ints, arrays move to p."""
    value = value if hasattr(value, "shape") else np.asarray(value)
    if value.ndim == 0 and value.dtype.kind in "iu":
        return int(value)
    return backend.get_array_module(p.data).asarray(backend.to_device(value, p.device), dtype=p.dtype).copy()
