"""Dropout (Srivastava et al., 2014), inverted: in training each element is zeroed with
probability p and the survivors are scaled by 1 / (1 - p), so evaluation is the identity.
The mask is drawn from a seeded generator (default: the global one ``pyfastdl.manual_seed`` sets)
on the input's device."""

from __future__ import annotations

import numpy as np

from ...autograd import Function
from ...random import generator_for
from ...tensor import Tensor

__all__ = ["dropout"]


class Dropout(Function):
    @staticmethod
    def forward(ctx, x, p, generator):
        keep = generator_for(x, generator).random(x.shape, dtype=np.float32) >= p
        scale = x.dtype.type(0.0 if p == 1 else 1.0 / (1.0 - p))
        y = x * keep  # the mask is kept as bools (1 byte a value), scaled in place: two passes
        y *= scale
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx, g):
        (keep,) = ctx.saved_tensors
        gx = g * keep
        gx *= ctx.scale
        return gx, None, None


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
