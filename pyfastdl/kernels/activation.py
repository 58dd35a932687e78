"""Raw activation kernels on numpy arrays: ReLU and leaky ReLU, forward and backward, element-wise
over any shape, GLU over one dimension, and dropout, which draws its mask from a seed (and the same
draws on their own, :func:`random_bits`); no autograd (CPU; on the GPU the ops keep their cupy array
code).

The backward reads ``ref``, an array positive exactly where the forward's input was: the input
itself, or (for a non-negative slope) the forward's output, which autograd keeps anyway. ReLU
follows torch at the edges: relu(-x) is +0, NaN stays NaN, and the backward is 0 wherever the input
was <= 0 whatever the incoming gradient (Inf and NaN included). The arguments live in C++ in
``_C.ActivationArgs``; ``variant=`` and ``out=`` as in every family (:mod:`._dispatch`); this
family has the "fast" variant only (a compare and a blend per value leave nothing to simplify;
dropout's draws can be checked on their own through :func:`random_bits`). Non-contiguous inputs are
copied first.
"""

from __future__ import annotations


import numpy as np

from .._core import _C
from . import _dispatch

__all__ = ["ACTIVATION_VARIANTS", "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
           "glu_forward", "glu_backward", "random_bits", "dropout_forward", "dropout_backward"]

_args = _dispatch.cached(_C.ActivationArgs)
_glu_args = _dispatch.cached(_C.GluArgs)
_dropout_args = _dispatch.cached(_C.DropoutArgs)
_HOST = np.empty(0)  # random_bits' outputs are numpy arrays (the draws are made on the host)
#: This family's variants: one kernel, simple enough to be its own reference.
ACTIVATION_VARIANTS = ("fast",)


def leaky_relu_forward(input, negative_slope=0.01, *, variant="fast", out=None):  # noqa: A002
    """x if x > 0 else negative_slope * x, element-wise."""
    x = _dispatch.kernel_input(input, "leaky_relu_forward", "input")
    slope = _dispatch.float_arg("leaky_relu", "negative_slope", negative_slope)
    (y,) = _dispatch.outputs(out, x, x.shape)
    _dispatch.launch("leaky_relu_forward", variant, _args(tuple(x.shape), slope), x, y, variants=ACTIVATION_VARIANTS)
    return y


def leaky_relu_backward(ref, grad_output, negative_slope=0.01, *, variant="fast", out=None):
    """grad_output where ref > 0, else negative_slope * grad_output (ref: the input, or the output
    when negative_slope >= 0)."""
    r = _dispatch.kernel_input(ref, "leaky_relu_backward", "ref")
    slope = _dispatch.float_arg("leaky_relu", "negative_slope", negative_slope)
    (gx,) = _dispatch.outputs(out, r, r.shape)
    _dispatch.launch("leaky_relu_backward", variant, _args(tuple(r.shape), slope), r,
                     _dispatch.kernel_input(grad_output, "leaky_relu_backward", "grad_output"), gx,
                     variants=ACTIVATION_VARIANTS)
    return gx


def relu_forward(input, *, variant="fast", out=None):  # noqa: A002
    """max(x, 0) element-wise (+0 for x <= 0; NaN stays NaN)."""
    return leaky_relu_forward(input, 0.0, variant=variant, out=out)


def relu_backward(ref, grad_output, *, variant="fast", out=None):
    """grad_output where ref > 0 (or NaN), else 0 (ref: ReLU's input or output)."""
    return leaky_relu_backward(ref, grad_output, 0.0, variant=variant, out=out)


def glu_forward(input, dim=-1, *, variant="fast", out=None):  # noqa: A002
    """GLU (Dauphin et al. 2017): ``a * sigmoid(b)`` where a and b are the first and second halves of
    ``dim`` (its size must be even); the output has ``dim`` halved."""
    x = _dispatch.kernel_input(input, "glu_forward", "input")
    a = _glu_args(tuple(x.shape), _dispatch.int_arg("glu_forward", "dim", dim))
    (y,) = _dispatch.outputs(out, x, a.output_shape)
    _dispatch.launch("glu_forward", variant, a, x, y, variants=ACTIVATION_VARIANTS)
    return y


