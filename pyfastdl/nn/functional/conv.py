"""Convolutions with autograd: conv1d, conv2d, conv_transpose2d (torch.nn.functional's signatures).

Each pass is one raw kernel from :mod:`pyfastdl.kernels.conv`:

    op                 forward                 grad input              grad weight
    conv2d             conv2d_forward          conv2d_backward_input   conv2d_backward_weight
    conv_transpose2d   conv2d_backward_input   conv2d_forward          conv2d_backward_weight (roles swapped)

conv1d is conv2d on (N, C, 1, L) views (reshapes in the graph). ``padding`` is an int, a pair, or torch's strings "valid"
(no padding) and "same" (output as large as the input; stride 1 only). When "same" needs an odd
total padding (an even kernel), the extra row/column goes at the end, as in torch: the input is
copied once with that zero edge and the gradient is cropped back.
Inputs are made C-contiguous (a copy only when they are not).
"""

from __future__ import annotations

from ... import backend
from ... import kernels as K
from ...autograd import Function
from ...kernels._dispatch import pair_arg
from ...tensor import Tensor

__all__ = ["conv1d", "conv2d", "conv_transpose2d"]


def _operands(op, input, weight, bias):  # noqa: A002
    """input, weight and bias (or None) as Tensors: numpy/cupy arrays are wrapped, anything else is a
    TypeError naming the argument."""
    out = []
    for name, a in (("input", input), ("weight", weight), ("bias", bias)):
        if a is None and name == "bias" or isinstance(a, Tensor):
            out.append(a)
        elif backend.is_array(a):
            out.append(Tensor(a))
        else:
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(a).__name__}")
    return out


def _padding(padding, kernel_hw, stride, dilation, op):
    """(padding pair, extra zeros at the bottom/right) for an int, pair, "valid" or "same"."""
    if not isinstance(padding, str):
        return pair_arg(op, "padding", padding), (0, 0)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding != "same":
        raise ValueError(f"{op}: invalid padding string {padding!r}, should be one of ['valid', 'same']")
    if any(s != 1 for s in stride):
        raise ValueError(f"{op}: padding='same' is not supported for strided convolutions (stride {stride})")
    if len(kernel_hw) != 2:
        raise ValueError(f"{op}: weight must have 4 dimensions (out_channels, in_channels/groups, kH, kW), got "
                         f"kernel dimensions {kernel_hw}")
    total = [d * (k - 1) for d, k in zip(dilation, kernel_hw)]
    return tuple(t // 2 for t in total), tuple(t % 2 for t in total)


def _pad_end(x, extra):
    """x (N, C, H, W) with extra[0] zero rows at the bottom and extra[1] zero columns at the right."""
    if extra == (0, 0):
        return x
    xp = backend.get_array_module(x)
    return xp.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))


class Conv2d(Function):
    """y = conv2d(x, weight) + bias. ``conf`` = (stride, padding, dilation, groups), each spatial value
    an (h, w) pair; ``pad_end`` = zeros added at the bottom/right first ("same" with an even kernel)."""

    @staticmethod
    def forward(ctx, x, weight, bias, conf, pad_end):
        ctx.x_hw = x.shape[2:]
        x = _pad_end(backend.contiguous(x), pad_end)
        weight = backend.contiguous(weight)
        bias = None if bias is None else backend.contiguous(bias)
        ctx.save_for_backward(x, weight)
        ctx.conf, ctx.has_bias = conf, bias is not None
        return K.conv2d_forward(x, weight, bias, *conf)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        gy = backend.contiguous(grad_y)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = K.conv2d_backward_input(gy, weight, x.shape, *ctx.conf)
            gx = gx[:, :, : ctx.x_hw[0], : ctx.x_hw[1]]  # drops the pad_end rows/columns, if any
        if ctx.needs_input_grad[1]:
            gw = K.conv2d_backward_weight(x, gy, weight.shape, *ctx.conf)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = K.conv2d_backward_bias(gy)
        return gx, gw, gb, None, None


