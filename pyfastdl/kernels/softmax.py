"""Raw softmax-family kernels on numpy arrays: softmax and log_softmax over the last dimension, and
cross-entropy fused with its log-softmax, forward and backward, no autograd (CPU; on the GPU
nn.functional keeps its cupy array code).

The cross-entropy forward returns one loss and one log-sum-exp per row; its backward rebuilds the
probabilities from the logits and that lse, so no (rows, classes) array is kept between the two.
The shape arithmetic lives in C++ in ``_C.SoftmaxArgs``. ``variant=`` ("fast", the only CPU variant)
and ``out=`` are keyword-only; non-contiguous inputs are copied to contiguous arrays first.
"""

from __future__ import annotations

import functools

import numpy as np

from .. import backend
from .._core import _C

__all__ = ["softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
           "cross_entropy_forward", "cross_entropy_backward"]

VARIANTS = ("fast",)

_softmax_args = functools.lru_cache(maxsize=512)(_C.SoftmaxArgs.softmax)
_ce_args = functools.lru_cache(maxsize=512)(_C.SoftmaxArgs.cross_entropy)


def _launch(name, variant, *args):
    if variant not in VARIANTS:
        raise ValueError(f"{name}: variant must be one of {VARIANTS}, got {variant!r}")
    return backend.launch(name, backend.device_of(args[1]), *args)


def _forward(input, log, variant, out):  # noqa: A002
    x = backend.contiguous(input)
    y = backend.get_array_module(x).empty(x.shape, x.dtype) if out is None else out
    _launch("softmax_forward", variant, _softmax_args(tuple(x.shape)), x, y, log)
    return y


def _backward(output, grad_output, log, variant, out):
    y = backend.contiguous(output)
    gx = backend.get_array_module(y).empty(y.shape, y.dtype) if out is None else out
    _launch("softmax_backward", variant, _softmax_args(tuple(y.shape)), y, backend.contiguous(grad_output), gx, log)
    return gx


def softmax_forward(input, *, variant="fast", out=None):  # noqa: A002
    """exp(x - max) / sum(exp(x - max)) along the last dimension."""
    return _forward(input, False, variant, out)


def softmax_backward(output, grad_output, *, variant="fast", out=None):
    """Gradient of softmax from its output y: y * (g - sum(g * y)) along the last dimension."""
    return _backward(output, grad_output, False, variant, out)


def log_softmax_forward(input, *, variant="fast", out=None):  # noqa: A002
    """x - max - log(sum(exp(x - max))) along the last dimension."""
    return _forward(input, True, variant, out)


def log_softmax_backward(output, grad_output, *, variant="fast", out=None):
    """Gradient of log_softmax from its output y: g - exp(y) * sum(g) along the last dimension."""
    return _backward(output, grad_output, True, variant, out)


def _targets(target):
    return backend.contiguous(np.asarray(target, dtype=np.int64))


def _optional(a):
    return None if a is None else backend.contiguous(a)


def cross_entropy_forward(input, target, weight=None, ignore_index=-100, label_smoothing=0.0, *,  # noqa: A002
                          variant="fast", out=None):
    """Per-row cross-entropy of logits (rows, classes) against int targets (rows,) -> (loss, lse),
    both (rows,): loss_i = (1 - eps) w_t (lse_i - x_it) + eps / C * sum_c w_c (lse_i - x_ic), 0 where
    the target is ``ignore_index``; lse_i = log sum_c exp(x_ic). IndexError for a target out of range."""
    x = backend.contiguous(input)
    a = _ce_args(tuple(x.shape), int(ignore_index), float(label_smoothing))
    loss = np.empty(a.rows, x.dtype) if out is None else out
    lse = np.empty(a.rows, x.dtype)
    _launch("cross_entropy_forward", variant, a, x, _targets(target), _optional(weight), loss, lse)
    return loss, lse


def cross_entropy_backward(input, target, lse, weight=None, ignore_index=-100, label_smoothing=0.0, grad_rows=None,  # noqa: A002
                           scale=1.0, *, variant="fast", out=None):
    """d loss_i / d input (rows, classes) from the logits and the forward's lse, each row scaled by
    ``scale * grad_rows[i]`` (grad_rows None: by ``scale``); rows with an ignored target get 0."""
    x = backend.contiguous(input)
    a = _ce_args(tuple(x.shape), int(ignore_index), float(label_smoothing))
    gx = np.empty(x.shape, x.dtype) if out is None else out
    _launch("cross_entropy_backward", variant, a, x, _targets(target), _optional(weight), lse, _optional(grad_rows),
            float(scale), gx)
    return gx
