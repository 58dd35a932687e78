"""Checkpoints as safetensors files: no pickle anywhere.

One file holds the model's state (tensors named ``model.<name>``), optionally the optimizer's
state (its arrays as tensors named ``optimizer.<path>``, the rest of its structure as JSON) and
any JSON metadata the caller wants to keep (recipe, hyper-parameters, metrics). safetensors keeps
string metadata beside the tensors; the JSON goes there.

Writes go to a temporary name in the same directory and are then renamed over the target, so a
crash never leaves a half-written checkpoint under the real name. Loading checks that every name
and shape matches the model and says which ones do not.
"""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "read_metadata", "CheckpointMismatchError",
           "FORMAT"]

#: Written into every checkpoint's metadata; files without it are refused.
FORMAT = "pyfastdl-checkpoint-1"

_MODEL = "model."
_OPTIMIZER = "optimizer."


class CheckpointMismatchError(ValueError):
    """A checkpoint's names or shapes do not match the model it is loaded into."""


def _to_numpy(value) -> np.ndarray:
    """A Tensor or array (numpy or cupy) -> a contiguous numpy array on the host."""
    from . import backend

    if hasattr(value, "requires_grad"):  # a Tensor
        value = value.data
    return np.asarray(backend.to_device(value, "cpu"), order="C")  # (ascontiguousarray would make 0-d 1-d)


def _is_array(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _flatten(obj, path: str, arrays: dict):
    """Replace every array/Tensor in a nested dict/list structure by ``{"__tensor__": key}``,
    collecting the arrays in ``arrays``; everything else must be JSON-representable."""
    if _is_array(obj):
        arrays[path] = _to_numpy(obj)
        return {"__tensor__": path, "kind": "array" if isinstance(obj, np.ndarray) else "tensor"}
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten(k, f"{path}.k{i}", arrays), _flatten(v, f"{path}.{k}", arrays)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_flatten(v, f"{path}.{i}", arrays) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"save_checkpoint: cannot store {type(obj).__name__} at {path!r} (arrays, numbers, "
                    "strings, None and dicts/lists of them only)")


def _unflatten(obj, arrays: dict):
    """Inverse of :func:`_flatten`; arrays that were Tensors come back as CPU Tensors."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            value = arrays[obj["__tensor__"]]
            if obj["kind"] == "tensor":
                from . import tensor

                return tensor(value)
            return value
        if "__dict__" in obj:
            return {_unflatten(k, arrays): _unflatten(v, arrays) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [_unflatten(v, arrays) for v in obj["__list__"]]
            return tuple(items) if obj["tuple"] else items
    return obj


def save_checkpoint(path: str, model, optimizer=None, metadata: dict | None = None) -> None:
    """Save ``model.state_dict()`` (and ``optimizer.state_dict()`` if given) to ``path``.

    ``metadata`` is any JSON-serialisable dict (e.g. the recipe name and its arguments); it comes
    back from :func:`load_checkpoint`. The file is written under a temporary name and renamed.
    """
    from safetensors.numpy import save_file

    tensors = {_MODEL + name: _to_numpy(value) for name, value in model.state_dict().items()}
    header = {"format": FORMAT, "metadata": json.dumps(metadata or {})}
    if optimizer is not None:
        optimizer_arrays = {}
        header["optimizer"] = json.dumps(_flatten(optimizer.state_dict(), "state", optimizer_arrays))
        tensors.update({_OPTIMIZER + key: value for key, value in optimizer_arrays.items()})
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        save_file(tensors, tmp, metadata=header)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _header(path: str) -> dict:
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with safe_open(path, framework="numpy") as f:
            header = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a damaged header
        raise ValueError(f"{path}: not a safetensors file ({e})") from e
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: not a pyfastdl checkpoint (metadata format {header.get('format')!r}, "
                         f"expected {FORMAT!r})")
    return header


def read_metadata(path: str) -> dict:
    """The JSON metadata saved with a checkpoint, without reading its tensors."""
    return json.loads(_header(path)["metadata"])


def read_checkpoint(path: str) -> tuple[dict, dict | None, dict]:
    """Read a checkpoint without a model: ``(model_state, optimizer_state or None, metadata)``,
    model_state mapping parameter names to numpy arrays."""
    from safetensors.numpy import load_file

    header = _header(path)
    tensors = load_file(path)
    model_state = {k[len(_MODEL):]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    optimizer_state = None
    if "optimizer" in header:
        arrays = {k[len(_OPTIMIZER):]: v for k, v in tensors.items() if k.startswith(_OPTIMIZER)}
        optimizer_state = _unflatten(json.loads(header["optimizer"]), arrays)
    return model_state, optimizer_state, json.loads(header["metadata"])


def check_state_matches(model_state: dict, expected: dict, where: str) -> None:
    """Raise :class:`CheckpointMismatchError` listing missing names, unexpected names and shape
    mismatches between a checkpoint's arrays and the model's state_dict."""
    missing = [name for name in expected if name not in model_state]
    unexpected = [name for name in model_state if name not in expected]
    shapes = [f"{name}: checkpoint {tuple(model_state[name].shape)} vs model {tuple(expected[name].shape)}"
              for name in expected if name in model_state
              and tuple(model_state[name].shape) != tuple(expected[name].shape)]
    problems = []
    if missing:
        problems.append(f"missing from the checkpoint: {', '.join(missing)}")
    if unexpected:
        problems.append(f"not in the model: {', '.join(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch: {'; '.join(shapes)}")
    if problems:
        raise CheckpointMismatchError(f"{where} does not match the model: " + ". ".join(problems))


def load_checkpoint(path: str, model=None, optimizer=None) -> dict:
    """Load a checkpoint into ``model`` (and ``optimizer``); returns its metadata dict.

    Every parameter name and shape must match ``model.state_dict()``; otherwise a
    :class:`CheckpointMismatchError` (a ValueError) lists the missing, unexpected and mis-shaped names.
    """
    model_state, optimizer_state, metadata = read_checkpoint(path)
    if model is not None:
        check_state_matches(model_state, model.state_dict(), path)
        model.load_state_dict(model_state)
    if optimizer is not None:
        if optimizer_state is None:
            raise ValueError(f"{path}: holds no optimizer state")
        optimizer.load_state_dict(optimizer_state)
    return metadata
