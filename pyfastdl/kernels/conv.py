"""Raw convolution kernels on numpy (CPU) or cupy (CUDA) arrays: NCHW, no autograd.

Shapes (torch's names):  x (N, C, H, W),  weight (K, C/groups, R, S),  out (N, K, P, Q),
    P = (H + 2*padding - dilation*(R - 1) - 1) // stride + 1    (Q likewise).
stride, padding and dilation are ints or (height, width) pairs. Inputs must be C-contiguous and of
one float dtype (float32 or float64 on the CPU); the compiled layer checks shapes, dtypes and layout
and raises ValueError/TypeError naming the argument.

Variants (``variant=``, :data:`CONV_VARIANTS`): ``"im2col"`` is im2col + GEMM (a 1x1 stride-1
convolution is a plain GEMM); ``"winograd"`` is Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions
(groups 1, padding <= 2; a ValueError otherwise), with about 10x im2col's rounding error (float32:
1e-6 to 1e-5 relative); ``"direct"`` is a direct convolution on register tiles with packed weights
(dilation 1, groups 1; its input gradient also stride 1 and padding < kernel; a ValueError otherwise);
``"fast"``, the default, picks one of those three per shape and pass (and, where an operand holds a
NaN or Inf that the pick would multiply by the zero padding or spread over a Winograd tile, im2col or
the reference loops: non-finite values reach the outputs the definition says, as in torch's float32
convolutions); ``"reference"`` is the direct-loop kernel kept for study. On the GPU there are "fast"
and "reference" only (its "fast" implicit GEMM still multiplies the padding's zeros). Each function
also accepts ``out=`` (a preallocated output array, e.g. NaN-poisoned in tests) and returns the output.

conv_transpose2d is conv2d's input gradient, so its three passes reuse the same three kernels with
the roles of input and output swapped (``conv_transpose2d_args`` builds the matching sizes).
"""

from __future__ import annotations

from .._core import _C
from . import _dispatch

__all__ = [
    "CONV_VARIANTS",
    "conv2d_args",
    "conv_transpose2d_args",
    "conv2d_forward",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "conv2d_backward_bias",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward_input",
    "conv_transpose2d_backward_weight",
]

#: The convolution family's variants: the shared two plus the CPU's two algorithms "fast" picks from.
CONV_VARIANTS = ("fast", "im2col", "winograd", "direct", "reference")

_conv2d_args = _dispatch.cached(_C.Conv2dArgs)
_conv_transpose2d_args = _dispatch.cached(_C.conv_transpose2d_args)


def _key(value):
    """A stride/padding/dilation as a cache key: lists become tuples (the Args check the values)."""
    return tuple(value) if isinstance(value, list) else value


