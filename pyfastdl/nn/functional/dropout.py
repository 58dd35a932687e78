"""Dropout (Srivastava et al., 2014), inverted: in training each element is zeroed with
probability p and the survivors are scaled by 1 / (1 - p), so evaluation is the identity.
The mask is drawn from a seeded generator (default: the global one ``pyfastdl.manual_seed`` sets)
on the input's device."""

from __future__ import annotations

import numpy as np

from ... import backend
from ...autograd import Function
from ...random import generator_for
from ...tensor import Tensor

__all__ = ["dropout"]


def _keep_mask(x, p, generator):
    """Bools of x's shape, each True with probability 1 - p. The draw is most of dropout's time: on
    the CPU the mask compares 16-bit integers cut from the bit generator's raw 64-bit output (p is
    rounded to a multiple of 2^-16, an error below 8e-6), about 4x faster than drawing floats."""
    rng = generator_for(x, generator)
    if type(x) is not np.ndarray:
        return rng.random(x.shape, dtype=np.float32) >= p
    threshold = round(p * 65536)
    if threshold == 65536:
        return np.zeros(x.shape, dtype=bool)
    bits = rng.bit_generator.random_raw(-(-x.size // 4)).view(np.uint16)[:x.size]
    return (bits >= np.uint16(threshold)).reshape(x.shape)


def _masked(a, keep, scale):
    """a * keep * scale in two passes (the mask read as bytes: a bool operand makes numpy cast)."""
    out = backend.get_array_module(a).multiply(a, keep.view(np.uint8), dtype=a.dtype)
    out *= scale
    return out


class Dropout(Function):
    @staticmethod
    def forward(ctx, x, p, generator):
        keep = _keep_mask(x, p, generator)
        scale = x.dtype.type(0.0 if p == 1 else 1.0 / (1.0 - p))
        y = _masked(x, keep, scale)  # the mask is kept as bools (1 byte a value)
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx, g):
        (keep,) = ctx.saved_tensors
        return _masked(g, keep, ctx.scale), None, None


def dropout(input, p=0.5, training=True, inplace=False, generator=None):  # noqa: A002
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) when ``training``;
    otherwise return ``input`` unchanged. ``inplace`` is accepted for torch compatibility (the
    result is always a new tensor). ``generator``: a :class:`pyfastdl.random.Generator`."""
    if not isinstance(input, Tensor):
        raise TypeError(f"dropout: input must be a Tensor, got {type(input).__name__}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability p has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    return Dropout.apply(input, p, generator)
