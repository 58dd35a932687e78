"""Dropout (Srivastava et al., 2014), inverted: in training each element is zeroed with
probability p and the survivors are scaled by 1 / (1 - p), so evaluation is the identity.
The mask is drawn from a seeded generator (default: the global one ``pyfastdl.manual_seed`` sets)
on the input's device: on the CPU one 64-bit seed per call, from which the kernel draws the mask
(SplitMix64, :func:`pyfastdl.kernels.random_bits`)."""

from __future__ import annotations

import numpy as np

from ... import backend, kernels
from ...autograd import Function
from ...random import generator_for
from ...tensor import Tensor

__all__ = ["dropout"]


def _masked(a, keep, scale):
    """a * keep * scale in two passes (the mask read as bytes: a bool operand makes numpy cast), in
    a's dtype in native byte order (ufuncs refuse a byte-order in ``dtype=``)."""
    out = backend.get_array_module(a).multiply(a, keep.view(np.uint8), dtype=a.dtype.newbyteorder("="))
    out *= scale
    return out


class Dropout(Function):
    """On the CPU the mask comes from a seed, one draw of the generator per call: float32/64 numpy
    arrays go through the activation family's dropout kernels, which draw the mask and apply it in one
    pass each way (:func:`pyfastdl.kernels.dropout_forward`); other CPU arrays (float16, non-native
    byte order) apply the same seed's mask (:func:`pyfastdl.kernels.random_bits`) with array code, so
    the mask does not depend on the dtype. On the GPU the mask is drawn with cupy's generator. Both
    keep the mask as one byte a value."""

    @staticmethod
    def forward(ctx, x, p, generator):
        rng = generator_for(x, generator)
        scale = x.dtype.type(0.0 if p == 1 else 1.0 / (1.0 - p))
        ctx.scale = scale
        threshold = round(p * 65536)  # p rounded to a multiple of 2^-16: an error below 8e-6
        if backend.device_of(x) != "cpu":
            keep = rng.random(x.shape, dtype=np.float32) >= p
        else:
            seed = rng.bit_generator.random_raw()  # one draw per call, whatever p and the dtype
            if threshold == 65536:
                keep = np.zeros(x.shape, dtype=bool)
            elif backend.cpu_float(x):
                y, keep = kernels.dropout_forward(x, seed, threshold, scale)
                ctx.save_for_backward(keep)
                return y
            else:
                keep = kernels.random_bits(seed, x.shape) >= np.uint16(threshold)
        ctx.save_for_backward(keep)
        return _masked(x, keep, scale)

    @staticmethod
    def backward(ctx, g):
        (keep,) = ctx.saved_tensors
        if keep.dtype == np.uint8 and backend.cpu_float(g):
            return kernels.dropout_backward(g, keep, ctx.scale), None, None
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
