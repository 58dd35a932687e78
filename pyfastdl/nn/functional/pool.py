"""Pooling with autograd: max_pool2d, avg_pool2d, adaptive_avg_pool2d (and the 1-D max/avg pools
as 2-D pools over a height of one), with torch.nn.functional's names and arguments.

Inputs are (N, C, H, W) or (C, H, W) Tensors. Each op is a Function whose forward and backward call
the raw kernels in :mod:`pyfastdl.kernels.pool`. Max pooling asks its kernel for the argmax indices
only when a backward will need them (or the caller asked for them).
"""

from __future__ import annotations

from ... import kernels
from ...autograd import Function, is_grad_enabled
from ...tensor import Tensor

__all__ = ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "max_pool1d", "avg_pool1d"]


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, keep_indices):
        window = (kernel_size, stride, padding, dilation, ceil_mode)
        if not keep_indices:
            return kernels.max_pool2d_forward(x, *window, return_indices=False)
        y, idx = kernels.max_pool2d_forward(x, *window, return_indices=True)
        ctx.save_for_backward(idx)
        ctx.input_shape, ctx.window = x.shape, window
        ctx.mark_non_differentiable(idx)
        return (y, idx) if return_indices else y

    @staticmethod
    def backward(ctx, grad_y, grad_idx=None):
        (idx,) = ctx.saved_tensors
        gx = kernels.max_pool2d_backward(grad_y, idx, ctx.input_shape, *ctx.window)
        return gx, None, None, None, None, None, None, None


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        ctx.input_shape = x.shape
        ctx.window = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        return kernels.avg_pool2d_forward(x, *ctx.window)

    @staticmethod
    def backward(ctx, grad_y):
        gx = kernels.avg_pool2d_backward(grad_y, ctx.input_shape, *ctx.window)
        return gx, None, None, None, None, None, None


class AdaptiveAvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, output_size):
        ctx.input_shape = x.shape
        return kernels.adaptive_avg_pool2d_forward(x, output_size)

    @staticmethod
    def backward(ctx, grad_y):
        return kernels.adaptive_avg_pool2d_backward(grad_y, ctx.input_shape), None


def _tensor(op, x):
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a pyfastdl Tensor, got {type(x).__name__}")
    return x


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2-D max pooling. input (N, C, H, W) or (C, H, W) -> (N, C, OH, OW), with
    OH = floor_or_ceil((H + 2*padding - dilation*(kernel-1) - 1) / stride) + 1 (stride defaults to
    kernel_size; padding at most kernel_size/2). With ``return_indices`` also the int64 argmax,
    flat ``ih * W + iw`` within each plane."""
    x = _tensor("max_pool2d", input)
    keep = bool(return_indices) or (is_grad_enabled() and x.requires_grad)
    return MaxPool2d.apply(x, kernel_size, stride, padding, dilation, ceil_mode, bool(return_indices), keep)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """2-D average pooling. input (N, C, H, W) or (C, H, W) -> (N, C, OH, OW); each window's sum is
    divided by its size clipped to the padded input (count_include_pad) or to the input, or by
    ``divisor_override``."""
    x = _tensor("avg_pool2d", input)
    return AvgPool2d.apply(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def adaptive_avg_pool2d(input, output_size):
    """Adaptive 2-D average pooling to ``output_size`` (int, or pair whose None entries keep the input's
    size). input (N, C, H, W) or (C, H, W) -> (N, C, OH, OW). ``output_size=1`` is global average pooling."""
    return AdaptiveAvgPool2d.apply(_tensor("adaptive_avg_pool2d", input), output_size)


def _single(op, name, value):
    """A 1-D pool's int (or 1-tuple) argument."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{op}: {name} must be an int or a 1-tuple, got {value!r}")
        value = value[0]
    return value


def _as_2d(op, x):
    x = _tensor(op, x)
    if x.ndim not in (2, 3):
        raise ValueError(f"{op}: input must be 2-D (C, L) or 3-D (N, C, L), got shape {tuple(x.shape)}")
    return x.reshape(*x.shape[:-1], 1, x.shape[-1])


def _from_2d(y):
    return y.reshape(*y.shape[:-2], y.shape[-1])


def _pool_1d(op, pool2d, *args):
    """pool2d(*args) for the 1-D pool ``op``: its errors name ``op`` (the 2-D message shows height 1)."""
    try:
        return pool2d(*args)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{op} (a 2-D pool over a height of 1): {exc}") from None


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """1-D max pooling of (N, C, L) or (C, L): a 2-D max pooling with a 1 x kernel_size window."""
    op = "max_pool1d"
    s = None if stride is None else (1, _single(op, "stride", stride))
    out = _pool_1d(op, max_pool2d, _as_2d(op, input), (1, _single(op, "kernel_size", kernel_size)), s,
                   (0, _single(op, "padding", padding)), (1, _single(op, "dilation", dilation)), ceil_mode,
                   return_indices)
    if return_indices:
        return _from_2d(out[0]), _from_2d(out[1])
    return _from_2d(out)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """1-D average pooling of (N, C, L) or (C, L): a 2-D average pooling with a 1 x kernel_size window."""
    op = "avg_pool1d"
    s = None if stride is None else (1, _single(op, "stride", stride))
    return _from_2d(_pool_1d(op, avg_pool2d, _as_2d(op, input), (1, _single(op, "kernel_size", kernel_size)), s,
                             (0, _single(op, "padding", padding)), ceil_mode, count_include_pad))
