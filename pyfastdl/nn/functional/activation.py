"""Activation functions with autograd: each forward beside its backward, on numpy or cupy arrays.

``inplace=True`` is accepted for torch compatibility but results are always new tensors
(autograd here saves arrays, so overwriting an input could corrupt a backward)."""

from __future__ import annotations

import math
import numbers

from ... import backend, kernels
from ...autograd import Function
from ...tensor import Tensor

__all__ = ["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "glu", "softmax", "log_softmax"]


def _xp(a):
    return backend.get_array_module(a)


def _check_tensor(name, input):  # noqa: A002 (torch's argument name)
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")


def _check_float(name, input):  # noqa: A002
    """What torch refuses for integer and bool inputs (leaky_relu, gelu, glu)."""
    _check_tensor(name, input)
    if input.dtype.kind != "f":
        raise TypeError(f"{name}: input must be a floating-point tensor, got {input.dtype}")


def relu(input, inplace=False):  # noqa: A002
    """max(x, 0), elementwise."""
    _check_tensor("relu", input)
    return input.relu()


def sigmoid(input):  # noqa: A002
    """1 / (1 + exp(-x)), elementwise (stable for large |x|)."""
    _check_tensor("sigmoid", input)
    return input.sigmoid()


def tanh(input):  # noqa: A002
    _check_tensor("tanh", input)
    return input.tanh()


class LeakyRelu(Function):
    """On the CPU the activation family's kernels; the backward reads the output (positive where the
    input is) for a slope >= 0, the input otherwise. Elsewhere array code with a saved mask."""

    @staticmethod
    def forward(ctx, x, negative_slope):
        ctx.negative_slope = negative_slope
        if backend.cpu_float(x):
            y = kernels.leaky_relu_forward(x, negative_slope)
            ctx.save_for_backward(y if negative_slope >= 0 else x)
            return y
        positive = x > 0
        ctx.save_for_backward(positive)
        return _xp(x).where(positive, x, x * x.dtype.type(negative_slope))

    @staticmethod
    def backward(ctx, g):
        (ref,) = ctx.saved_tensors
        if ref.dtype != bool and backend.cpu_float(ref, g):
            return kernels.leaky_relu_backward(ref, g, ctx.negative_slope), None
        positive = ref if ref.dtype == bool else ref > 0
        return _xp(positive).where(positive, g, g * ctx.negative_slope), None


def leaky_relu(input, negative_slope=0.01, inplace=False):  # noqa: A002
    """x if x > 0 else negative_slope * x, elementwise."""
    _check_float("leaky_relu", input)
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
        raise TypeError(f"leaky_relu: negative_slope must be a number, got {negative_slope!r}")
    return LeakyRelu.apply(input, negative_slope)


def _erf(x):
    """The error function elementwise (scipy's on the CPU, cupyx's on the GPU)."""
    if backend.device_of(x) == "cpu":
        from scipy.special import erf  # noqa: PLC0415 (scipy comes with scikit-learn)
    else:
        from cupyx.scipy.special import erf  # noqa: PLC0415
    return erf(x)


class Gelu(Function):
    """x * Phi(x) with Phi the standard normal CDF; or the tanh approximation
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

    @staticmethod
    def forward(ctx, x, approximate):
        xp = _xp(x)
        ctx.save_for_backward(x)
        ctx.approximate = approximate
        if approximate == "tanh":
            inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
            return 0.5 * x * (1 + xp.tanh(inner))
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        xp = _xp(x)
        if ctx.approximate == "tanh":
            k = math.sqrt(2 / math.pi)
            t = xp.tanh(k * (x + 0.044715 * x**3))
            d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
        else:
            cdf = 0.5 * (1 + _erf(x / math.sqrt(2)))
            pdf = xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
            d = cdf + x * pdf
        return g * d, None


def gelu(input, approximate="none"):  # noqa: A002
    """Gaussian error linear unit (Hendrycks & Gimpel, 2016); ``approximate`` is "none" or "tanh"."""
    _check_float("gelu", input)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(input, approximate)


def _dim(name, ndim, dim):
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"{name}: dim must be an int, got {dim!r}")
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{name}: dim {dim} is out of range for a tensor with {ndim} dimensions")
    return dim % max(ndim, 1)


def _glu_halves(x, dim):
    """GLU's a and sigmoid(b), as array code (stable for large |b|)."""
    xp = _xp(x)
    a, b = xp.split(x, 2, axis=dim)
    e = xp.exp(-xp.abs(b))
    return a, xp.where(b >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class Glu(Function):
    """Split x in halves a, b along dim: a * sigmoid(b) (Dauphin et al., 2017). On the CPU the
    activation family's kernels, which keep only x for the backward (it recomputes the sigmoid);
    elsewhere array code that keeps a and sigmoid(b)."""

    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        if backend.cpu_float(x):
            ctx.save_for_backward(x)
            return kernels.glu_forward(x, dim)
        a, s = _glu_halves(x, dim)
        ctx.save_for_backward(a, s)
        return a * s

    @staticmethod
    def backward(ctx, g):
        saved = ctx.saved_tensors
        if len(saved) == 1 and backend.cpu_float(saved[0], g):
            return kernels.glu_backward(saved[0], g, ctx.dim), None
        a, s = saved if len(saved) == 2 else _glu_halves(saved[0], ctx.dim)
        return _xp(a).concatenate([g * s, g * a * s * (1 - s)], axis=ctx.dim), None


def glu(input, dim=-1):  # noqa: A002
    """Gated linear unit: the first half of ``dim`` times the sigmoid of the second half."""
    _check_float("glu", input)
    d = _dim("glu", input.ndim, dim)
    if input.shape[d] % 2:
        raise ValueError(f"glu: halving only works on an even-sized dimension; dim {dim} has size {input.shape[d]}")
    return Glu.apply(input, d)


def _softmax_dim(name, ndim, dim):
    """torch's legacy default when ``dim`` is None: 0 for 0-, 1- and 3-D inputs, else 1."""
    if dim is None:
        dim = 0 if ndim in (0, 1, 3) else 1
    return _dim(name, ndim, dim)


def _row_kernels(x, dim):
    """True when the C++ row kernels serve a softmax of x over ``dim``: numpy float32/64, last dim."""
    return (dim == x.ndim - 1 and backend.device_of(x) == "cpu" and x.dtype.kind == "f"
            and x.dtype.itemsize in (4, 8) and x.size > 0)


class Softmax(Function):
    """On the CPU, softmax over the last dimension runs as the C++ kernels of
    :mod:`pyfastdl.kernels.softmax`; otherwise as the array code below."""

    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        if _row_kernels(x, dim):
            y = kernels.softmax_forward(x)
            ctx.save_for_backward(y)
            return y
        xp = _xp(x)
        if x.size == 0:  # an empty softmax is empty (the max below has no identity)
            ctx.save_for_backward(x)
            return x.copy()
        y = x - x.max(axis=dim, keepdims=True)  # max subtracted: exp never overflows
        xp.exp(y, out=y)
        y /= y.sum(axis=dim, keepdims=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if _row_kernels(y, ctx.dim):
            return kernels.softmax_backward(y, g), None
        gx = g * y
        _xp(y).subtract(g, gx.sum(axis=ctx.dim, keepdims=True), out=gx)  # in place: one temporary in all
        gx *= y
        return gx, None


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        y = kernels.log_softmax_forward(x) if _row_kernels(x, dim) else _log_softmax(x, dim)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if _row_kernels(y, ctx.dim):
            return kernels.log_softmax_backward(y, g), None
        return g - _xp(y).exp(y) * g.sum(axis=ctx.dim, keepdims=True), None


def _log_softmax(x, axis):
    """log softmax of an array: x - max - log(sum(exp(x - max))), finite for any finite x."""
    xp = _xp(x)
    if x.size == 0:  # empty in, empty out (the max below has no identity)
        return x.copy()
    out = x - x.max(axis=axis, keepdims=True)
    out -= xp.log(xp.exp(out).sum(axis=axis, keepdims=True))  # in place: one temporary fewer
    return out


def _cast(name, input, dtype):  # noqa: A002
    x = input if dtype is None else input.to(dtype)
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: input must be a floating-point tensor, got {x.dtype} (pass dtype= to convert)")
    return x


def softmax(input, dim=None, dtype=None):  # noqa: A002
    """exp(x) / sum(exp(x)) along ``dim`` (computed with the maximum subtracted)."""
    _check_tensor("softmax", input)
    return Softmax.apply(_cast("softmax", input, dtype), _softmax_dim("softmax", input.ndim, dim))


def log_softmax(input, dim=None, dtype=None):  # noqa: A002
    """log(softmax(x)) along ``dim``, computed as x - logsumexp(x) (stable for large logits)."""
    _check_tensor("log_softmax", input)
    return LogSoftmax.apply(_cast("log_softmax", input, dtype), _softmax_dim("log_softmax", input.ndim, dim))
