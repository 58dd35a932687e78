"""Module: the base of every layer and model. It registers Parameters, buffers (non-learnable
state such as batch norm's running statistics) and sub-modules assigned as attributes, in
assignment order, and gives torch's ways to walk, move, save and load them."""

from __future__ import annotations

from collections import OrderedDict, namedtuple
from collections.abc import Mapping

import numpy as np

from ... import backend, profiler
from ...tensor import DTYPES, Tensor, _as_dtype
from ..parameter import Parameter

__all__ = ["Module"]

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _addindent(text, spaces):
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _parse_to(args, device, dtype):
    """Module.to's arguments: a device ("cpu"/"cuda"), a dtype, or both, positional or by name."""
    for a in args:
        if isinstance(a, str) and a not in DTYPES:
            device = a
        else:
            dtype = a
    return (None if device is None else backend.normalize_device(device)), _as_dtype(dtype)


class Module:
    """Base class of all layers and models; subclasses call ``super().__init__()`` first and
    define ``forward``. Calling the module calls forward."""

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args, **kwargs):
        if profiler._active is None:
            return self.forward(*args, **kwargs)
        with profiler.range_(type(self).__name__, "module"):
            return self.forward(*args, **kwargs)

    # ---- registration through attributes -------------------------------------------------------
    def _store(self, name):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() call")
        return self.__dict__

    def __setattr__(self, name, value):
        d = self.__dict__
        if isinstance(value, Parameter):
            self._store(name)
            self._forget(name)
            d["_parameters"][name] = value
        elif isinstance(value, Module):
            self._store(name)
            self._forget(name)
            d["_modules"][name] = value
        elif "_parameters" in d and name in d["_parameters"]:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(Parameter or None expected)")
            d["_parameters"][name] = None
        elif "_modules" in d and name in d["_modules"]:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                "(Module or None expected)")
            d["_modules"][name] = None
        elif "_buffers" in d and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' (Tensor or None expected)")
            d["_buffers"][name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        if not self._forget(name):
            object.__delattr__(self, name)

    def _forget(self, name):
        """Remove ``name`` from every registry (and plain attributes); True if it was registered."""
        d = self.__dict__
        found = False
        for store in ("_parameters", "_buffers", "_modules"):
            if name in d[store]:
                del d[store][name]
                found = True
        d["_non_persistent_buffers"].discard(name)
        d.pop(name, None)
        return found

    def _check_name(self, name, kind):
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f"{kind} name can't contain \".\" and can't be empty, got {name!r}")

    def register_parameter(self, name, param):
        """Add a Parameter (or None: a declared but absent parameter, such as a disabled bias)."""
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                            "(Parameter or None required)")
        self._store(name)
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Add a buffer: state that is saved in state_dict (if persistent) and moved by to(), but not trained."""
        self._check_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                            "(Tensor or None required)")
        self._store(name)
        self._forget(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name, module):
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._store(name)
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> "Module":
        """The sub-module at dotted path ``target`` ("" is self)."""
        mod = self
        for item in target.split(".") if target else ():
            if item not in mod._modules or mod._modules[item] is None:
                raise AttributeError(f"{mod._get_name()} has no submodule `{item}`")
            mod = mod._modules[item]
        return mod

    # ---- walking the tree ------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix=""):
        """(dotted name, module) for self and every descendant, each module once."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, prefix + ("." if prefix else "") + name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, store, prefix, recurse):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, store).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield module_prefix + ("." if module_prefix else "") + name, value

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, Parameter) pairs, shared parameters once, in registration order."""
        yield from self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ---- modes and gradients ---------------------------------------------------------------------
    def train(self, mode: bool = True):
        """Training mode (dropout active, batch norm uses and updates batch statistics) or not."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.training = mode
        for module in self.children():
            module.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True):
        for p in self.parameters():
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.data.fill(0)

    def apply(self, fn):
        """Call ``fn`` on every sub-module (children first) and on self; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ---- devices and dtypes ----------------------------------------------------------------------
    def to(self, *args, device=None, dtype=None):
        """Move parameters and buffers to ``device`` and/or cast the floating-point ones to ``dtype``,
        in place (the Parameter objects stay the same, so optimizers keep working); returns self."""
        device, dtype = _parse_to(args, device, dtype)

        def convert(array):
            if dtype is not None and array.dtype.kind == "f" and array.dtype != dtype:
                array = array.astype(dtype)
            return array if device is None else backend.to_device(array, device)

        for t in list(self.parameters()) + list(self.buffers()):
            t.data = convert(t.data)
            if t.grad is not None:
                t.grad = Tensor(convert(t.grad.data))
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    # ---- checkpoints -----------------------------------------------------------------------------
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """OrderedDict of dotted name -> Tensor for every parameter and persistent buffer.
        The Tensors share memory with the module (detached unless ``keep_vars``)."""
        out = OrderedDict() if destination is None else destination
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                out[prefix + name] = b if keep_vars else b.detach()
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(out, prefix + name + ".", keep_vars)
        return out

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values (Tensors or numpy/cupy arrays) into this module's parameters and buffers, in place,
        converting to each one's device and dtype. Shape mismatches always raise; with ``strict``, so do
        missing and unexpected names. Returns (missing_keys, unexpected_keys)."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{self._get_name()}.load_state_dict: state_dict must be a mapping of names to Tensors or "
                            f"arrays, got {type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict:
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
            if missing:
                errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        arrays = {}
        for name, target in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            array = value.data if isinstance(value, Tensor) else value
            try:
                backend.device_of(array)
            except TypeError:
                errors.append(f'value for "{name}" is a {type(value).__name__}, expected a Tensor or an array.')
                continue
            if array.dtype.kind not in "biuf":  # (complex would drop its imaginary part; objects, strings fail)
                errors.append(f'value for "{name}" has dtype {array.dtype}, which does not convert to {target.dtype}.')
                continue
            if tuple(array.shape) != target.shape:
                errors.append(f"size mismatch for {name}: copying a param with shape {tuple(array.shape)} from "
                              f"checkpoint, the shape in current model is {target.shape}.")
                continue
            arrays[name] = array
        if errors:
            raise ValueError(f"Error(s) in loading state_dict for {self._get_name()}:\n\t" + "\n\t".join(errors))
        for name, array in arrays.items():
            target = own[name]
            target.data[...] = backend.to_device(array, target.device).astype(target.dtype, copy=False)
            target._version += 1
        return IncompatibleKeys(missing, unexpected)

    # ---- printing --------------------------------------------------------------------------------
    def _get_name(self):
        return type(self).__name__

    def extra_repr(self) -> str:
        """The text inside this module's parentheses (its hyper-parameters); override in layers."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({key}): " + _addindent(repr(module), 2) for key, module in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                body = extra_lines[0]
            else:
                body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{self._get_name()}({body})"
