"""Parameter initialisation with torch.nn.init's names, formulas and defaults.

Each function fills a Tensor (or a raw numpy/cupy array) in place and returns it. Values are drawn
on the host from ``generator`` (default: the global one that ``pyfastdl.manual_seed`` seeds) and
copied to the tensor's device, so a model initialises identically on the CPU and the GPU.

    fan_in  = weight.shape[1] * prod(weight.shape[2:])     (inputs feeding one output unit)
    fan_out = weight.shape[0] * prod(weight.shape[2:])
    xavier:  std = gain * sqrt(2 / (fan_in + fan_out))      (Glorot & Bengio, 2010)
    kaiming: std = gain / sqrt(fan)                          (He et al., 2015)
    uniform with standard deviation std: U(-sqrt(3) std, sqrt(3) std)
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend
from ..random import default_generator
from ..tensor import Tensor

__all__ = [
    "calculate_gain",
    "uniform_",
    "normal_",
    "zeros_",
    "ones_",
    "constant_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
]


def _array(tensor):
    if isinstance(tensor, Tensor):
        return tensor.data
    backend.device_of(tensor)  # TypeError for anything but an ndarray
    return tensor


def _fill(tensor, host_values):
    """Write host values into the tensor's array in place (bumping a Tensor's version)."""
    arr = _array(tensor)
    arr[...] = backend.to_device(np.asarray(host_values, dtype=arr.dtype), backend.device_of(arr))
    if isinstance(tensor, Tensor):
        tensor._version += 1
    return tensor


def _number(op, name, value, low=-math.inf):
    """``value`` as a float, or a ValueError naming ``op`` and ``name`` unless it is a finite real number >= low."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value < math.inf:
        raise ValueError(f"{op}: {name} must be a finite number{f' >= {low}' if low > -math.inf else ''}, "
                         f"got {value!r}")
    return float(value)


def _host_rng(generator):
    return (generator or default_generator).numpy


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity (torch.nn.init.calculate_gain's table)."""
    linear_fns = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                  "conv_transpose3d"]
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool) and math.isfinite(param):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor):
    shape = _array(tensor).shape
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out can not be computed for a tensor with fewer than 2 dimensions "
                         f"(shape {tuple(shape)})")
    receptive_field = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive_field, shape[0] * receptive_field


def _calculate_correct_fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode {mode!r} not supported, please use one of 'fan_in', 'fan_out'")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with U(a, b)."""
    a, b = _number("uniform_", "a", a), _number("uniform_", "b", b)
    if a > b:
        raise ValueError(f"uniform_: a must be <= b, got a={a}, b={b}")
    return _fill(tensor, _host_rng(generator).uniform(a, b, _array(tensor).shape))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with N(mean, std^2)."""
    mean, std = _number("normal_", "mean", mean), _number("normal_", "std", std, 0.0)
    return _fill(tensor, _host_rng(generator).normal(mean, std, _array(tensor).shape))


def constant_(tensor, val):
    if isinstance(val, bool) or not isinstance(val, numbers.Real):
        raise TypeError(f"constant_: val must be a real number, got {type(val).__name__} {val!r}")
    _array(tensor)[...] = val
    if isinstance(tensor, Tensor):
        tensor._version += 1
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0)


def ones_(tensor):
    return constant_(tensor, 1)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """Glorot uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    a = math.sqrt(3.0) * _number("xavier_uniform_", "gain", gain, 0.0) * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """Glorot normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, _number("xavier_normal_", "gain", gain, 0.0) * math.sqrt(2.0 / float(fan_in + fan_out)),
                   generator)


def _kaiming_std(tensor, a, mode, nonlinearity):
    return calculate_gain(nonlinearity, a) / math.sqrt(_calculate_correct_fan(tensor, mode))


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He uniform: U(-bound, bound) with bound = gain * sqrt(3 / fan)."""
    if _array(tensor).size == 0:
        return tensor
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He normal: N(0, std^2) with std = gain / sqrt(fan)."""
    if _array(tensor).size == 0:
        return tensor
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)
