"""Raw softmax-family kernels on numpy arrays: softmax and log_softmax over the last dimension, and
cross-entropy fused with its log-softmax (over (rows, classes) logits, or the classes in dim 1 of
(N, classes, d1, ...) maps), forward and backward, no autograd (CPU; on the GPU nn.functional keeps
its cupy array code).

The cross-entropy forward returns one loss and one log-sum-exp per row; its backward rebuilds the
probabilities from the logits and that lse, so no (rows, classes) array is kept between the two.
The shape arithmetic lives in C++ in ``_C.SoftmaxArgs``. ``variant=`` and ``out=`` as in every
family (:mod:`._dispatch`); this family has the "fast" variant only. Non-contiguous inputs are
copied first.
"""

from __future__ import annotations

import numpy as np

from .._core import _C
from . import _dispatch

__all__ = ["softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
           "cross_entropy_forward", "cross_entropy_backward"]

_softmax_args = _dispatch.cached(_C.SoftmaxArgs.softmax)
_ce_args = _dispatch.cached(_C.SoftmaxArgs.cross_entropy)


def _args(shape, op):
    """The softmax Args of ``shape``; a bad shape's ValueError names ``op`` (the C++ check says "softmax")."""
    try:
        return _softmax_args(shape)
    except ValueError as e:
        raise ValueError(f"{op}: {str(e).split(': ', 1)[-1]}") from None


def _forward(input, log, variant, out):  # noqa: A002
    op = ("log_" if log else "") + "softmax_forward"
    _dispatch.kernel_name(op, variant)  # a bad variant, by the op's name
    x = _dispatch.kernel_input(input, op, "input")
    (y,) = _dispatch.outputs(out, x, x.shape)
    _dispatch.launch("softmax_forward", variant, _args(tuple(x.shape), op), x, y, log)
    return y


def _backward(output, grad_output, log, variant, out):
    op = ("log_" if log else "") + "softmax_backward"
    _dispatch.kernel_name(op, variant)
    y = _dispatch.kernel_input(output, op, "output")
    (gx,) = _dispatch.outputs(out, y, y.shape)
    _dispatch.launch("softmax_backward", variant, _args(tuple(y.shape), op), y,
                     _dispatch.kernel_input(grad_output, op, "grad_output"), gx, log)
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
    return _dispatch.kernel_input(np.asarray(target, dtype=np.int64))


def cross_entropy_forward(input, target, weight=None, ignore_index=-100, label_smoothing=0.0, *,  # noqa: A002
                          variant="fast", out=None):
    """Per-row cross-entropy of logits (rows, classes) against int targets (rows,) -> (loss, lse),
    both (rows,): loss_i = (1 - eps) w_t (lse_i - x_it) + eps / C * sum_c w_c (lse_i - x_ic), 0 where
    the target is ``ignore_index``; lse_i = log sum_c exp(x_ic). IndexError for a target out of range.
    Logits (N, classes, d1, ...) (segmentation maps, classes in dim 1 as torch) have a row per
    position: rows = N * d1 * ..., in the order of the targets (N, d1, ...) flattened."""
    x = _dispatch.kernel_input(input, "cross_entropy", "input")
    a = _ce_args(tuple(x.shape), _dispatch.int_arg("cross_entropy", "ignore_index", ignore_index),
                 _dispatch.float_arg("cross_entropy", "label_smoothing", label_smoothing))
    w = _dispatch.kernel_input(weight, "cross_entropy", "weight", optional=True)
    loss, lse = _dispatch.outputs(out, x, (a.rows,), (a.rows,))
    _dispatch.launch("cross_entropy_forward", variant, a, x, _targets(target), w, loss, lse)
    return loss, lse


def cross_entropy_backward(input, target, lse, weight=None, ignore_index=-100, label_smoothing=0.0, grad_rows=None,  # noqa: A002
                           scale=1.0, *, variant="fast", out=None):
    """d loss_i / d input (the logits' shape) from the logits and the forward's lse, each row scaled by
    ``scale * grad_rows[i]`` (grad_rows None: by ``scale``); rows with an ignored target get 0."""
    x = _dispatch.kernel_input(input, "cross_entropy", "input")
    a = _ce_args(tuple(x.shape), _dispatch.int_arg("cross_entropy", "ignore_index", ignore_index),
                 _dispatch.float_arg("cross_entropy", "label_smoothing", label_smoothing))
    w = _dispatch.kernel_input(weight, "cross_entropy", "weight", optional=True)
    rows = _dispatch.kernel_input(grad_rows, "cross_entropy_backward", "grad_rows", optional=True)
    (gx,) = _dispatch.outputs(out, x, x.shape)
    _dispatch.launch("cross_entropy_backward", variant, a, x, _targets(target), w,
                     _dispatch.kernel_input(lse, "cross_entropy_backward", "lse"), rows,
                     _dispatch.float_arg("cross_entropy_backward", "scale", scale), gx)
    return gx
