"""Batch normalisation (Ioffe & Szegedy, 2015) and layer normalisation (Ba et al., 2016), each a
fused Function: statistics, normalisation and affine map in one forward, and the closed-form
backward beside it (three reductions, one elementwise pass; no graph of small ops).

With x_hat = (x - mean) * invstd over the n values that share one statistic and g' = g * weight:
    d bias   = sum(g)            d weight = sum(g * x_hat)
    d x      = invstd * (g' - mean(g') - x_hat * mean(g' * x_hat))     (statistics from the batch)
    d x      = invstd * g'                                              (fixed running statistics)

On the CPU (float32/float64) both run as the C++ kernels of :mod:`pyfastdl.kernels.norm`: one pass
that writes y, and a backward from the saved input and two statistics per group (nothing else of
the input's size is kept). On the GPU, and for synchronised batch norm, they are the array code below.

Synchronised batch norm (data parallel training) takes the statistics over the batches of all
ranks: the forward all-reduces the per-channel sum and count (for the mean) and then the sum of
squared deviations (for the variance: two passes, as in one process, so the results agree to
rounding); the backward all-reduces sum(g') and sum(g' * x_hat), the two reductions of d x above.
"""

from __future__ import annotations

import math

from ... import backend, kernels
from ...autograd import Function
from ...kernels._dispatch import float_arg, int_arg
from ...tensor import Tensor

__all__ = ["batch_norm", "layer_norm"]


def _xp(a):
    return backend.get_array_module(a)


def _all_reduce_sum(*arrays):
    """The sums over all ranks of ``arrays``, each in its own dtype: one collective, in float64."""
    from ... import distributed

    xp = _xp(arrays[0])
    flat = xp.concatenate([a.astype(xp.float64).ravel() for a in arrays])
    distributed.all_reduce(Tensor(flat))
    sums, start = [], 0
    for a in arrays:
        sums.append(flat[start:start + a.size].reshape(a.shape).astype(a.dtype))
        start += a.size
    return sums


def _normalize_backward(g, x_hat, invstd, weight, axes, n, synced=False):
    """d x for x_hat = (x - mean(x)) * invstd with the statistics taken over ``axes`` (n values;
    ``synced``: over the batches of all ranks). Works in place on one fresh array (these ops are
    memory-bound: every temporary costs a pass)."""
    gw = g.copy() if weight is None else g * weight
    tmp = gw * x_hat
    sum_g, sum_gx = gw.sum(axis=axes, keepdims=True), tmp.sum(axis=axes, keepdims=True)
    if synced:
        sum_g, sum_gx = _all_reduce_sum(sum_g, sum_gx)
    mean_g, mean_gx = sum_g / n, sum_gx / n
    gw -= mean_g
    gw -= backend.get_array_module(tmp).multiply(x_hat, mean_gx, out=tmp)
    gw *= invstd
    return gw


def _on_cpu_kernels(x, *arrays):
    """True when the C++ kernels serve this call: numpy input of float32/64, the other arrays alike."""
    return (backend.device_of(x) == "cpu" and x.dtype.kind == "f" and x.dtype.itemsize in (4, 8)
            and all(a is None or a.dtype == x.dtype for a in arrays))


