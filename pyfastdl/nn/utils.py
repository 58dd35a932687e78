"""Gradient utilities: clip_grad_norm_."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend
from ..tensor import Tensor

__all__ = ["clip_grad_norm_"]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together so their joint ``norm_type``-norm is at most ``max_norm``.

    The total norm is the norm of the per-parameter norms (inf: the largest absolute value);
    every gradient is multiplied by min(1, max_norm / (total + 1e-6)) in place, as torch does.
    Returns the total norm (before clipping) as a 0-d Tensor."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    if not hasattr(parameters, "__iter__"):
        raise TypeError(f"clip_grad_norm_: parameters must be a Tensor or an iterable of Tensors, got "
                        f"{type(parameters).__name__}")
    for name, value in (("max_norm", max_norm), ("norm_type", norm_type)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"clip_grad_norm_: {name} must be a number, got {type(value).__name__} {value!r}")
    if norm_type != norm_type:
        raise ValueError("clip_grad_norm_: norm_type must be a number (inf: the largest magnitude), got nan")
    grads = [p.grad.data for p in parameters if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return Tensor(backend.array_module("cpu").asarray(0.0, dtype="float32"))
    xp = backend.get_array_module(grads[0])
    if norm_type == math.inf:
        norms = [xp.abs(g).max() if g.size else xp.asarray(0, g.dtype) for g in grads]
        total = xp.max(xp.stack(norms))
    elif norm_type == 0:  # torch's 0-"norm" (count of non-zeros) of the per-parameter ones: the formula divides by 0
        total = sum(bool(xp.count_nonzero(g)) for g in grads)
    else:
        with np.errstate(divide="ignore"):  # (a negative order of a zero gradient: inf, as in torch)
            norms = [(xp.abs(g) ** norm_type).sum() ** (1.0 / norm_type) for g in grads]
            total = (xp.stack(norms) ** norm_type).sum() ** (1.0 / norm_type)
    total = xp.asarray(total, dtype=grads[0].dtype)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it "
                           "cannot be clipped. To disable this error and scale the gradients by the non-finite norm "
                           "anyway, set `error_if_nonfinite=False`")
    coef = xp.minimum(max_norm / (total + 1e-6), 1.0).astype(total.dtype)
    for g in grads:
        g *= coef
    return Tensor(total)
