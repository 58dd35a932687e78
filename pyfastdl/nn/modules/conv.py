"""Convolution layers: Conv1d, Conv2d and ConvTranspose2d over ``nn.functional``'s convolution
family. Parameters, initialisation and printing as torch's."""

from __future__ import annotations

from ...tensor import Tensor
from .. import functional as F
from . import _factory
from .linear import reset_weight_and_bias
from .module import Module

__all__ = ["Conv1d", "Conv2d", "ConvTranspose2d"]


def _tuple(owner, value, n, name, minimum):
    """An int or ``n`` ints, each at least ``minimum``, as a tuple; errors name the layer and ``name``."""
    if not isinstance(value, (tuple, list)):
        return (_factory.size(owner, name, value, minimum),) * n
    if len(value) != n:
        raise ValueError(f"{type(owner).__name__}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    return tuple(_factory.size(owner, name, v, minimum) for v in value)


class _ConvNd(Module):
    """Shared parameters and printing. weight: (out, in/groups, *k), or (in, out/groups, *k) transposed."""

    _dims = 2
    _transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                 padding_mode, output_padding, device, dtype):
        super().__init__()
        n = self._dims
        in_channels = _factory.size(self, "in_channels", in_channels)
        out_channels = _factory.size(self, "out_channels", out_channels)
        groups = _factory.size(self, "groups", groups, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{type(self).__name__}: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must be divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise NotImplementedError(f"{type(self).__name__}: only padding_mode='zeros' is implemented")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _tuple(self, kernel_size, n, "kernel_size", 1)
        self.stride = _tuple(self, stride, n, "stride", 1)
        self.dilation = _tuple(self, dilation, n, "dilation", 1)
        self.padding = self._resolve_padding(padding)
        self.output_padding = _tuple(self, output_padding, n, "output_padding", 0)
        self.groups = groups
        self.padding_mode = padding_mode
        shape = ((in_channels, out_channels // groups) if self._transposed else
                 (out_channels, in_channels // groups)) + self.kernel_size
        self.weight = _factory.parameter(self, shape, device, dtype)
        self.register_parameter("bias", _factory.parameter(self, (out_channels,), device, dtype) if bias else None)
        self.reset_parameters()

    def _resolve_padding(self, padding):
        """Ints, or torch's "valid" (no padding) and "same" (output size = input size; stride 1), which
        the functional op resolves."""
        if isinstance(padding, str):
            if padding not in ("valid", "same") or self._transposed:
                raise ValueError(f"{type(self).__name__}: padding must be ints, 'valid' or 'same', got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{type(self).__name__}: padding='same' is not supported for strided convolutions")
            return padding
        return _tuple(self, padding, self._dims, "padding", 0)

    def reset_parameters(self):
        reset_weight_and_bias(self.weight, self.bias)

    def extra_repr(self):
        n = self._dims
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * n:  # also prints "valid"/"same"
            s += f", padding={self.padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s

    def _check_input(self, input):  # noqa: A002
        if not isinstance(input, Tensor):
            raise TypeError(f"{type(self).__name__}: input must be a Tensor, got {type(input).__name__}")
        if input.ndim != self._dims + 2:
            raise ValueError(f"{type(self).__name__}: expected a {self._dims + 2}-D input (N, C, ...), got shape "
                             f"{input.shape}")


class Conv1d(_ConvNd):
    """1-D convolution: input (N, C_in, L) -> (N, C_out, L_out); weight (C_out, C_in/groups, k)."""

    _dims = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, 0, device, dtype)

    def forward(self, input):  # noqa: A002
        self._check_input(input)
        padding = self.padding if isinstance(self.padding, str) else self.padding[0]
        return F.conv1d(input, self.weight, self.bias, self.stride[0], padding, self.dilation[0], self.groups)


class Conv2d(_ConvNd):
    """2-D convolution: input (N, C_in, H, W) -> (N, C_out, H_out, W_out); weight (C_out, C_in/groups, kh, kw)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, 0, device, dtype)

    def forward(self, input):  # noqa: A002
        self._check_input(input)
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(_ConvNd):
    """Transposed 2-D convolution (the gradient of Conv2d with respect to its input):
    input (N, C_in, H, W) -> (N, C_out, H_out, W_out); weight (C_in, C_out/groups, kh, kw)."""

    _transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, device, dtype)

    def forward(self, input):  # noqa: A002
        self._check_input(input)
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                  self.groups, self.dilation)
