"""Loss functions, each one fused Function: the forward computes the loss and what its backward
needs, the backward only scales it. Stable for large inputs: log-softmax subtracts the row
maximum before exponentiating, and the logistic losses use log1p(exp(-|x|)).

Class-index losses (cross_entropy, nll_loss) take input (N, C) or (N, C, d1, ...) with classes in
dim 1 (as torch, e.g. for segmentation) and integer targets (N,) or (N, d1, ...); internally the
class dimension is moved last and the rest flattened to M rows.

cross_entropy, per row i with target t, log-probabilities lp = log_softmax(z), class weights w
(all 1 without ``weight``), W = sum(w), smoothing eps and C classes:
    loss_i = (1 - eps) * w_t * (-lp_t) + eps / C * sum_c w_c * (-lp_c)
    d loss_i / d z_c = (1 - eps) * w_t * (p_c - [c == t]) + eps / C * (W p_c - w_c)
Rows whose target is ``ignore_index`` count zero; reduction="mean" divides by the sum of w_t over
the other rows (torch's convention). On the CPU (float32/float64) cross_entropy runs as the fused
C++ kernels of :mod:`pyfastdl.kernels.softmax`, which keep only one log-sum-exp per row for the
backward and read segmentation maps (N, C, d1, ...) in place; on the GPU it is the array code below.
"""

from __future__ import annotations

import numbers

import numpy as np

from ... import backend, kernels
from ...autograd import Function
from ...kernels._dispatch import float_arg, int_arg
from ...tensor import Tensor
from .activation import _log_softmax

__all__ = ["cross_entropy", "nll_loss", "mse_loss", "binary_cross_entropy_with_logits", "smooth_l1_loss"]

REDUCTIONS = ("none", "mean", "sum")


def _xp(a):
    return backend.get_array_module(a)


