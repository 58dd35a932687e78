"""Making tensors: from data, filled, ranges; and the functions that combine several tensors."""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import backend, ops
from .tensor import Tensor, _as_dtype, _operand


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new leaf tensor holding a copy of ``data`` (nested lists, numbers, numpy or cupy arrays).

    Python floats become float32 and ints int64, as in torch; arrays keep their dtype unless
    ``dtype`` is given. ``device`` defaults to the device ``data`` is on ("cpu" for Python data)."""
    if isinstance(data, Tensor):
        data = data.data
    dtype = _as_dtype(dtype)
    try:
        src_device = backend.device_of(data)
    except TypeError:
        src_device = "cpu"
        arr = np.asarray(data)
        if dtype is None and arr.dtype == np.float64 and not isinstance(data, np.generic):
            dtype = np.dtype(np.float32)  # Python floats -> float32, torch's default
        data = arr
    device = backend.normalize_device(device or src_device)
    xp = backend.array_module(device)
    arr = xp.array(backend.to_device(data, device), dtype=dtype, copy=True)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"tensor: unsupported dtype {arr.dtype}")
    if not arr.dtype.isnative:  # a copy anyway: kept in this machine's byte order, as torch.tensor does
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return Tensor(arr, requires_grad=requires_grad)


def _filled(op, fill, shape, dtype, device, requires_grad):
    """A tensor of ``shape`` (sizes, or one tuple or list of them) filled with ``fill``; impossible sizes
    and sizes beyond memory raise errors naming ``op`` (:func:`pyfastdl.backend.allocate`)."""
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    arr = backend.allocate(op, "tensor", shape, _as_dtype(dtype) or np.float32, backend.normalize_device(device), fill)
    return Tensor(arr, requires_grad=requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _filled("zeros", 0, shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _filled("ones", 1, shape, dtype, device, requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad=False):
    return _filled("full", fill_value, (shape,), dtype, device, requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    return _filled("zeros_like", 0, t.shape, dtype or t.dtype, t.device, requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return _filled("ones_like", 1, t.shape, dtype or t.dtype, t.device, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None):
    """Values from ``start`` (default 0) up to ``end`` (excluded) by ``step``; int64 if all are ints."""
    if end is None:
        start, end = 0, start
    for name, v in (("start", start), ("end", end), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"arange: {name} must be a number, got {v!r}")
        if not math.isfinite(v):
            raise ValueError(f"arange: {name} must be finite, got {v}")
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    is_int = all(isinstance(v, numbers.Integral) for v in (start, end, step))
    dtype = _as_dtype(dtype) or np.dtype(np.int64 if is_int else np.float32)
    n = -((start - end) // step) if is_int else math.ceil((end - start) / step)  # ceil, exactly for ints
    n = n if n > 0 else 0
    backend.check_size("arange", "tensor", (n,), dtype)
    xp = backend.array_module(backend.normalize_device(device))
    try:
        return Tensor(xp.arange(start, end, step, dtype=dtype))
    except MemoryError:
        raise backend.out_of_memory("arange", "tensor", (n,), dtype) from None


def from_numpy(array):
    """A tensor sharing memory with a numpy array."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy array, got {type(array).__name__}")
    if array.dtype.kind not in "fiub":
        raise TypeError(f"from_numpy: unsupported dtype {array.dtype}")
    if not array.dtype.isnative:  # shared memory cannot be converted (torch.from_numpy refuses it too)
        raise ValueError(f"from_numpy: array has non-native byte order (dtype {array.dtype.str!r}); use "
                         f"pyfastdl.tensor(array), which copies, or array.astype(array.dtype.newbyteorder('='))")
    return Tensor(array)


def from_dlpack(obj):
    """A tensor sharing memory with ``obj`` through DLPack: a torch tensor, a cupy or numpy array
    (on the CPU or a CUDA GPU, which becomes the tensor's device). No copy is made, so writes
    through either side show in the other (``torch.from_dlpack(t)`` goes the other way)."""
    return Tensor(backend.from_dlpack(obj))


def _tensors(name, tensors):
    if isinstance(tensors, Tensor) or not isinstance(tensors, (tuple, list)):
        raise TypeError(f"{name}: tensors must be a sequence of Tensors, got {type(tensors).__name__}")
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{name}: expected a non-empty sequence of tensors")
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected tensors, got {type(t).__name__}")
    return tensors


def cat(tensors, dim=0):
    """Concatenate along an existing dimension (all other sizes must match)."""
    tensors = _tensors("cat", tensors)
    ref = tensors[0].shape
    (axis,) = ops._axes(dim, len(ref))
    for t in tensors[1:]:
        if len(t.shape) != len(ref) or any(a != b for i, (a, b) in enumerate(zip(t.shape, ref)) if i != axis):
            raise ValueError(f"cat: sizes must match except in dimension {axis}; got {ref} and {t.shape}")
    return ops.Cat.apply(dim, *tensors)


def stack(tensors, dim=0):
    """Join tensors of one shape along a new dimension."""
    tensors = _tensors("stack", tensors)
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: all tensors must have the same shape; got {tensors[0].shape} and {t.shape}")
    return ops.Stack.apply(dim, *tensors)


def where(condition, input, other):  # noqa: A002 (torch's names)
    """Elementwise ``input if condition else other`` (broadcasting); numbers take the tensor's dtype."""
    ref = input if isinstance(input, Tensor) else other
    if not isinstance(ref, Tensor):
        raise TypeError("where: at least one of input and other must be a tensor")
    cond = condition if isinstance(condition, Tensor) else Tensor(backend.get_array_module(ref.data).asarray(condition))
    if cond.dtype != np.bool_:
        raise TypeError(f"where: condition must be a bool tensor, got {cond.dtype}")
    return ops.Where.apply(cond, _operand(ref, input), _operand(ref, other))


def _unary(name, method):
    def fn(input, *args, **kwargs):  # noqa: A002
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected a Tensor, got {type(input).__name__}")
        return getattr(input, method)(*args, **kwargs)

    fn.__name__ = name
    fn.__doc__ = f"Functional form of Tensor.{method}."
    return fn


exp = _unary("exp", "exp")
log = _unary("log", "log")
sqrt = _unary("sqrt", "sqrt")
abs = _unary("abs", "abs")  # noqa: A001
tanh = _unary("tanh", "tanh")
sigmoid = _unary("sigmoid", "sigmoid")
relu = _unary("relu", "relu")
pow = _unary("pow", "pow")  # noqa: A001
clamp = _unary("clamp", "clamp")
sum = _unary("sum", "sum")  # noqa: A001
mean = _unary("mean", "mean")
max = _unary("max", "max")  # noqa: A001
min = _unary("min", "min")  # noqa: A001
matmul = _unary("matmul", "matmul")
reshape = _unary("reshape", "reshape")
flatten = _unary("flatten", "flatten")
transpose = _unary("transpose", "transpose")
permute = _unary("permute", "permute")
argmax = _unary("argmax", "argmax")
