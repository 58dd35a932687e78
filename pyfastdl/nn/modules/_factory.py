"""Creating a layer's parameters and buffers on a device with a dtype (torch's device=/dtype= arguments)."""

from __future__ import annotations

import numpy as np

from ... import backend
from ...tensor import Tensor, _as_dtype
from ..parameter import Parameter


def empty(shape, device=None, dtype=None):
    """An uninitialised float array (float32 unless ``dtype``) on ``device`` (CPU unless given)."""
    xp = backend.array_module(backend.normalize_device(device))
    return xp.empty(tuple(shape), dtype=_as_dtype(dtype) or np.float32)


def parameter(shape, device=None, dtype=None):
    """A Parameter to be filled by the layer's reset_parameters()."""
    return Parameter(empty(shape, device, dtype))


def buffer(value, shape, device=None, dtype=None):
    """A Tensor of ``shape`` filled with ``value`` (float unless ``dtype`` says otherwise)."""
    arr = empty(shape, device, dtype)
    arr[...] = value
    return Tensor(arr)