def _check_reduction(name, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


# ---- class-index losses ------------------------------------------------------------------------


def _class_rows(name, input, target, weight, ignore_index):  # noqa: A002
    """Validate and return the target array flattened to (M,); raises naming the bad argument."""
    int_arg(name, "ignore_index", ignore_index)
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
    if not isinstance(target, Tensor):
        raise TypeError(f"{name}: target must be a Tensor of class indices, got {type(target).__name__}")
    if input.dtype.kind != "f":
        raise TypeError(f"{name}: input must be floating point (scores per class), got {input.dtype}")
    if target.dtype.kind not in "iu":
        raise TypeError(f"{name}: target must hold class indices with an integer dtype (int64), got {target.dtype} "
                        "(class-probability targets are not supported)")
    if input.ndim == 0:
        raise ValueError(f"{name}: input must have a class dimension, got a 0-d tensor")
    expected = () if input.ndim == 1 else (input.shape[0],) + input.shape[2:]
    if target.shape != expected:
        raise ValueError(f"{name}: target has shape {target.shape}, expected {expected} for input of shape "
                         f"{input.shape} (classes in dim {0 if input.ndim == 1 else 1})")
    if target.device != input.device:
        raise RuntimeError(f"{name}: target is on {target.device}, input on {input.device}")
    c = input.shape[0 if input.ndim == 1 else 1]
    if weight is not None and (not isinstance(weight, Tensor) or weight.shape != (c,)):
        raise ValueError(f"{name}: weight must be a Tensor of shape ({c},), got "
                         f"{getattr(weight, 'shape', type(weight).__name__)}")
    if weight is not None and (weight.dtype != input.dtype or weight.device != input.device):
        raise TypeError(f"{name}: weight is {weight.dtype} on {weight.device}, input {input.dtype} on {input.device} "
                        "(they must match, as in torch)")
    t = target.data.reshape(-1)
    bad = ((t < 0) | (t >= c)) & (t != ignore_index)
    if bool(bad.any()):
        raise IndexError(f"{name}: target {int(t[bad][0])} is out of bounds for {c} classes")
    return t


def _to_rows(x):
    """(N, C, *) or (C,) -> (M, C) with classes last (a view when there are no spatial dims)."""
    if x.ndim == 1:
        return x.reshape(1, -1)
    return _xp(x).moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _from_rows(g, shape):
    """Inverse of _to_rows for a gradient of the input's shape."""
    if len(shape) == 1:
        return g.reshape(shape)
    moved = (shape[0],) + tuple(shape[2:]) + (shape[1],)
    return _xp(g).ascontiguousarray(_xp(g).moveaxis(g.reshape(moved), -1, 1))


def _row_weights(t, valid, weight, dtype):
    """w_t per row (0 for ignored rows)."""
    xp = _xp(t)
    if weight is None:
        return valid.astype(dtype)
    return weight[xp.where(valid, t, 0)] * valid


def _reduce_rows(loss, w_t, reduction, target_shape):
    """Reduce per-row losses; returns (value, per-row scale that the backward multiplies by)."""
    if reduction == "none":
        return loss.reshape(target_shape), None
    if reduction == "sum":
        return loss.sum(), 1
    return loss.sum() / w_t.sum(), 1 / w_t.sum()


def _row_grad_scale(g, scale, reduction):
    """d(reduced loss)/d(loss_i) times the upstream gradient, shaped (M, 1)."""
    if reduction == "none":
        return g.reshape(-1, 1)
    return (g * scale).reshape(1, 1)


def _kernel_logits(x):
    """The logits as the kernels take them: (N, C, d1, ...) as they are (classes in dim 1), (C,) as (1, C)."""
    return x.reshape(1, -1) if x.ndim == 1 else x


class FusedCrossEntropy(Function):
    """cross_entropy on the C++ kernels (segmentation maps in place, no transposition): saves the
    logits and one lse per row."""

    @staticmethod
    def forward(ctx, x, weight, t, ignore_index, label_smoothing, reduction):
        loss, lse = kernels.cross_entropy_forward(_kernel_logits(x), t, weight, ignore_index, label_smoothing)
        valid = t != ignore_index
        w_t = valid.sum(dtype=x.dtype) if weight is None else _row_weights(t, valid, weight, x.dtype).sum()
        value, scale = _reduce_rows(loss, w_t, reduction, () if x.ndim == 1 else (x.shape[0],) + x.shape[2:])
        ctx.save_for_backward(x, t, lse, weight)
        ctx.meta = (ignore_index, label_smoothing, reduction, scale)
        return value

    @staticmethod
    def backward(ctx, g):
        x, t, lse, weight = ctx.saved_tensors
        ignore_index, eps, reduction, scale = ctx.meta
        g = np.asarray(g, dtype=x.dtype)
        rows, k = (g.reshape(-1), 1.0) if reduction == "none" else (None, float(g) * scale)
        grad = kernels.cross_entropy_backward(_kernel_logits(x), t, lse, weight, ignore_index, eps, rows, k)
        return grad.reshape(x.shape), None, None, None, None, None


class CrossEntropy(Function):
    @staticmethod
    def forward(ctx, x, weight, t, ignore_index, label_smoothing, reduction):
        xp = _xp(x)
        z = _to_rows(x)
        c = z.shape[1]
        lp = _log_softmax(z, 1)
        valid = t != ignore_index
        t_safe = xp.where(valid, t, 0)
        w_t = _row_weights(t, valid, weight, x.dtype)
        picked = xp.take_along_axis(lp, t_safe[:, None], 1)[:, 0]
        loss = (1 - label_smoothing) * w_t * -picked
        if label_smoothing > 0:
            smooth = -(lp.sum(axis=1) if weight is None else lp @ weight)
            loss = loss + (label_smoothing / c) * smooth * valid
        value, scale = _reduce_rows(loss, w_t, reduction, () if x.ndim == 1 else (x.shape[0],) + x.shape[2:])
        ctx.save_for_backward(lp, t_safe, valid, w_t, weight)
        ctx.meta = (x.shape, label_smoothing, reduction, scale)
        return value

    @staticmethod
    def backward(ctx, g):
        lp, t_safe, valid, w_t, weight = ctx.saved_tensors
        xp = _xp(lp)
        g = xp.asarray(g)  # 0-d gradients can arrive as numpy scalars
        shape, eps, reduction, scale = ctx.meta
        c = lp.shape[1]
        k = _row_grad_scale(g, scale, reduction)  # (M, 1) or (1, 1)
        hard = (1 - eps) * w_t[:, None] * k  # coefficient of (p - onehot)
        soft = (eps / c) * valid[:, None].astype(lp.dtype) * k  # coefficient of (W p - w)
        total_w = c if weight is None else weight.sum()
        grad = xp.exp(lp)
        grad *= hard + soft * total_w
        rows = xp.arange(lp.shape[0])
        grad[rows, t_safe] -= hard[:, 0]
        grad -= soft if weight is None else soft * weight
        return _from_rows(grad.astype(lp.dtype, copy=False), shape), None, None, None, None, None


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):  # noqa: A002
    """Softmax cross-entropy from raw scores, fused with log-softmax.

    input: (N, C), (N, C, d1, ...) or (C,) scores; target: int (N,), (N, d1, ...) or () class indices;
    weight: (C,) class weights or None; ignore_index: target value that contributes nothing;
    reduction: "mean" | "sum" | "none" (per-element losses of target's shape);
    label_smoothing in [0, 1]: mix the one-hot target with the uniform distribution."""
    _check_reduction("cross_entropy", reduction)
    if not 0.0 <= float_arg("cross_entropy", "label_smoothing", label_smoothing) <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    t = _class_rows("cross_entropy", input, target, weight, ignore_index)
    fused = input.device == "cpu" and input.dtype.itemsize in (4, 8) and input.numel() > 0
    op = FusedCrossEntropy if fused else CrossEntropy
    return op.apply(input, weight, t, ignore_index, float(label_smoothing), reduction)


