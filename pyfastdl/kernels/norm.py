"""Raw normalisation kernels on numpy arrays: batch norm and layer norm, forward and backward, no
autograd (CPU; on the GPU nn.functional keeps its cupy array code).

Each forward returns the output and the two statistics per group its backward needs (mean and
invstd = 1 / sqrt(var + eps)), so the backward works from the input itself: nothing of the input's
size is saved beside it. The shape arithmetic lives in C++ in ``_C.NormArgs``. ``variant=`` and
``out=`` as in every family (:mod:`._dispatch`); this family has the "fast" variant only (the array
code in nn.functional is its readable counterpart). Non-contiguous inputs are copied first.
"""

from __future__ import annotations

from .._core import _C
from . import _dispatch

__all__ = ["batch_norm_forward", "batch_norm_backward", "layer_norm_forward", "layer_norm_backward"]

_batch_args = _dispatch.cached(_C.NormArgs.batch_norm)
_layer_args = _dispatch.cached(_C.NormArgs.layer_norm)


def _flat(a, op=None, name=None):
    """An optional per-feature array as a contiguous 1-D array (or None); a non-array is a TypeError
    naming ``op`` and ``name``."""
    return None if a is None else _dispatch.kernel_input(a, op, name).reshape(-1)


def _grads(x, output_mask, n_features):
    """The gradient arrays the mask asks for (None for the others)."""
    shapes = (x.shape, (n_features,), (n_features,))
    return tuple(_dispatch.outputs(None, x, s)[0] if need else None for need, s in zip(output_mask, shapes))


def batch_norm_forward(input, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5, *,  # noqa: A002
                       variant="fast", out=None):
    """Batch norm of input (N, C, *) over every dimension but 1 -> (output, mean, invstd), the last
    two (C,). training: the batch's statistics, and running_mean / running_var (C,) (or None) are
    updated in place with ``momentum`` (the variance unbiased); otherwise the running statistics."""
    x = _dispatch.kernel_input(input, "batch_norm", "input")
    a = _batch_args(tuple(x.shape), _dispatch.float_arg("batch_norm", "eps", eps), bool(training))
    y, mean, invstd = _dispatch.outputs(out, x, x.shape, (a.groups,), (a.groups,))
    _dispatch.launch("batch_norm_forward", variant, a, x, _flat(weight, "batch_norm", "weight"),
                     _flat(bias, "batch_norm", "bias"), running_mean, running_var,
                     bool(training), _dispatch.float_arg("batch_norm", "momentum", momentum), mean, invstd, y)
    return y, mean, invstd


def batch_norm_backward(grad_output, input, weight, mean, invstd, training, output_mask=(True, True, True), *,  # noqa: A002
                        variant="fast"):
    """Gradients (grad_input, grad_weight, grad_bias) of batch norm from the forward's input and
    statistics; training: the statistics were the batch's (the gradient flows through them).
    ``output_mask`` says which of the three to compute (the others are None)."""
    op = "batch_norm_backward"
    x = _dispatch.kernel_input(input, op, "input")
    a = _batch_args(tuple(x.shape), 0.0, False)
    gx, gw, gb = _grads(x, output_mask, a.features)
    _dispatch.launch(op, variant, a, _dispatch.kernel_input(grad_output, op, "grad_output"), x,
                     _flat(weight, op, "weight"), mean, invstd, bool(training), gx, gw, gb)
    return gx, gw, gb


def _layer(op, x, normalized_shape, eps):
    """(NormArgs, k): k = the number of normalised trailing dimensions, which must be
    ``normalized_shape``."""
    dims = normalized_shape if isinstance(normalized_shape, (tuple, list)) else (normalized_shape,)
    shape = tuple(_dispatch.int_arg(op, "normalized_shape", d) for d in dims)
    k = len(shape)
    if k == 0 or k > x.ndim or tuple(x.shape[x.ndim - k:]) != shape:
        raise ValueError(f"{op}: normalized_shape {shape} is not the trailing dimensions of the input's shape "
                         f"{tuple(x.shape)}")
    return _layer_args(tuple(x.shape), k, _dispatch.float_arg(op, "eps", eps)), k


def layer_norm_forward(input, normalized_shape, weight=None, bias=None, eps=1e-5, *, variant="fast", out=None):  # noqa: A002
    """Layer norm over the trailing ``normalized_shape`` of input -> (output, mean, invstd), the last
    two with one value per row (input.shape without normalized_shape)."""
    x = _dispatch.kernel_input(input, "layer_norm", "input")
    a, k = _layer("layer_norm_forward", x, normalized_shape, eps)
    rows = x.shape[:x.ndim - k]
    y, mean, invstd = _dispatch.outputs(out, x, x.shape, rows, rows)
    _dispatch.launch("layer_norm_forward", variant, a, x, _flat(weight, "layer_norm", "weight"),
                     _flat(bias, "layer_norm", "bias"), mean.reshape(-1),
                     invstd.reshape(-1), y)
    return y, mean, invstd


def layer_norm_backward(grad_output, input, normalized_shape, weight, mean, invstd,  # noqa: A002
                        output_mask=(True, True, True), *, variant="fast"):
    """Gradients (grad_input, grad_weight, grad_bias) of layer norm from the forward's input and
    statistics; grad_weight and grad_bias have ``normalized_shape``."""
    x = _dispatch.kernel_input(input, "layer_norm", "input")
    a, k = _layer("layer_norm_backward", x, normalized_shape, 0.0)
    gx, gw, gb = _grads(x, output_mask, a.features)
    gy = _dispatch.kernel_input(grad_output, "layer_norm", "grad_output")
    op = "layer_norm_backward"
    _dispatch.launch(op, variant, a, gy, x, _flat(weight, op, "weight"), _flat(mean, op, "mean"),
                     _flat(invstd, op, "invstd"), gx, gw, gb)
    shape = x.shape[x.ndim - k:]
    return gx, None if gw is None else gw.reshape(shape), None if gb is None else gb.reshape(shape)
