"""Tensor: an ndarray (numpy on "cpu", cupy on "cuda") plus what autograd needs.

Methods follow PyTorch's names. Every differentiable method is a thin call of a Function in
:mod:`pyfastdl.ops` (or :mod:`pyfastdl.nn.functional`); Tensor itself holds no maths.
Operands must share device and floating-point dtype: nothing is copied or converted silently.
Python numbers combine with any tensor and take its dtype.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import backend, ops
from .autograd import is_grad_enabled, register_post_accumulate_grad_hook, register_tensor_class, run_backward

DTYPES = {
    "float16": np.float16,
    "float32": np.float32,
    "float64": np.float64,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "bool": np.bool_,
}


def _as_dtype(dtype):
    if dtype is None:
        return None
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise TypeError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    return np.dtype(dtype)


class DtypeError(TypeError, RuntimeError):
    """A dtype that cannot do what was asked (requires_grad on integers): a TypeError, and the
    RuntimeError torch raises there."""


class Tensor:
    """A multi-dimensional array with autograd. Create with :func:`pyfastdl.tensor`."""

    __array_priority__ = 1000  # numpy scalars on the left defer to Tensor's reflected operators
    _grad_hooks = ()  # post-accumulate-grad hooks; a list on the instances that have any

    __slots__ = ("_data", "grad", "_node", "_output_index", "_version", "_requires_grad", "__weakref__",
                 "__dict__")

    def __init__(self, data, requires_grad=False):
        if type(data) is not np.ndarray:
            backend.device_of(data)  # TypeError unless numpy or cupy ndarray
        if data.dtype.kind not in "fiub":  # complex and object arrays would reach the ops as garbage
            raise TypeError(f"Tensor: unsupported dtype {data.dtype} (float, int, uint or bool)")
        self._data = data
        self.grad = None
        self._node = None  # the graph node that produced this tensor (None for leaves)
        self._output_index = 0
        self._version = 0
        self._requires_grad = False
        if requires_grad:
            self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, data, requires_grad):
        """A Tensor around an op's output array (the autograd engine's constructor: no checks)."""
        t = object.__new__(cls)
        t._data, t.grad, t._node, t._output_index, t._version, t._requires_grad = data, None, None, 0, 0, requires_grad
        return t

    # ---- attributes -----------------------------------------------------------------------------
    @property
    def data(self):
        """The underlying ndarray (numpy or cupy). Writing to it directly bypasses autograd."""
        return self._data

    @data.setter
    def data(self, value):
        if value.shape != self._data.shape:
            raise ValueError(f"data: new array has shape {value.shape}, tensor has {self._data.shape}")
        self._data = value
        self._version += 1

    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        if value and self._data.dtype.kind != "f":
            raise DtypeError(f"{type(self).__name__}: only floating-point tensors can require gradients "
                             f"(requires_grad=True), got dtype {self._data.dtype}")
        if not value and self._node is not None:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors; use detach()")
        self._requires_grad = bool(value)

    @property
    def shape(self):
        return self._data.shape if type(self._data) is np.ndarray else tuple(self._data.shape)

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def device(self) -> str:
        return "cpu" if type(self._data) is np.ndarray else backend.device_of(self._data)

    @property
    def ndim(self):
        return self._data.ndim

    @property
    def is_leaf(self):
        return self._node is None

    @property
    def grad_fn(self):
        return self._node

    def dim(self):
        return self._data.ndim

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[ops._axes(dim, self.ndim)[0]]

    def numel(self):
        return int(self._data.size)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self):
        body = np.array2string(self.numpy_view(), separator=", ", prefix="tensor(")
        extras = []
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self.dtype != np.float32 and self.dtype != np.int64 and self.dtype != np.bool_:
            extras.append(f"dtype={self.dtype}")
        if self._node is not None:
            extras.append(f"grad_fn=<{self._node.name()}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return f"tensor({body}{''.join(', ' + e for e in extras)})"

    # ---- conversion and devices -----------------------------------------------------------------
    def numpy_view(self):
        return self._data if self.device == "cpu" else self._data.get()

    def numpy(self):
        """The data as a numpy array (shares memory on the CPU). CUDA tensors: call .cpu() first."""
        if self.device != "cpu":
            raise TypeError("numpy(): this tensor is on 'cuda'; copy it with .cpu() first")
        if self.requires_grad:
            raise RuntimeError("numpy(): the tensor requires grad; use tensor.detach().numpy()")
        return self._data

    def __dlpack__(self, *args, **kwargs):
        """The DLPack capsule of the data (no copy): ``torch.from_dlpack(t)``, ``cupy.from_dlpack(t)``,
        ``numpy.from_dlpack(t)``. Like torch, a tensor that requires grad must be detached first."""
        if self.requires_grad:
            raise RuntimeError("__dlpack__: the tensor requires grad; export tensor.detach() instead")
        return self._data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    def item(self):
        if self._data.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted, shape is {self.shape}")
        return self.numpy_view().reshape(()).item()

    def tolist(self):
        return self.numpy_view().tolist()

    def to(self, target):
        """A copy on another device (``"cpu"``/``"cuda"``) or with another dtype; self when unchanged.
        Differentiable: gradients flow back to the original tensor."""
        if isinstance(target, str) and target in DTYPES or not isinstance(target, str):
            dtype = _as_dtype(target)
            return self if dtype == self.dtype else ToDtype.apply(self, dtype)
        device = backend.normalize_device(target)
        return self if device == self.device else ToDevice.apply(self, device)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def long(self):
        return self.to(np.int64)

    def detach(self):
        """The same data, cut from the graph (shares memory)."""
        return Tensor(self._data)

    def clone(self):
        return ops.Mul.apply(self, 1) if self.requires_grad else Tensor(self._data.copy())

    def contiguous(self):
        return self

    def requires_grad_(self, value=True):
        self.requires_grad = value
        return self

    # ---- autograd -------------------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``. A non-scalar tensor needs ``gradient``."""
        run_backward(self, gradient, retain_graph)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(self)`` in each backward once this leaf's ``.grad`` is complete; returns a handle
        whose ``remove()`` unregisters it (see :mod:`pyfastdl.autograd`)."""
        return register_post_accumulate_grad_hook(self, hook)

    def _accumulate_grad(self, g):
        if self.grad is None:
            self.grad = Tensor(g.copy())  # a copy: backward functions may hand one array to several inputs
        else:
            self.grad = Tensor(self.grad.data + g)

    # ---- in-place (no graph; they bump the version so a stale saved tensor is caught) ------------
    def _check_inplace(self, what):
        if self.requires_grad and is_grad_enabled():
            kind = "a leaf tensor that requires grad" if self.is_leaf else "a tensor that is part of a graph"
            raise RuntimeError(f"{what}: in-place operation on {kind}; do it under pyfastdl.no_grad() or use "
                               "the out-of-place form")

    def _inplace(self, what, fn):
        self._check_inplace(what)
        try:
            fn(self._data)
        except TypeError as e:  # numpy's casting refusal (an int tensor += 0.5; torch refuses it too), named
            raise TypeError(f"{what}: {e} (the tensor is {self.dtype})") from None
        self._version += 1
        return self

    def __setitem__(self, index, value):
        value = _operand_array(self, value, "__setitem__")

        def assign(d):
            d[ops._index_arrays(index, backend.get_array_module(d))] = value

        self._inplace("__setitem__", assign)

    def zero_(self):
        return self._inplace("zero_", lambda d: d.fill(0))

    def fill_(self, value):
        return self._inplace("fill_", lambda d: d.fill(value))

    def copy_(self, src):
        src = _operand_array(self, src, "copy_")
        return self._inplace("copy_", lambda d: d.__setitem__(Ellipsis, src))

    def add_(self, other, alpha=1):
        other = _operand_array(self, other, "add_")
        return self._inplace("add_", lambda d: d.__iadd__(other * alpha if alpha != 1 else other))

    def sub_(self, other):
        other = _operand_array(self, other, "sub_")
        return self._inplace("sub_", lambda d: d.__isub__(other))

    def mul_(self, other):
        other = _operand_array(self, other, "mul_")
        return self._inplace("mul_", lambda d: d.__imul__(other))

    def clamp_(self, min=None, max=None):  # noqa: A002 (torch's names)
        return self._inplace("clamp_", lambda d: backend.get_array_module(d).clip(d, min, max, out=d))

    # ---- arithmetic -----------------------------------------------------------------------------
    def __add__(self, other):
        return ops.Add.apply(*_operands(self, other))

    def __radd__(self, other):
        return ops.Add.apply(*_operands(self, other)[::-1])

    def __sub__(self, other):
        return ops.Sub.apply(*_operands(self, other))

    def __rsub__(self, other):
        return ops.Sub.apply(*_operands(self, other)[::-1])

    def __mul__(self, other):
        return ops.Mul.apply(*_operands(self, other))

    def __rmul__(self, other):
        return ops.Mul.apply(*_operands(self, other)[::-1])

    def __truediv__(self, other):
        return ops.Div.apply(*_operands(self, other))

    def __rtruediv__(self, other):
        return ops.Div.apply(*_operands(self, other)[::-1])

    def __neg__(self):
        return ops.Neg.apply(self)

    def __pow__(self, exponent):
        if isinstance(exponent, numbers.Number):
            return ops.PowScalar.apply(self, exponent)
        return ops.Pow.apply(*_operands(self, exponent))

    def __rpow__(self, base):
        return ops.Pow.apply(*_operands(self, base)[::-1])

    def __matmul__(self, other):
        return ops.MatMul.apply(*_operands(self, other))

    def __rmatmul__(self, other):
        return ops.MatMul.apply(*_operands(self, other)[::-1])

    def pow(self, exponent):
        return self**exponent

    def matmul(self, other):
        return self @ other

    # comparisons give bool tensors (no gradient)
    def _compare(self, other, fn):
        xp = backend.get_array_module(self._data)
        return Tensor(xp.asarray(fn(self._data, _operand_array(self, other, "comparison"))))  # (0-d: numpy scalars)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    def eq(self, other):
        return self._compare(other, lambda a, b: a == b)

    def ne(self, other):
        return self._compare(other, lambda a, b: a != b)

    def __invert__(self):
        return Tensor(~self._data)

    def __and__(self, other):
        return self._compare(other, lambda a, b: a & b)

    def __or__(self, other):
        return self._compare(other, lambda a, b: a | b)

    __hash__ = object.__hash__  # tensors are hashable by identity (== is not overloaded)

    # ---- elementwise ----------------------------------------------------------------------------
    def exp(self):
        return ops.Exp.apply(self)

    def log(self):
        return ops.Log.apply(self)

    def sqrt(self):
        return ops.Sqrt.apply(self)

    def abs(self):
        return ops.Abs.apply(self)

    def tanh(self):
        return ops.Tanh.apply(self)

    def sigmoid(self):
        return ops.Sigmoid.apply(self)

    def relu(self):
        return ops.Relu.apply(self)

    def clamp(self, min=None, max=None):  # noqa: A002
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        for name, bound in (("min", min), ("max", max)):
            if bound is not None and not isinstance(bound, (numbers.Real, Tensor)):
                raise TypeError(f"clamp: {name} must be a number or a Tensor, got {type(bound).__name__} {bound!r}")
        return ops.Clamp.apply(self, min, max)

    clip = clamp

    # ---- reductions -----------------------------------------------------------------------------
    def sum(self, dim=None, keepdim=False):
        return ops.Sum.apply(self, dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        if self.dtype.kind != "f":
            raise TypeError(f"mean: needs a floating-point tensor, got {self.dtype}")
        return ops.Mean.apply(self, dim, keepdim)

    def var(self, dim=None, keepdim=False, unbiased=True):
        centered = self - self.mean(dim, keepdim=True)
        n = self.numel() if dim is None else int(np.prod([self.shape[d] for d in ops._axes(dim, self.ndim)]))
        return (centered * centered).sum(dim, keepdim) / max(n - 1 if unbiased else n, 0)  # (0/0: NaN, as torch)

    def max(self, dim=None, keepdim=False):
        """The maximum; with ``dim``, a (values, indices) pair as torch returns."""
        if dim is None:
            return ops.Extreme.apply(self, True)
        return ops.MaxResult(*ops.ExtremeDim.apply(self, dim, keepdim, True))

    def min(self, dim=None, keepdim=False):
        if dim is None:
            return ops.Extreme.apply(self, False)
        return ops.MaxResult(*ops.ExtremeDim.apply(self, dim, keepdim, False))

    def argmax(self, dim=None, keepdim=False):
        return _argext(self, dim, keepdim, largest=True)

    def argmin(self, dim=None, keepdim=False):
        return _argext(self, dim, keepdim, largest=False)

    # ---- shape ----------------------------------------------------------------------------------
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        try:
            return ops.Reshape.apply(self, tuple(shape))
        except (ValueError, TypeError) as e:  # numpy's words ("can only specify one unknown dimension"), named
            raise type(e)(f"reshape: {e} (tensor of shape {self.shape}, new shape {tuple(shape)})") from None

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        try:
            start, end = ops._axes((start_dim, end_dim), max(self.ndim, 1))  # (a 0-d tensor takes dims 0 and -1)
        except (IndexError, TypeError) as e:
            raise type(e)(f"flatten: start_dim={start_dim!r}, end_dim={end_dim!r}: {e}") from None
        if self.ndim == 0:
            return self.reshape(1)
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} (dims {start} > {end} of "
                             f"shape {self.shape})")
        merged = int(np.prod(self.shape[start : end + 1]))
        return self.reshape(self.shape[:start] + (merged,) + self.shape[end + 1 :])

    def permute(self, *dims):
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        dims = ops._axes(tuple(dims), self.ndim)
        if sorted(dims) != list(range(self.ndim)):
            raise ValueError(f"permute: {dims} is not a permutation of the {self.ndim} dimensions")
        return ops.Permute.apply(self, dims)

    def transpose(self, dim0, dim1):
        axes = list(range(self.ndim))
        d0, d1 = ops._axes((dim0, dim1), self.ndim)
        axes[d0], axes[d1] = axes[d1], axes[d0]
        return ops.Permute.apply(self, tuple(axes))

    def t(self):
        if self.ndim > 2:
            raise ValueError(f"t(): expects a tensor with <= 2 dimensions, got shape {self.shape}")
        return self.transpose(0, 1) if self.ndim == 2 else self

    @property
    def T(self):  # noqa: N802
        return self.permute(tuple(reversed(range(self.ndim))))

    def unsqueeze(self, dim):
        (d,) = ops._axes(dim, self.ndim + 1, self.shape)
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def squeeze(self, dim=None):
        if dim is None:
            return self.reshape(tuple(s for s in self.shape if s != 1))
        (d,) = ops._axes(dim, self.ndim)
        return self.reshape(self.shape[:d] + self.shape[d + 1 :]) if self.shape[d] == 1 else self

    def expand(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape):
            raise TypeError(f"expand: sizes must be integers, got {tuple(shape)}")
        lead = len(shape) - self.ndim
        shape = tuple(self.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
        return ops.Expand.apply(self, shape)

    def __getitem__(self, index):
        try:
            return ops.GetItem.apply(self, index)
        except (IndexError, TypeError) as e:  # numpy's words, named
            raise type(e)(f"index: {e} (tensor of shape {self.shape})") from None

    def masked_fill(self, mask, value):
        mask = mask.data if isinstance(mask, Tensor) else mask
        if getattr(mask, "dtype", None) != np.bool_:  # (torch refuses other masks: a float mask is no mask)
            raise TypeError("masked_fill: mask must be a bool tensor, got "
                            f"{getattr(mask, 'dtype', type(mask).__name__)}")
        fill = Tensor(backend.get_array_module(self._data).asarray(value, dtype=self.dtype))
        return ops.Where.apply(Tensor(mask), fill, self)


def _argext(t, dim, keepdim, largest):
    d = t.data
    if dim is None:
        return Tensor(backend.get_array_module(d).asarray((d.argmax() if largest else d.argmin()), dtype=np.int64))
    return t.max(dim, keepdim).indices if largest else t.min(dim, keepdim).indices


_KIND_RANK = {"b": 0, "u": 1, "i": 1, "f": 2}


def _number_dtype(dtype, value):
    """The dtype a Python number takes beside a tensor of ``dtype``, as torch promotes: the tensor's,
    unless the number is of a higher kind (a float beside integers or bools: float32; an int beside
    bools: int64). (Converted to an integer dtype, 0.5 would be 0: x_int * 0.5 all zeros.)"""
    kind = "b" if isinstance(value, (bool, np.bool_)) else "i" if isinstance(value, numbers.Integral) else "f"
    if _KIND_RANK[kind] <= _KIND_RANK.get(dtype.kind, 2):
        return dtype
    return np.dtype(np.int64 if kind == "i" else np.float32)


def _operand_array(t, value, what):
    """An operand as an array on t's device: a Tensor's data, or a Python number in t's dtype (or of
    its own kind where that is higher, :func:`_number_dtype`)."""
    if isinstance(value, Tensor):
        if value.device != t.device:
            raise RuntimeError(f"{what}: tensors are on different devices ({t.device} and {value.device})")
        return value.data
    if isinstance(value, (numbers.Real, np.bool_)):
        try:
            return backend.get_array_module(t.data).asarray(value, dtype=_number_dtype(t.dtype, value))
        except OverflowError:
            raise ValueError(f"{what}: {value!r} does not fit the tensor's dtype {t.dtype}") from None
    if isinstance(value, numbers.Number):
        raise TypeError(f"{what}: complex numbers are not supported, got {value!r}")
    raise TypeError(f"{what}: expected a Tensor or a Python number, got {type(value).__name__} "
                    "(wrap arrays with pyfastdl.tensor())")


def _operand(t, value):
    """The other operand of a binary op as a Tensor (numbers take t's dtype and device)."""
    return value if isinstance(value, Tensor) else Tensor(_operand_array(t, value, "operator"))


def _operands(t, value):
    """(t, value) as the Tensors of a binary op: t cast too where a number outranks its dtype (an
    integer tensor times 0.5 is float32, as in torch; such tensors never require grad)."""
    other = _operand(t, value)
    if not isinstance(value, Tensor) and other.dtype != t.dtype:
        t = Tensor(t.data.astype(other.dtype))
    return t, other


register_tensor_class(Tensor)


class ToDevice(ops.Function):
    @staticmethod
    def forward(ctx, a, device):
        ctx.device = backend.device_of(a)
        return backend.to_device(a, device)

    @staticmethod
    def backward(ctx, g):
        return backend.to_device(g, ctx.device), None


class ToDtype(ops.Function):
    @staticmethod
    def forward(ctx, a, dtype):
        ctx.dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.dtype), None
