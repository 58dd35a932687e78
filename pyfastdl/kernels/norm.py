"""Raw normalisation kernels on numpy arrays: batch norm and layer norm, forward and backward, no
autograd (CPU; on the GPU nn.functional keeps its cupy array code).

Each forward returns the output and the two statistics per group its backward needs (mean and
invstd = 1 / sqrt(var + eps)), so the backward works from the input itself: nothing of the input's
size is saved beside it. The shape arithmetic lives in C++ in ``_C.NormArgs``. Every function takes
``variant=`` ("fast", the only CPU variant) and ``out=`` (the output array) keyword-only;
non-contiguous inputs are copied to contiguous arrays first.
"""

from __future__ import annotations

import functools
import math

from .. import backend
from .._core import _C

__all__ = ["batch_norm_forward", "batch_norm_backward", "layer_norm_forward", "layer_norm_backward"]

VARIANTS = ("fast",)

# NormArgs are immutable and a training loop sees the same shapes every step: cached.
_batch_args = functools.lru_cache(maxsize=512)(_C.NormArgs.batch_norm)
_layer_args = functools.lru_cache(maxsize=512)(_C.NormArgs.layer_norm)


def _launch(name, variant, *args):
    if variant not in VARIANTS:
        raise ValueError(f"{name}: variant must be one of {VARIANTS}, got {variant!r}")
    return backend.launch(name, backend.device_of(args[1]), *args)


def _flat(a):
    """An optional per-feature array as a contiguous 1-D array (or None)."""
    return None if a is None else backend.contiguous(a).reshape(-1)


def _grads(a, x, output_mask, n_features):
    """The gradient arrays the mask asks for (None for the others)."""
    xp = backend.get_array_module(x)
    gx = xp.empty(x.shape, x.dtype) if output_mask[0] else None
    gw = xp.empty(n_features, x.dtype) if output_mask[1] else None
    gb = xp.empty(n_features, x.dtype) if output_mask[2] else None
    return gx, gw, gb


def batch_norm_forward(input, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5, *,  # noqa: A002
                       variant="fast", out=None):
    """Batch norm of input (N, C, *) over every dimension but 1 -> (output, mean, invstd), the last
    two (C,). training: the batch's statistics, and running_mean / running_var (C,) (or None) are
    updated in place with ``momentum`` (the variance unbiased); otherwise the running statistics."""
    x = backend.contiguous(input)
    a = _batch_args(tuple(x.shape), float(eps), bool(training))
    xp = backend.get_array_module(x)
    y = xp.empty(x.shape, x.dtype) if out is None else out
    mean, invstd = xp.empty(a.groups, x.dtype), xp.empty(a.groups, x.dtype)
    _launch("batch_norm_forward", variant, a, x, _flat(weight), _flat(bias), running_mean, running_var,
            bool(training), float(momentum), mean, invstd, y)
    return y, mean, invstd


def batch_norm_backward(grad_output, input, weight, mean, invstd, training, output_mask=(True, True, True), *,  # noqa: A002
                        variant="fast"):
    """Gradients (grad_input, grad_weight, grad_bias) of batch norm from the forward's input and
    statistics; training: the statistics were the batch's (the gradient flows through them).
    ``output_mask`` says which of the three to compute (the others are None)."""
    x = backend.contiguous(input)
    a = _batch_args(tuple(x.shape), 0.0, False)
    gx, gw, gb = _grads(a, x, output_mask, a.features)
    _launch("batch_norm_backward", variant, a, backend.contiguous(grad_output), x, _flat(weight), mean, invstd,
            bool(training), gx, gw, gb)
    return gx, gw, gb


def _layer(x, normalized_shape, eps):
    """(NormArgs, k): k = the number of normalised trailing dimensions."""
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    return _layer_args(tuple(x.shape), k, float(eps)), k


def layer_norm_forward(input, normalized_shape, weight=None, bias=None, eps=1e-5, *, variant="fast", out=None):  # noqa: A002
    """Layer norm over the trailing ``normalized_shape`` of input -> (output, mean, invstd), the last
    two with one value per row (input.shape without normalized_shape)."""
    x = backend.contiguous(input)
    a, k = _layer(x, normalized_shape, eps)
    xp = backend.get_array_module(x)
    y = xp.empty(x.shape, x.dtype) if out is None else out
    mean, invstd = xp.empty(a.groups, x.dtype), xp.empty(a.groups, x.dtype)
    _launch("layer_norm_forward", variant, a, x, _flat(weight), _flat(bias), mean, invstd, y)
    rows = x.shape[:x.ndim - k]
    return y, mean.reshape(rows), invstd.reshape(rows)


def layer_norm_backward(grad_output, input, normalized_shape, weight, mean, invstd,  # noqa: A002
                        output_mask=(True, True, True), *, variant="fast"):
    """Gradients (grad_input, grad_weight, grad_bias) of layer norm from the forward's input and
    statistics; grad_weight and grad_bias have ``normalized_shape``."""
    x = backend.contiguous(input)
    a, k = _layer(x, normalized_shape, 0.0)
    gx, gw, gb = _grads(a, x, output_mask, a.features)
    _launch("layer_norm_backward", variant, a, backend.contiguous(grad_output), x, _flat(weight),
            backend.contiguous(mean).reshape(-1), backend.contiguous(invstd).reshape(-1), gx, gw, gb)
    shape = x.shape[x.ndim - k:]
    return gx, None if gw is None else gw.reshape(shape), None if gb is None else gb.reshape(shape)
