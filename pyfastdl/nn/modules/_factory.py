"""Creating a layer's parameters and buffers on a device with a dtype (torch's device=/dtype= arguments).

Each function takes the layer (``owner``) first, so that a bad size or dtype, or a size beyond memory,
is an error naming the layer (``Linear: out_features must be a non-negative int, got -1``) instead of
numpy's "negative dimensions are not allowed" or "array is too big"."""

from __future__ import annotations

import numbers
import os

import numpy as np

from ... import backend
from ...tensor import Tensor, _as_dtype
from ..parameter import Parameter


def size(owner, name, value, minimum=0):
    """``value`` as an int of at least ``minimum`` (None: any): a layer's size argument (in_features,
    num_layers...) or index (a dim)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{type(owner).__name__}: {name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{type(owner).__name__}: {name} must be an int >= {minimum}, got {value}")
    return int(value)


def _dtype(owner, dtype):
    dt = _as_dtype(dtype) or np.dtype(np.float32)
    if dt.kind != "f":
        raise TypeError(f"{type(owner).__name__}: dtype must be a floating-point dtype, got {dt}")
    return dt


def check_memory(owner, count, dtype=None):
    """Before a layer allocates ``count`` parameter elements one array at a time: a MemoryError naming
    it when they would not fit in this machine's memory (rather than minutes of allocating first)."""
    nbytes = count * _dtype(owner, dtype).itemsize
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if nbytes > physical:
        raise MemoryError(f"{type(owner).__name__}: its parameters ({count} elements, {nbytes / 2**30:.1f} GiB) "
                          f"would not fit in this machine's memory ({physical / 2**30:.1f} GiB)")


def empty(owner, shape, device=None, dtype=None):
    """An uninitialised float array (float32 unless ``dtype``) on ``device`` (CPU unless given)."""
    return backend.allocate(type(owner).__name__, "parameter", shape, _dtype(owner, dtype),
                            backend.normalize_device(device))


def parameter(owner, shape, device=None, dtype=None):
    """A Parameter to be filled by the layer's reset_parameters()."""
    return Parameter(empty(owner, shape, device, dtype))


def buffer(owner, value, shape, device=None, dtype=None):
    """A Tensor of ``shape`` filled with ``value`` (float unless ``dtype`` says otherwise)."""
    dt = _as_dtype(dtype) or np.dtype(np.float32)
    return Tensor(backend.allocate(type(owner).__name__, "buffer", shape, dt, backend.normalize_device(device), value))