class ConvTranspose2d(Function):
    """y = conv_transpose2d(x, weight) + bias; ``conf`` = (stride, padding, output_padding, groups,
    dilation) in the argument order of torch's conv_transpose2d."""

    @staticmethod
    def forward(ctx, x, weight, bias, conf):
        x, weight = backend.contiguous(x), backend.contiguous(weight)
        bias = None if bias is None else backend.contiguous(bias)
        ctx.save_for_backward(x, weight)
        ctx.conf, ctx.has_bias = conf, bias is not None
        return K.conv_transpose2d_forward(x, weight, bias, *conf)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        gy = backend.contiguous(grad_y)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = K.conv_transpose2d_backward_input(gy, weight, x.shape, *ctx.conf)
        if ctx.needs_input_grad[1]:
            gw = K.conv_transpose2d_backward_weight(x, gy, weight.shape, *ctx.conf)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = K.conv2d_backward_bias(gy)
        return gx, gw, gb, None


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """2-D convolution (cross-correlation, as in torch).

    input (N, C, H, W), weight (K, C/groups, R, S), bias (K,) or None -> (N, K, P, Q) with
    P = (H + 2*padding - dilation*(R-1) - 1) // stride + 1 (Q likewise). stride, padding and dilation
    are ints or (h, w) pairs; padding may also be "valid" or "same"."""
    op = "conv2d"
    input, weight, bias = _operands(op, input, weight, bias)
    stride, dilation = pair_arg(op, "stride", stride), pair_arg(op, "dilation", dilation)
    pad, pad_end = _padding(padding, tuple(weight.shape[2:]), stride, dilation, op)
    return Conv2d.apply(input, weight, bias, (stride, pad, dilation, groups), pad_end)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """1-D convolution: input (N, C, L), weight (K, C/groups, k), bias (K,) or None -> (N, K, L_out),
    L_out = (L + 2*padding - dilation*(k-1) - 1) // stride + 1; padding may be "valid" or "same".
    Runs the conv2d kernels on height-1 views."""
    op = "conv1d"
    input, weight, bias = _operands(op, input, weight, bias)
    for name, value in (("stride", stride), ("dilation", dilation)):
        if not isinstance(value, int):
            raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    if len(input.shape) != 3 or len(weight.shape) != 3:
        raise ValueError(f"{op}: input and weight must have 3 dimensions, got shapes {tuple(input.shape)} and "
                         f"{tuple(weight.shape)}")
    stride2, dilation2 = (1, stride), (1, dilation)
    if isinstance(padding, str):
        pad, pad_end = _padding(padding, (1, weight.shape[2]), stride2, dilation2, op)
    elif isinstance(padding, int):
        pad, pad_end = (0, padding), (0, 0)
    else:
        raise TypeError(f"{op}: padding must be an int or 'valid'/'same', got {padding!r}")
    (n, c, length), (k, cg, width) = input.shape, weight.shape
    try:
        y = Conv2d.apply(input.reshape(n, c, 1, length), weight.reshape(k, cg, 1, width), bias,
                         (stride2, pad, dilation2, groups), pad_end)
    except (ValueError, TypeError, MemoryError) as exc:  # the conv2d message, with its height-1 view: name conv1d too
        raise type(exc)(f"{op} (conv2d over a height of 1): {exc}") from None
    return y.reshape(n, k, y.shape[3])


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):  # noqa: A002
    """Transposed 2-D convolution (the input gradient of conv2d; FCN's learned upsampling).

    input (N, Cin, H, W), weight (Cin, Cout/groups, R, S), bias (Cout,) or None ->
    (N, Cout, (H-1)*stride - 2*padding + dilation*(R-1) + output_padding + 1, ...).
    output_padding must be smaller than stride or dilation."""
    op = "conv_transpose2d"
    input, weight, bias = _operands(op, input, weight, bias)
    conf = tuple(pair_arg(op, name, v) for v, name in ((stride, "stride"), (padding, "padding"),
                                                     (output_padding, "output_padding")))
    conf = (*conf, groups, pair_arg(op, "dilation", dilation))
    return ConvTranspose2d.apply(input, weight, bias, conf)
