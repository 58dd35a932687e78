"""Affine map y = x W^T + b with autograd: one matrix product forward, two backward (OpenBLAS on the
CPU kernels' thread pool through :func:`pyfastdl.backend.matmul`, cuBLAS through cupy on the GPU).
Leading dimensions of x are flattened into one batch."""

from __future__ import annotations

import math

from ... import backend
from ...autograd import Function
from ...tensor import Tensor

__all__ = ["linear"]


class Linear(Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        # Explicit row counts, not -1: numpy cannot infer -1 when a size is 0 (in_features 0 is torch's
        # zeros + bias; an empty batch is an empty output).
        x2 = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])
        y = backend.matmul(x2, weight.T)
        if bias is not None:
            y += bias
        ctx.save_for_backward(x2, weight)
        ctx.x_shape = x.shape
        return y.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx, g):
        x2, weight = ctx.saved_tensors
        g2 = g.reshape(math.prod(g.shape[:-1]), weight.shape[0])
        gx = backend.matmul(g2, weight).reshape(ctx.x_shape) if ctx.needs_input_grad[0] else None
        gw = backend.matmul(g2.T, x2) if ctx.needs_input_grad[1] else None
        gb = g2.sum(axis=0) if ctx.needs_input_grad[2] else None
        return gx, gw, gb


def linear(input, weight, bias=None):  # noqa: A002 (torch's argument name)
    """y = input @ weight.T + bias.

    input (*, in_features), weight (out_features, in_features), bias (out_features,) or None
    -> (*, out_features)."""
    for name, t in (("input", input), ("weight", weight), ("bias", bias)):
        if not isinstance(t, Tensor) and not (name == "bias" and t is None):
            raise TypeError(f"linear: {name} must be a Tensor{' or None' if name == 'bias' else ''}, got "
                            f"{type(t).__name__}")
    if weight.ndim != 2 or input.ndim < 1 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {input.shape} does not match weight of shape {weight.shape} "
                         "(need input (*, in_features) and weight (out_features, in_features))")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias has shape {bias.shape}, expected ({weight.shape[0]},)")
    return Linear.apply(input, weight, bias)
