"""Utilities that bridge to other libraries. Nothing here imports torch: the caller brings it."""

from __future__ import annotations

from . import backend

__all__ = ["load_torch_state_dict"]


def load_torch_state_dict(model, state_dict, strict: bool = True):
    """Load a PyTorch ``state_dict`` (name -> torch.Tensor, e.g. torchvision's ResNet weights) into a
    pyfastdl ``model`` whose layers carry PyTorch's names, as the zoo's do.

    Every tensor is read through DLPack (no copy; a CUDA tensor becomes a cupy array), then copied
    into the parameter or buffer of the same name, converted to its device and dtype, by
    :meth:`Module.load_state_dict`, which checks names (with ``strict``: none missing, none
    unexpected) and shapes and raises ValueError naming each mismatch. Returns
    (missing_keys, unexpected_keys)."""
    if not hasattr(state_dict, "items"):
        raise TypeError(f"load_torch_state_dict: state_dict must be a mapping of names to tensors, got "
                        f"{type(state_dict).__name__}")
    arrays = {}
    for name, value in state_dict.items():
        if not hasattr(value, "__dlpack__"):
            raise TypeError(f"load_torch_state_dict: {name!r} is a {type(value).__name__}, not a tensor")
        if getattr(value, "requires_grad", False):
            value = value.detach()
        arrays[name] = backend.from_dlpack(value)
    return model.load_state_dict(arrays, strict=strict)