def conv2d_args(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    """Validated sizes of conv2d(input, weight): a ``_C.Conv2dArgs`` with ``x_shape``, ``w_shape``,
    ``out_shape``, ``macs`` (multiply-adds of one pass) and the individual sizes (cached)."""
    return _conv2d_args(_dispatch.shape_arg("conv2d", "input_shape", input_shape),
                        _dispatch.shape_arg("conv2d", "weight_shape", weight_shape), _key(stride), _key(padding),
                        _key(dilation), groups)


def conv_transpose2d_args(input_shape, weight_shape, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Sizes of conv_transpose2d(input (N, Cin, Hin, Win), weight (Cin, Cout/groups, R, S)), expressed as
    the conv2d whose input gradient it is: ``out_shape`` is the input's shape, ``x_shape`` the output's
    (N, Cout, (Hin-1)*stride - 2*padding + dilation*(R-1) + output_padding + 1, ...)."""
    return _conv_transpose2d_args(
        _dispatch.shape_arg("conv_transpose2d", "input_shape", input_shape),
        _dispatch.shape_arg("conv_transpose2d", "weight_shape", weight_shape), _key(stride), _key(padding),
        _key(output_padding), groups,
        _key(dilation)
    )


def _inputs(op, **arrays):
    """The input arrays of ``op`` as the kernels take them (contiguous, writeable: a copy if need be),
    in the order given; a TypeError naming the argument for anything but an array (None only for bias)."""
    return tuple(_dispatch.kernel_input(a, op, name, optional=name == "bias") for name, a in arrays.items())


# ---- the three kernels, given their Args --------------------------------------------------------------


def _forward(args, x, weight, bias, out, variant):
    (y,) = _dispatch.outputs(out, x, args.out_shape, op="conv2d")  # padding can make it outgrow the input
    _dispatch.launch("conv2d_forward", variant, args, x, weight, bias, y, variants=CONV_VARIANTS)
    return y


def _backward_input(args, grad_out, weight, out, variant):
    (dx,) = _dispatch.outputs(out, grad_out, args.x_shape)
    _dispatch.launch("conv2d_backward_input", variant, args, grad_out, weight, dx, variants=CONV_VARIANTS)
    return dx


def _backward_weight(args, x, grad_out, out, variant):
    (dw,) = _dispatch.outputs(out, x, args.w_shape)
    _dispatch.launch("conv2d_backward_weight", variant, args, x, grad_out, dw, variants=CONV_VARIANTS)
    return dw


# ---- conv2d -------------------------------------------------------------------------------------------


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, variant="fast", out=None):
    """out (N, K, P, Q) = conv2d(x (N, C, H, W), weight (K, C/groups, R, S)) + bias (K,) or None."""
    x, weight, bias = _inputs("conv2d_forward", x=x, weight=weight, bias=bias)
    args = conv2d_args(x.shape, weight.shape, stride, padding, dilation, groups)
    return _forward(args, x, weight, bias, out, variant)


def conv2d_backward_input(
    grad_out, weight, input_shape, stride=1, padding=0, dilation=1, groups=1, *, variant="fast", out=None
):
    """Gradient (N, C, H, W) with respect to conv2d's input, from grad_out (N, K, P, Q) and weight."""
    grad_out, weight = _inputs("conv2d_backward_input", grad_out=grad_out, weight=weight)
    args = conv2d_args(input_shape, weight.shape, stride, padding, dilation, groups)
    return _backward_input(args, grad_out, weight, out, variant)


def conv2d_backward_weight(
    x, grad_out, weight_shape, stride=1, padding=0, dilation=1, groups=1, *, variant="fast", out=None
):
    """Gradient (K, C/groups, R, S) with respect to conv2d's weight, from x (N, C, H, W) and grad_out."""
    x, grad_out = _inputs("conv2d_backward_weight", x=x, grad_out=grad_out)
    args = conv2d_args(x.shape, weight_shape, stride, padding, dilation, groups)
    return _backward_weight(args, x, grad_out, out, variant)


def conv2d_backward_bias(grad_out, *, out=None):
    """Gradient (K,) with respect to the bias: grad_out (N, K, P, Q) summed over N, P and Q."""
    if not hasattr(grad_out, "ndim"):
        raise TypeError(f"conv2d_backward_bias: grad_out must be a numpy or cupy array, got {type(grad_out).__name__}")
    if grad_out.ndim != 4:
        raise ValueError(f"conv2d_backward_bias: grad_out must have 4 dimensions (N, K, P, Q), got shape "
                         f"{tuple(grad_out.shape)}")
    # Summed over N first (whole (K, P*Q) slabs, vectorised), then along each contiguous row: numpy's
    # one-call sum over axes (0, 2, 3) walks short rows one at a time (ConvS2S's 12-step maps: 12x slower).
    n, k, p, q = grad_out.shape
    return grad_out.reshape(n, k, p * q).sum(axis=0).sum(axis=-1, out=out)


# ---- conv_transpose2d: the same kernels with input and output swapped ------------------------------


def conv_transpose2d_forward(
    x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *, variant="fast", out=None
):
    """out (N, Cout, Hout, Wout) = conv_transpose2d(x (N, Cin, Hin, Win), weight (Cin, Cout/groups, R, S))
    + bias (Cout,): conv2d's input gradient with grad_out = x."""
    x, weight, bias = _inputs("conv_transpose2d_forward", x=x, weight=weight, bias=bias)
    args = conv_transpose2d_args(x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    y = _backward_input(args, x, weight, out, variant)
    if bias is not None:
        if tuple(bias.shape) != (args.C,) or bias.dtype != y.dtype:
            raise ValueError(f"conv_transpose2d: bias must have shape ({args.C},) and dtype {y.dtype}, got "
                             f"{tuple(bias.shape)} {bias.dtype}")
        y += bias.reshape(1, -1, 1, 1)
    return y


def conv_transpose2d_backward_input(
    grad_out, weight, input_shape, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *, variant="fast",
    out=None,
):
    """Gradient (N, Cin, Hin, Win) with respect to conv_transpose2d's input: conv2d(grad_out, weight)."""
    grad_out, weight = _inputs("conv_transpose2d_backward_input", grad_out=grad_out, weight=weight)
    args = conv_transpose2d_args(input_shape, weight.shape, stride, padding, output_padding, groups, dilation)
    return _forward(args, grad_out, weight, None, out, variant)


def conv_transpose2d_backward_weight(
    x, grad_out, weight_shape, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *, variant="fast",
    out=None,
):
    """Gradient (Cin, Cout/groups, R, S) with respect to conv_transpose2d's weight, from its input x and
    grad_out: conv2d's weight gradient with conv2d's x = grad_out and conv2d's grad_out = x."""
    x, grad_out = _inputs("conv_transpose2d_backward_weight", x=x, grad_out=grad_out)
    args = conv_transpose2d_args(x.shape, weight_shape, stride, padding, output_padding, groups, dilation)
    return _backward_weight(args, grad_out, x, out, variant)
