"""Identity and Linear (y = x W^T + b)."""

from __future__ import annotations

import math

from .. import functional as F
from .. import init
from . import _factory
from .module import Module

__all__ = ["Identity", "Linear"]


class Identity(Module):
    """Returns its input (a placeholder where a layer is optional)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):  # noqa: A002
        return input


class Linear(Module):
    """y = x W^T + b: input (*, in_features) -> (*, out_features).
    Parameters ``weight`` (out_features, in_features) and ``bias`` (out_features,), both
    U(-1/sqrt(in_features), 1/sqrt(in_features)) as torch initialises them."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features = in_features = _factory.size(self, "in_features", in_features)
        self.out_features = out_features = _factory.size(self, "out_features", out_features)
        self.weight = _factory.parameter(self, (out_features, in_features), device, dtype)
        self.register_parameter("bias", _factory.parameter(self, (out_features,), device, dtype) if bias else None)
        self.reset_parameters()

    def reset_parameters(self):
        reset_weight_and_bias(self.weight, self.bias)

    def forward(self, input):  # noqa: A002
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def reset_weight_and_bias(weight, bias):
    """torch's default for Linear and convolutions: kaiming_uniform_(a=sqrt(5)) on the weight, which is
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = init._calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(bias, -bound, bound)
