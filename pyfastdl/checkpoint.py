"""Checkpoints as safetensors files: no pickle anywhere.

One file holds the model's state (tensors named ``model.<name>``), optionally the optimizer's
state (its arrays as tensors named ``optimizer.<path>``, the rest of its structure as JSON),
optionally a training loop's state for resuming (arrays as ``training.<path>``, the rest as JSON;
see :mod:`pyfastdl.train.resume`) and any JSON metadata the caller wants to keep (recipe,
hyper-parameters, metrics). safetensors keeps string metadata beside the tensors; the JSON goes there.

Writes go to a temporary name in the same directory (``.<name>.tmp-<host>-<pid>``), are flushed to
disk and then renamed over the target, so a crash never leaves a half-written checkpoint under the
real name; the next save to that name removes temporary files that a killed process of this host
left behind. Loading checks that every name and shape matches the model and says which ones do
not; a damaged file is an error naming it.
"""

from __future__ import annotations

import json
import os
import socket

import numpy as np

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "read_metadata", "read_training_state",
           "CheckpointMismatchError", "FORMAT"]

#: Written into every checkpoint's metadata; files without it are refused.
FORMAT = "pyfastdl-checkpoint-1"

_MODEL = "model."
_OPTIMIZER = "optimizer."
_TRAINING = "training."


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


def save_checkpoint(path: str, model, optimizer=None, metadata: dict | None = None,
                    training_state: dict | None = None) -> None:
    """Save ``model.state_dict()`` (and ``optimizer.state_dict()`` if given) to ``path``.

    ``metadata`` is any JSON-serialisable dict (e.g. the recipe name and its arguments); it comes
    back from :func:`load_checkpoint`. ``training_state`` is a nested dict of numbers, strings,
    lists and arrays (a training loop's position, schedules, random states); it comes back from
    :func:`read_training_state`. The file is written under a temporary name and renamed.
    """
    from safetensors.numpy import save_file

    tensors = {_MODEL + name: _to_numpy(value) for name, value in model.state_dict().items()}
    header = {"format": FORMAT, "metadata": json.dumps(metadata or {})}
    optimizer_state = optimizer.state_dict() if optimizer is not None else None
    for section, prefix, state in (("optimizer", _OPTIMIZER, optimizer_state), ("training", _TRAINING, training_state)):
        if state is not None:
            arrays = {}
            header[section] = json.dumps(_flatten(state, "state", arrays))
            tensors.update({prefix + key: value for key, value in arrays.items()})
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    prefix = f".{os.path.basename(path)}.tmp-"
    _remove_stale_temporaries(directory, prefix)
    tmp = os.path.join(directory, f"{prefix}{socket.gethostname()}-{os.getpid()}")
    try:
        save_file(tensors, tmp, metadata=header)
        with open(tmp, "rb") as f:  # on disk before it takes the real name
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _fsync_directory(directory)


def _remove_stale_temporaries(directory: str, prefix: str) -> None:
    """Delete ``prefix<host>-<pid>`` files of this host (or ``prefix<pid>``, as older versions named
    them) whose process is gone: what a killed save left behind."""
    host = socket.gethostname()
    for name in os.listdir(directory):
        if not name.startswith(prefix):
            continue
        writer_host, _, pid = name[len(prefix):].rpartition("-")
        if writer_host in (host, "") and pid.isdigit() and not _process_alive(int(pid)):  # "": older name
            try:
                os.remove(os.path.join(directory, name))
            except FileNotFoundError:  # another process cleaned it up first
                pass


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


def _fsync_directory(directory: str) -> None:
    """Make the rename durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _header(path: str) -> dict:
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with safe_open(path, framework="numpy") as f:
            header = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a damaged header
        raise ValueError(f"{path}: not a safetensors file, or a damaged one ({e})") from e
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: not a pyfastdl checkpoint (metadata format {header.get('format')!r}, "
                         f"expected {FORMAT!r})")
    return header


def _json_section(path: str, header: dict, section: str):
    """The JSON string ``header[section]`` decoded; a damaged one is an error naming the file."""
    try:
        return json.loads(header[section])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: damaged checkpoint: its {section!r} metadata is missing or not JSON ({e})") from e


def read_metadata(path: str) -> dict:
    """The JSON metadata saved with a checkpoint, without reading its tensors."""
    return _metadata(path, _header(path))


def _metadata(path: str, header: dict) -> dict:
    metadata = _json_section(path, header, "metadata")
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: damaged checkpoint: its metadata is a {type(metadata).__name__}, not a dict")
    return metadata


def _tensors(path: str) -> dict:
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except Exception as e:  # a truncated or otherwise damaged tensor section
        raise ValueError(f"{path}: damaged checkpoint: cannot read its tensors ({e})") from e


def _section_state(path: str, header: dict, tensors: dict, section: str, prefix: str):
    """A structure :func:`save_checkpoint` flattened into ``header[section]`` and ``prefix`` tensors."""
    if section not in header:
        return None
    arrays = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        return _unflatten(_json_section(path, header, section), arrays)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: damaged checkpoint: its {section} state does not match its tensors ({e})") from e


def read_checkpoint(path: str) -> tuple[dict, dict | None, dict]:
    """Read a checkpoint without a model: ``(model_state, optimizer_state or None, metadata)``,
    model_state mapping parameter names to numpy arrays."""
    header = _header(path)
    metadata = _metadata(path, header)
    tensors = _tensors(path)
    model_state = {k[len(_MODEL):]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    return model_state, _section_state(path, header, tensors, "optimizer", _OPTIMIZER), metadata


def read_training_state(path: str) -> dict | None:
    """The ``training_state`` saved with a checkpoint (``None`` if it has none)."""
    header = _header(path)
    if "training" not in header:
        return None
    return _section_state(path, header, _tensors(path), "training", _TRAINING)


def check_state_matches(model_state: dict, expected: dict, where: str) -> None:
    """Raise :class:`CheckpointMismatchError` listing missing names, unexpected names, shape mismatches
    and dtypes of another kind (integers where the model holds floats: bits a float would misread)
    between a checkpoint's arrays and the model's state_dict."""
    missing = [name for name in expected if name not in model_state]
    unexpected = [name for name in model_state if name not in expected]
    shapes = [f"{name}: checkpoint {tuple(model_state[name].shape)} vs model {tuple(expected[name].shape)}"
              for name in expected if name in model_state
              and tuple(model_state[name].shape) != tuple(expected[name].shape)]
    kinds = {"f": "floating-point", "i": "integer", "u": "integer", "b": "bool"}  # (float64 -> float32 converts)
    dtypes = [f"{name}: checkpoint {model_state[name].dtype} vs model {expected[name].dtype}"
              for name in expected if name in model_state
              and kinds.get(model_state[name].dtype.kind, "other") != kinds.get(expected[name].dtype.kind)]
    problems = []
    if dtypes:
        problems.append(f"dtype mismatch: {'; '.join(dtypes)}")
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