def glu_backward(input, grad_output, dim=-1, *, variant="fast", out=None):  # noqa: A002
    """The gradient of :func:`glu_forward` with respect to its input (input's shape), from the input
    and the output's gradient: ``g * s`` for a's half, ``g * a * s * (1 - s)`` for b's, s = sigmoid(b)."""
    x = _dispatch.kernel_input(input, "glu_backward", "input")
    a = _glu_args(tuple(x.shape), _dispatch.int_arg("glu_backward", "dim", dim))
    (gx,) = _dispatch.outputs(out, x, x.shape)
    _dispatch.launch("glu_backward", variant, a, x, _dispatch.kernel_input(grad_output, "glu_backward", "grad_output"),
                     gx, variants=ACTIVATION_VARIANTS)
    return gx


def _seed_arg(op, seed):
    """A generator seed as an int in [0, 2**64), or a TypeError/ValueError naming ``op`` and seed."""
    return _dispatch.int_arg(op, "seed", seed, "an int in [0, 2**64)", 0, 2**64)


def random_bits(seed, shape, *, variant="fast", out=None):
    """The 16-bit random draws dropout's mask compares, as a uint16 array of ``shape``: draw i (in C
    order) is 16 bits of word i // 4 of ``seed``'s SplitMix64 stream (Steele, Lea & Flood 2014), word
    k = mix(seed + (k + 1) * 0x9e3779b97f4a7c15) -- exactly the k-th output of Vigna's splitmix64.c
    seeded with ``seed`` -- its bytes in little-endian order: draw i = (word >> 16 * (i % 4)) & 0xffff.
    :func:`dropout_forward` draws the same numbers inside its own pass. ``out``: a C-contiguous uint16
    array of ``shape``."""
    seed = _seed_arg("random_bits", seed)
    shape = _dispatch.shape_arg("random_bits", "shape", shape)
    if out is not None and getattr(out, "shape", shape) != shape:
        raise ValueError(f"random_bits: out must have shape {shape}, got {out.shape}")
    (bits,) = _dispatch.outputs(out, _HOST, shape, dtype=np.uint16, op="random_bits", what="out")
    _dispatch.launch("random_bits", variant, seed, bits, variants=ACTIVATION_VARIANTS)  # no Args: the seed leads
    return bits


def dropout_forward(input, seed, threshold, scale, *, variant="fast", out=None):  # noqa: A002
    """Inverted dropout drawing its own mask: value i is kept where draw i of ``seed``'s stream
    (:func:`random_bits`'s, an int in [0, 2**64)) is ``>= threshold``, so dropped with probability
    threshold / 65536 (threshold < 65536), and kept values are scaled by ``scale``. Returns (output,
    keep): keep is uint8, 1 where kept. A dropped NaN or Inf gives NaN (0 * x), as torch's x * mask *
    scale. The mask depends on the seed and the shape only (not the thread count or the instruction
    set). ``out``: (output, keep)."""
    x = _dispatch.kernel_input(input, "dropout_forward", "input")
    seed = _seed_arg("dropout_forward", seed)
    a = _dropout_args(tuple(x.shape), _dispatch.int_arg("dropout_forward", "threshold", threshold),
                      _dispatch.float_arg("dropout_forward", "scale", scale))
    if out is None:
        out = _dispatch.outputs(None, x, x.shape) + _dispatch.outputs(None, x, x.shape, dtype="uint8")
    y, keep = out
    _dispatch.launch("dropout_forward", variant, a, x, seed, y, keep, variants=ACTIVATION_VARIANTS)
    return y, keep


def dropout_backward(grad_output, keep, scale, *, variant="fast", out=None):
    """grad_output * (keep ? scale : 0), with keep the mask :func:`dropout_forward` returned."""
    g = _dispatch.kernel_input(grad_output, "dropout_backward", "grad_output")
    a = _dropout_args(tuple(g.shape), 0, _dispatch.float_arg("dropout_backward", "scale", scale))
    (gx,) = _dispatch.outputs(out, g, g.shape)
    _dispatch.launch("dropout_backward", variant, a, g, _dispatch.kernel_input(keep, "dropout_backward", "keep"),
                     gx, variants=ACTIVATION_VARIANTS)
    return gx
