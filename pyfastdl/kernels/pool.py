"""Raw pooling kernels on numpy (CPU) or cupy (CUDA) arrays: max, average and adaptive average
pooling, forward and backward, no autograd.

Inputs are (N, C, H, W) or (C, H, W); the shape arithmetic (torch's rules) lives in C++ in
``_C.Pool2dArgs``. Every function takes ``variant=``: "fast" (default), or "reference" for the simple
kernels kept beside the fast ones for study (one output at a time, in plain loops on the CPU; one
thread per output on the GPU).
``out=`` lets a caller supply the output array (GPU tests poison it with NaN first). Non-contiguous
inputs are copied to contiguous arrays before the kernel runs (the kernels need C order).
"""

from __future__ import annotations


from .._core import _C
from . import _dispatch

__all__ = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "adaptive_avg_pool2d_backward",
    "max_pool2d_args",
    "avg_pool2d_args",
    "adaptive_avg_pool2d_args",
]

def _stride(op, stride, kernel):
    return kernel if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else _dispatch.pair_arg(
        op, "stride", stride)


# Pool2dArgs are immutable, and a training loop pools the same shapes every step: building them is
# most of a small call's cost, so they are cached on their normalised arguments.
_max_args = _dispatch.cached(_C.Pool2dArgs.max_pool)
_avg_args = _dispatch.cached(_C.Pool2dArgs.avg_pool)
_adaptive_args = _dispatch.cached(_C.Pool2dArgs.adaptive_avg_pool)


def max_pool2d_args(input_shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Validated ``_C.Pool2dArgs`` of a max pooling (stride defaults to kernel_size)."""
    op = "max_pool2d"
    k = _dispatch.pair_arg(op, "kernel_size", kernel_size)
    return _max_args(_dispatch.shape_arg(op, "input_shape", input_shape), k, _stride(op, stride, k),
                     _dispatch.pair_arg(op, "padding", padding), _dispatch.pair_arg(op, "dilation", dilation),
                     bool(ceil_mode))


def avg_pool2d_args(input_shape, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                    divisor_override=None):
    """Validated ``_C.Pool2dArgs`` of an average pooling (stride defaults to kernel_size)."""
    op = "avg_pool2d"
    k = _dispatch.pair_arg(op, "kernel_size", kernel_size)
    if divisor_override is None:
        divisor = 0
    else:
        divisor = _dispatch.int_arg(op, "divisor_override", divisor_override)
        if divisor <= 0:
            raise ValueError(f"{op}: divisor_override must be > 0 (or None), got {divisor}")
    return _avg_args(_dispatch.shape_arg(op, "input_shape", input_shape), k, _stride(op, stride, k),
                     _dispatch.pair_arg(op, "padding", padding), bool(ceil_mode), bool(count_include_pad), divisor)


def adaptive_avg_pool2d_args(input_shape, output_size):
    """Validated ``_C.Pool2dArgs`` of an adaptive average pooling; None in output_size keeps that input size."""
    op = "adaptive_avg_pool2d"
    input_shape = _dispatch.shape_arg(op, "input_shape", input_shape)
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
        size = tuple(input_shape[len(input_shape) - 2 + i] if s is None else _dispatch.int_arg(op, "output_size", s)
                     for i, s in enumerate(output_size))
    else:
        size = _dispatch.pair_arg(op, "output_size", output_size)
    return _adaptive_args(input_shape, size)


def max_pool2d_forward(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                       return_indices=True, *, variant="fast", out=None, indices_out=None):
    """Max pooling: (N, C, H, W) or (C, H, W) -> output (N, C, OH, OW), and with ``return_indices``
    the argmax as int64 (N, C, OH, OW), flat ``ih * W + iw`` within each plane (what the backward needs).
    Without ``return_indices`` the kernel writes no indices at all."""
    x = _dispatch.kernel_input(input, "max_pool2d", "input")
    a = max_pool2d_args(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    if return_indices:
        y, idx = _dispatch.outputs(out, x, a.out_shape) + _dispatch.outputs(indices_out, x, a.out_shape,
                                                                             dtype="int64")
    else:
        (y,), idx = _dispatch.outputs(out, x, a.out_shape), None
    _dispatch.launch("max_pool2d_forward", variant, a, x, y, idx)
    return (y, idx) if return_indices else y


def max_pool2d_backward(grad_output, indices, input_shape, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, *, variant="fast", out=None):
    """Gradient of max pooling: grad_output (N, C, OH, OW) is routed to the argmax ``indices`` of the
    forward; returns grad_input of ``input_shape``."""
    a = max_pool2d_args(input_shape, kernel_size, stride, padding, dilation, ceil_mode)
    gy = _dispatch.kernel_input(grad_output, "max_pool2d_backward", "grad_output")
    (gx,) = _dispatch.outputs(out, gy, a.in_shape)
    _dispatch.launch("max_pool2d_backward", variant, a, gy, _dispatch.kernel_input(indices, "max_pool2d_backward",
                                                                                   "indices"), gx)
    return gx


def _unary(name, a, src, dst_shape, variant, out):
    (dst,) = _dispatch.outputs(out, src, dst_shape)
    _dispatch.launch(name, variant, a, src, dst)
    return dst


def avg_pool2d_forward(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                       divisor_override=None, *, variant="fast", out=None):
    """Average pooling: (N, C, H, W) or (C, H, W) -> (N, C, OH, OW). The divisor is the window clipped
    to the padded input (count_include_pad) or to the input, or ``divisor_override``."""
    x = _dispatch.kernel_input(input, "avg_pool2d", "input")
    a = avg_pool2d_args(x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    return _unary("avg_pool2d_forward", a, x, a.out_shape, variant, out)


def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, variant="fast", out=None):
    """Gradient of average pooling: grad_output (N, C, OH, OW) -> grad_input of ``input_shape``."""
    a = avg_pool2d_args(input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    gy = _dispatch.kernel_input(grad_output, "avg_pool2d_backward", "grad_output")
    return _unary("avg_pool2d_backward", a, gy, a.in_shape, variant, out)


def adaptive_avg_pool2d_forward(input, output_size, *, variant="fast", out=None):
    """Adaptive average pooling: (N, C, H, W) or (C, H, W) -> (N, C, OH, OW) for ``output_size``
    (OH, OW); output row i averages input rows floor(i*H/OH) .. ceil((i+1)*H/OH) - 1, columns alike."""
    x = _dispatch.kernel_input(input, "adaptive_avg_pool2d", "input")
    a = adaptive_avg_pool2d_args(x.shape, output_size)
    (y,) = _dispatch.outputs(out, x, a.out_shape, op="adaptive_avg_pool2d",
                             what=f"the output for output_size {tuple(a.out_shape[-2:])}")
    _dispatch.launch("adaptive_avg_pool2d_forward", variant, a, x, y)
    return y


def adaptive_avg_pool2d_backward(grad_output, input_shape, *, variant="fast", out=None):
    """Gradient of adaptive average pooling: grad_output (N, C, OH, OW) -> grad_input of ``input_shape``."""
    gy = _dispatch.kernel_input(grad_output, "adaptive_avg_pool2d_backward", "grad_output")
    a = adaptive_avg_pool2d_args(input_shape, tuple(gy.shape[-2:]))
    return _unary("adaptive_avg_pool2d_backward", a, gy, a.in_shape, variant, out)
