"""The elementary differentiable operations behind Tensor's methods: each op's forward and backward
side by side. Arrays in, arrays out (numpy or cupy alike: ``xp`` is the array module of the input).
Broadcasting ops reduce their gradients with :func:`pyfastdl.autograd.unbroadcast`."""

from __future__ import annotations

import itertools
import numbers
from collections import namedtuple

import numpy as np

from . import backend, kernels
from .autograd import Function, tensor_class, unbroadcast


def _float(a):
    """``a`` itself if floating-point, else as float32: torch's sigmoid and tanh of integers and bools."""
    return a if a.dtype.kind == "f" else a.astype(np.float32)


def _xp(a):
    return backend.get_array_module(a)


def _axes(dim, ndim, shape=None):
    """torch's ``dim`` (None, int or sequence) as a normalised tuple of axes (None: all); ``shape``, where
    given, is the tensor's, for the message (unsqueeze's ndim is one more than its input's)."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, numbers.Integral) else tuple(dim) if isinstance(dim, (tuple, list)) else None
    if dims is None or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims):
        raise TypeError(f"dim must be an int or a sequence of ints, got {dim!r}")
    out = []
    for d in dims:
        if not -ndim <= d < max(ndim, 1):
            raise IndexError(f"dimension {d} is out of range [{-ndim}, {max(ndim, 1) - 1}]"
                             + (f" for shape {shape}" if shape is not None else f" for a tensor with {ndim} dimensions"))
        out.append(d % max(ndim, 1))
    return tuple(out)


# ---- arithmetic -------------------------------------------------------------------------------


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return a + b

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shapes[0]), unbroadcast(g, ctx.shapes[1])


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return a - b

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shapes[0]), unbroadcast(-g, ctx.shapes[1])


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = unbroadcast(g * b, a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(g * a, b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = unbroadcast(g / b, a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(-g * a / (b * b), b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return (-g,)


class Pow(Function):
    """a ** b for tensors a and b (broadcasting); b may be a Python scalar."""

    @staticmethod
    def forward(ctx, a, b):
        out = a**b
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        xp = _xp(a)
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(g * b * a ** (b - 1), a.shape)
        if ctx.needs_input_grad[1]:
            log_a = xp.log(xp.where(a > 0, a, 1))  # d/db a^b = a^b log a (taken as 0 where a <= 0)
            gb = unbroadcast(g * out * log_a, b.shape)
        return ga, gb


class PowScalar(Function):
    @staticmethod
    def forward(ctx, a, exponent):
        ctx.save_for_backward(a)
        ctx.exponent = exponent
        return a**exponent

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        e = ctx.exponent
        return g * e * a ** (e - 1), None


class MatMul(Function):
    """numpy.matmul semantics: 1-D operands, batched and broadcast leading dimensions."""

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: both operands need at least one dimension")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied")
        ctx.save_for_backward(a, b)
        return backend.matmul(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        xp = _xp(a)
        a2 = a[None, :] if a.ndim == 1 else a  # promote 1-D operands to matrices as matmul does
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g[..., None] if b.ndim == 1 else g  # re-insert the dimensions matmul dropped
        g2 = g2[..., None, :] if a.ndim == 1 else g2
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(_matmul(g2, xp.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            gb = unbroadcast(_matmul(xp.swapaxes(a2, -1, -2), g2), b2.shape).reshape(b.shape)
        return ga, gb


def _matmul(x, y):
    """x @ y; a product over a dimension of size 1 (the backward of a batched vector-matrix product,
    as attention's context) is an outer product: a broadcast multiply, several times faster than
    numpy's matmul over a stack of (m, 1) x (1, n) matrices, and the same numbers (no sum)."""
    return x * y if x.shape[-1] == 1 else backend.matmul(x, y)


# ---- elementwise functions --------------------------------------------------------------------


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = _xp(a).exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return (g * out,)


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return _xp(a).log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g / a,)


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        out = _xp(a).sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return (g / (2 * out),)