class FusedBatchNorm(Function):
    """Batch norm on the C++ kernels: saves the input and the (C,) statistics."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
        y, mean, invstd = kernels.batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum,
                                                     eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.training = training
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, mean, invstd = ctx.saved_tensors
        mask = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2])
        gx, gw, gb = kernels.batch_norm_backward(g, x, weight, mean, invstd, ctx.training, mask)
        return gx, gw, gb, None, None, None, None, None


class BatchNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps, synced=False):
        xp = _xp(x)
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        n = x.size // x.shape[1]
        synced = synced and training
        if synced:
            total, count = _all_reduce_sum(x.sum(axis=axes), xp.asarray([n]))
            n = int(count[0])
            mean = total / n
            centered = x - mean.reshape(shape)
            (var,) = _all_reduce_sum((centered * centered).sum(axis=axes))
            var /= n
        elif training:
            mean = x.mean(axis=axes)
            centered = x - mean.reshape(shape)
            var = (centered * centered).mean(axis=axes)
        if training:
            if running_mean is not None:
                running_mean *= 1 - momentum
                running_mean += momentum * mean
            if running_var is not None:
                running_var *= 1 - momentum
                running_var += (momentum * n / (n - 1)) * var
        else:
            centered = x - running_mean.reshape(shape)
            var = running_var
        invstd = (1 / xp.sqrt(var + eps)).reshape(shape)
        x_hat = centered
        x_hat *= invstd  # in place: centered is a fresh array
        y = x_hat if weight is None else x_hat * weight.reshape(shape)
        if bias is not None:
            y = y + bias.reshape(shape) if y is x_hat else xp.add(y, bias.reshape(shape), out=y)
        ctx.save_for_backward(x_hat, invstd, weight)
        ctx.meta = (axes, shape, n, training, synced)
        return y

    @staticmethod
    def backward(ctx, g):
        x_hat, invstd, weight = ctx.saved_tensors
        axes, shape, n, training, synced = ctx.meta
        w = None if weight is None else weight.reshape(shape)
        gx = None
        if ctx.needs_input_grad[0]:
            if training:
                gx = _normalize_backward(g, x_hat, invstd, w, axes, n, synced)
            else:
                gx = g * invstd if w is None else g * (w * invstd)
        gw = (g * x_hat).sum(axis=axes) if ctx.needs_input_grad[1] else None
        gb = g.sum(axis=axes) if ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None, None, None, None, None


def _data(t):
    return None if t is None else t.data


def _check_optional_tensors(op, **tensors):
    for name, t in tensors.items():
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor or None, got {type(t).__name__}")


def _check_hyperparameters(op, **values):
    """momentum and eps: finite numbers, eps >= 0 (torch would compute NaN statistics from NaN)."""
    for name, v in values.items():
        float_arg(op, name, v)
        if not math.isfinite(v) or (name == "eps" and v < 0):
            raise ValueError(f"{op}: {name} must be a finite number{' >= 0' if name == 'eps' else ''}, got {v}")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,  # noqa: A002
               eps=1e-5, *, synced=False):
    """Normalise each channel (dim 1) of input (N, C, *) over the batch and spatial positions.

    training=True: use the batch's statistics and update running_mean/running_var (C,) in place
    (running = (1 - momentum) * running + momentum * batch, the variance unbiased); otherwise use
    the running statistics. weight, bias: (C,) or None. ``synced`` (pyfastdl's addition, used by
    :class:`pyfastdl.nn.SyncBatchNorm`): when training, the statistics span the batches of all
    ranks of the process group (:mod:`pyfastdl.distributed`); every rank must make the same calls."""
    if not isinstance(input, Tensor):
        raise TypeError(f"batch_norm: input must be a Tensor, got {type(input).__name__}")
    if input.ndim < 2:
        raise ValueError(f"batch_norm: input must be (N, C, *), got shape {input.shape}")
    c = input.shape[1]
    _check_optional_tensors("batch_norm", running_mean=running_mean, running_var=running_var, weight=weight,
                            bias=bias)
    _check_hyperparameters("batch_norm", momentum=momentum, eps=eps)
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and t.shape != (c,):
            raise ValueError(f"batch_norm: {name} has shape {t.shape}, expected ({c},) for input {input.shape}")
    if training and input.numel() // max(c, 1) <= 1 and not synced:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input size "
                         f"{input.shape}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: running_mean and running_var are required when training=False")
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and (t.device != input.device or t.dtype != input.dtype):
            raise TypeError(f"batch_norm: {name} is {t.dtype} on {t.device}; input is {input.dtype} on {input.device}")
    arrays = (input.data, _data(weight), _data(bias), _data(running_mean), _data(running_var))
    if not (synced and training) and _on_cpu_kernels(*arrays):
        out = FusedBatchNorm.apply(input, weight, bias, _data(running_mean), _data(running_var), training, momentum,
                                   eps)
    else:
        out = BatchNorm.apply(input, weight, bias, _data(running_mean), _data(running_var), training, momentum, eps,
                              synced)
    for t in (running_mean, running_var):
        if training and t is not None:
            t._version += 1  # updated in place
    return out


class FusedLayerNorm(Function):
    """Layer norm on the C++ kernels: saves the input and the per-row statistics."""

    @staticmethod
    def forward(ctx, x, weight, bias, k, eps):
        normalized_shape = x.shape[x.ndim - k:]
        y, mean, invstd = kernels.layer_norm_forward(x, normalized_shape, weight, bias, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.normalized_shape = normalized_shape
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, mean, invstd = ctx.saved_tensors
        mask = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2])
        gx, gw, gb = kernels.layer_norm_backward(g, x, ctx.normalized_shape, weight, mean, invstd, mask)
        return gx, gw, gb, None, None


class LayerNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, k, eps):
        xp = _xp(x)
        axes = tuple(range(x.ndim - k, x.ndim))
        centered = x - x.mean(axis=axes, keepdims=True)
        invstd = 1 / xp.sqrt((centered * centered).mean(axis=axes, keepdims=True) + eps)
        x_hat = centered
        x_hat *= invstd  # in place: centered is a fresh array
        y = x_hat if weight is None else x_hat * weight
        if bias is not None:
            y = y + bias if y is x_hat else xp.add(y, bias, out=y)
        ctx.save_for_backward(x_hat, invstd, weight)
        ctx.axes = axes
        return y

    @staticmethod
    def backward(ctx, g):
        x_hat, invstd, weight = ctx.saved_tensors
        axes = ctx.axes
        lead = tuple(range(g.ndim - len(axes)))
        n = math.prod(g.shape[a] for a in axes)
        gx = _normalize_backward(g, x_hat, invstd, weight, axes, n) if ctx.needs_input_grad[0] else None
        gw = (g * x_hat).sum(axis=lead) if ctx.needs_input_grad[1] else None
        gb = g.sum(axis=lead) if ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):  # noqa: A002
    """Normalise over the last ``len(normalized_shape)`` dimensions of input (*, *normalized_shape);
    weight and bias have shape ``normalized_shape`` (or are None)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"layer_norm: input must be a Tensor, got {type(input).__name__}")
    dims = normalized_shape if isinstance(normalized_shape, (tuple, list)) else (normalized_shape,)
    normalized_shape = tuple(int_arg("layer_norm", "normalized_shape", d) for d in dims)
    _check_optional_tensors("layer_norm", weight=weight, bias=bias)
    _check_hyperparameters("layer_norm", eps=eps)
    k = len(normalized_shape)
    if k == 0 or input.shape[input.ndim - k:] != normalized_shape or input.ndim < k:
        raise ValueError(f"layer_norm: input of shape {input.shape} does not end with normalized_shape "
                         f"{normalized_shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != normalized_shape:
            raise ValueError(f"layer_norm: {name} has shape {t.shape}, expected {normalized_shape}")
    op = FusedLayerNorm if _on_cpu_kernels(input.data, _data(weight), _data(bias)) else LayerNorm
    return op.apply(input, weight, bias, k, eps)
