"""Constant padding with autograd: the forward writes the input into a filled array (its size checked
before it is allocated), the backward slices the gradient back out."""

from __future__ import annotations

import numbers

from ... import backend
from ...autograd import Function
from ...kernels._dispatch import int_arg
from ...tensor import Tensor

__all__ = ["pad"]


class Pad(Function):
    @staticmethod
    def forward(ctx, x, widths, value):
        ctx.region = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape))
        shape = tuple(lo + n + hi for (lo, hi), n in zip(widths, x.shape))
        y = backend.allocate("pad", "the padded output", shape, x.dtype, backend.device_of(x), value)
        y[ctx.region] = x
        return y

    @staticmethod
    def backward(ctx, g):
        return g[ctx.region], None, None


def pad(input, pad, mode="constant", value=0.0):  # noqa: A002
    """Pad the last len(pad)//2 dimensions: ``pad = (left, right)`` for the last dimension, then
    ``(top, bottom)`` for the one before, and so on (torch's order). Only mode="constant" with
    non-negative widths."""
    if not isinstance(input, Tensor):
        raise TypeError(f"pad: input must be a Tensor, got {type(input).__name__}")
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise ValueError(f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}")
    if mode != "constant":
        raise NotImplementedError(f"pad: only mode='constant' is implemented, got {mode!r}")
    if value is None:  # torch's default fill
        value = 0.0
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"pad: value must be a number, got {value!r}")
    if not isinstance(pad, (tuple, list)):
        raise TypeError(f"pad: pad must be a tuple of ints, got {pad!r}")
    pad = tuple(int_arg("pad", "pad", p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim or any(p < 0 for p in pad):
        raise ValueError(f"pad: pad must hold an even number (at most 2 * {input.ndim}) of non-negative widths, "
                         f"got {pad}")
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        widths[input.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return Pad.apply(input, tuple(widths), value)