class NLLLoss(Function):
    @staticmethod
    def forward(ctx, x, weight, t, ignore_index, reduction):
        xp = _xp(x)
        lp = _to_rows(x)
        valid = t != ignore_index
        t_safe = xp.where(valid, t, 0)
        w_t = _row_weights(t, valid, weight, x.dtype)
        loss = -w_t * xp.take_along_axis(lp, t_safe[:, None], 1)[:, 0]
        value, scale = _reduce_rows(loss, w_t, reduction, () if x.ndim == 1 else (x.shape[0],) + x.shape[2:])
        ctx.save_for_backward(t_safe, w_t)
        ctx.meta = (x.shape, lp.shape, reduction, scale)
        return value

    @staticmethod
    def backward(ctx, g):
        t_safe, w_t = ctx.saved_tensors
        shape, rows_shape, reduction, scale = ctx.meta
        xp = _xp(w_t)
        g = xp.asarray(g)  # 0-d gradients can arrive as numpy scalars
        grad = xp.zeros(rows_shape, dtype=w_t.dtype)
        k = _row_grad_scale(g, scale, reduction)[:, 0]
        grad[xp.arange(rows_shape[0]), t_safe] = -w_t * k
        return _from_rows(grad, shape), None, None, None, None


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):  # noqa: A002
    """Negative log-likelihood of class indices given log-probabilities ``input`` (shapes as cross_entropy)."""
    _check_reduction("nll_loss", reduction)
    t = _class_rows("nll_loss", input, target, weight, ignore_index)
    return NLLLoss.apply(input, weight, t, ignore_index, reduction)


# ---- pointwise losses --------------------------------------------------------------------------


class PointwiseLoss(Function):
    """reduce(f(input, target)) for an elementwise f. ``pointwise(x, y, need_dy)`` returns the
    elementwise loss and its derivatives d/dx and d/dy (None when not needed), all from one pass."""

    @staticmethod
    def forward(ctx, x, y, reduction, pointwise):
        loss, dx, dy = pointwise(x, y, ctx.needs_input_grad[1])
        ctx.save_for_backward(dx, dy)
        ctx.reduction = reduction
        if reduction == "none":
            return loss
        return loss.sum() if reduction == "sum" else loss.mean()

    @staticmethod
    def backward(ctx, g):
        dx, dy = ctx.saved_tensors
        scale = g if ctx.reduction != "mean" else g / dx.size
        return dx * scale, None if dy is None else dy * scale, None, None