class Abs(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return _xp(a).abs(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g * _xp(a).sign(a),)


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        out = _xp(a).tanh(_float(a))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return (g * (1 - out * out),)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        xp, a = _xp(a), _float(a)
        # exp of a non-positive number only: stable for large |a|
        e = xp.exp(-xp.abs(a))
        out = xp.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return (g * out * (1 - out),)


class Relu(Function):
    """max(x, 0): on the CPU the activation family's kernels (one pass each way, see
    pyfastdl.kernels.activation), elsewhere array code."""

    @staticmethod
    def forward(ctx, a):
        out = kernels.relu_forward(a) if backend.cpu_float(a) else _xp(a).maximum(a, 0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        if backend.cpu_float(out, g):
            return (kernels.relu_backward(out, g),)
        return (g * (out > 0),)


class Clamp(Function):
    @staticmethod
    def forward(ctx, a, lo, hi):
        ctx.save_for_backward(a)
        ctx.bounds = (lo, hi)
        return _xp(a).clip(a, lo, hi)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        keep = _xp(a).ones(a.shape, dtype=bool)
        if lo is not None:
            keep &= a >= lo
        if hi is not None:
            keep &= a <= hi
        return g * keep, None, None


class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        ctx.shapes = (a.shape, b.shape)
        return _xp(cond).where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        (cond,) = ctx.saved_tensors
        zero = g.dtype.type(0)
        ga = unbroadcast(_xp(g).where(cond, g, zero), ctx.shapes[0]) if ctx.needs_input_grad[1] else None
        gb = unbroadcast(_xp(g).where(cond, zero, g), ctx.shapes[1]) if ctx.needs_input_grad[2] else None
        return None, ga, gb


# ---- reductions -------------------------------------------------------------------------------


def _expand_reduced(g, shape, axes, keepdim):
    """Reshape a reduced gradient so it broadcasts against the input again."""
    if axes is None:
        return g.reshape((1,) * len(shape))
    if not keepdim:
        g = _xp(g).expand_dims(g, axes)
    return g


class Sum(Function):
    @staticmethod
    def forward(ctx, a, dim, keepdim):
        ctx.shape = a.shape
        ctx.axes = _axes(dim, a.ndim)
        ctx.keepdim = keepdim
        return _xp(a).asarray(a.sum(axis=ctx.axes, keepdims=keepdim))

    @staticmethod
    def backward(ctx, g):
        g = _expand_reduced(g, ctx.shape, ctx.axes, ctx.keepdim)
        return _xp(g).broadcast_to(g, ctx.shape).copy(), None, None


class Mean(Function):
    @staticmethod
    def forward(ctx, a, dim, keepdim):
        ctx.shape = a.shape
        ctx.axes = _axes(dim, a.ndim)
        ctx.keepdim = keepdim
        return _xp(a).asarray(a.mean(axis=ctx.axes, keepdims=keepdim))

    @staticmethod
    def backward(ctx, g):
        n = 1
        for i in range(len(ctx.shape)) if ctx.axes is None else ctx.axes:
            n *= ctx.shape[i]
        g = _expand_reduced(g, ctx.shape, ctx.axes, ctx.keepdim) / n
        return _xp(g).broadcast_to(g, ctx.shape).astype(g.dtype), None, None


MaxResult = namedtuple("MaxResult", ["values", "indices"])


class Extreme(Function):
    """max or min over everything (ties share the gradient equally, as torch.amax does)."""

    @staticmethod
    def forward(ctx, a, largest):
        if a.size == 0:
            raise RuntimeError("max()/min() of an empty tensor")
        out = _xp(a).asarray(a.max() if largest else a.min())
        ctx.save_for_backward(a, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        hit = a == out
        return g * hit / hit.sum(), None


class ExtremeDim(Function):
    """max or min along ``dim``: (values, indices) as torch returns; the gradient goes to the index."""

    @staticmethod
    def forward(ctx, a, dim, keepdim, largest):
        xp = _xp(a)
        (axis,) = _axes(dim, a.ndim)
        idx = xp.expand_dims((a.argmax if largest else a.argmin)(axis=axis), axis)
        values = xp.take_along_axis(a, idx, axis)
        if not keepdim:
            values, idx = values.squeeze(axis), idx.squeeze(axis)
        idx = idx.astype(xp.int64)
        ctx.save_for_backward(idx)
        ctx.meta = (a.shape, axis, keepdim)
        ctx.mark_non_differentiable(idx)
        return values, idx

    @staticmethod
    def backward(ctx, g, _g_idx):
        (idx,) = ctx.saved_tensors
        shape, axis, keepdim = ctx.meta
        xp = _xp(g)
        if not keepdim:
            g, idx = xp.expand_dims(g, axis), xp.expand_dims(idx, axis)
        grad = xp.zeros(shape, dtype=g.dtype)
        xp.put_along_axis(grad, idx, g, axis)
        return grad, None, None, None


# ---- shape and indexing -----------------------------------------------------------------------


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None


class Permute(Function):
    @staticmethod
    def forward(ctx, a, axes):
        ctx.axes = axes
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        inverse = [0] * len(ctx.axes)
        for i, ax in enumerate(ctx.axes):
            inverse[ax] = i
        return g.transpose(inverse), None


class Expand(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return _xp(a).broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shape), None


def _index_arrays(index, xp):
    """Tensors inside an index become their arrays (so t[mask] and t[idx_tensor] work)."""
    if isinstance(index, tensor_class()):
        return index.data
    if isinstance(index, tuple):
        return tuple(_index_arrays(i, xp) for i in index)
    if isinstance(index, list):
        return xp.asarray(index)
    return index


class GetItem(Function):
    """Basic and advanced indexing; the backward scatters (adds) into a zero array, so repeated
    indices accumulate as they should."""

    @staticmethod
    def forward(ctx, a, index):
        index = _index_arrays(index, _xp(a))
        ctx.shape = a.shape
        ctx.index = index
        return _xp(a).array(a[index], copy=True)  # a copy: the result never aliases its source

    @staticmethod
    def backward(ctx, g):
        xp = _xp(g)
        grad = xp.zeros(ctx.shape, dtype=g.dtype)
        backend.scatter_add(grad, ctx.index, g)
        return grad, None


class Cat(Function):
    @staticmethod
    def forward(ctx, dim, *arrays):
        (axis,) = _axes(dim, arrays[0].ndim)
        ctx.axis = axis
        ctx.sizes = [a.shape[axis] for a in arrays]
        return _xp(arrays[0]).concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        cuts = list(itertools.accumulate(ctx.sizes[:-1]))
        return (None, *_xp(g).split(g, cuts, axis=ctx.axis))


class Stack(Function):
    @staticmethod
    def forward(ctx, dim, *arrays):
        (axis,) = _axes(dim, arrays[0].ndim + 1)
        ctx.axis = axis
        return _xp(arrays[0]).stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        xp = _xp(g)
        return (None, *(xp.take(g, i, axis=ctx.axis) for i in range(g.shape[ctx.axis])))