def _pointwise(name, input, target, reduction, pointwise):  # noqa: A002
    _check_reduction(name, reduction)
    for arg, t in (("input", input), ("target", target)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: {arg} must be a Tensor, got {type(t).__name__}")
        if t.dtype.kind != "f":
            raise TypeError(f"{name}: {arg} must be floating point, got {t.dtype}")
    if input.shape != target.shape:
        raise ValueError(f"{name}: input has shape {input.shape} but target has shape {target.shape} "
                         "(they must match)")
    if input.dtype != target.dtype:
        raise TypeError(f"{name}: input and target must have the same dtype, got {input.dtype} and {target.dtype}")
    return PointwiseLoss.apply(input, target, reduction, pointwise)


def _mse(x, y, need_dy):
    d = x - y
    return d * d, 2 * d, -2 * d if need_dy else None


def mse_loss(input, target, reduction="mean"):  # noqa: A002
    """Squared error (input - target)^2, reduced; input and target of one shape."""
    return _pointwise("mse_loss", input, target, reduction, _mse)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):  # noqa: A002
    """Huber-like loss: 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target)."""
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise TypeError(f"smooth_l1_loss: beta must be a number, got {beta!r}")
    if not beta >= 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")

    def smooth_l1(x, y, need_dy):
        xp = _xp(x)
        d = x - y
        ad = xp.abs(d)
        small = ad < beta
        loss = xp.where(small, 0.5 * d * d / beta if beta > 0 else 0 * d, ad - 0.5 * beta)
        dx = xp.where(small, d / beta if beta > 0 else 0 * d, xp.sign(d)).astype(x.dtype, copy=False)
        return loss.astype(x.dtype, copy=False), dx, -dx if need_dy else None

    return _pointwise("smooth_l1_loss", input, target, reduction, smooth_l1)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):  # noqa: A002
    """Sigmoid + binary cross-entropy in one stable formula (x = input, y = target in [0, 1]):
        loss = (1 - y) x + (1 + (pos_weight - 1) y) * softplus(-x),   softplus(-x) = log1p(exp(-|x|)) + max(-x, 0)
    times ``weight`` (broadcast to input). pos_weight (C,) weighs positives per class (last dim)."""
    extra = []
    for arg, t in (("weight", weight), ("pos_weight", pos_weight)):
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"binary_cross_entropy_with_logits: {arg} must be a Tensor, got {type(t).__name__}")
        if t is not None:
            try:
                np.broadcast_shapes(tuple(t.shape), tuple(input.shape))
            except ValueError:
                raise ValueError(f"binary_cross_entropy_with_logits: {arg} of shape {tuple(t.shape)} does not "
                                 f"broadcast to the input's shape {tuple(input.shape)}") from None
        extra.append(None if t is None else t.data)
    w, pw = extra

    def bce(x, y, need_dy):
        xp = _xp(x)
        softplus_neg = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)
        e = xp.exp(-xp.abs(x))
        sig = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))  # sigmoid(x) without overflow
        if pw is None:
            loss = (1 - y) * x + softplus_neg
            dx = sig - y
            dy = -x if need_dy else None
        else:
            log_weight = 1 + (pw - 1) * y
            loss = (1 - y) * x + log_weight * softplus_neg
            dx = (1 - y) - log_weight * (1 - sig)
            dy = -x + (pw - 1) * softplus_neg if need_dy else None
        if w is not None:
            loss, dx = loss * w, dx * w
            dy = None if dy is None else dy * w
        cast = lambda a: None if a is None else xp.broadcast_to(a, x.shape).astype(x.dtype)  # noqa: E731
        return cast(loss), cast(dx), cast(dy)

    return _pointwise("binary_cross_entropy_with_logits", input, target, reduction, bce)
