"""Embedding lookup (a gather forward, a scatter-add backward) and one-hot encoding."""

from __future__ import annotations

import numpy as np

from ... import backend
from ...autograd import Function
from ...kernels._dispatch import int_arg
from ...tensor import Tensor

__all__ = ["embedding", "one_hot"]


def _indices(name, t, arg):
    """The array of the integer index tensor ``arg`` (TypeError for anything else)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: {arg} (the indices) must be a Tensor, got {type(t).__name__}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: {arg} (the indices) must have an integer dtype (int64), got {t.dtype}")
    return t.data


def _check_range(name, idx, n, arg):
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise IndexError(f"{name}: index out of range: {arg} spans [{int(idx.min())}, {int(idx.max())}] but the "
                         f"table has {n} rows")


class Embedding(Function):
    @staticmethod
    def forward(ctx, weight, idx, padding_idx):
        ctx.save_for_backward(idx)
        ctx.meta = (weight.shape, padding_idx)
        return weight[idx]

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        shape, padding_idx = ctx.meta
        gw = backend.get_array_module(idx).zeros(shape, dtype=g.dtype)
        backend.scatter_add(gw, idx.reshape(-1), g.reshape(-1, shape[1]))  # repeated rows accumulate
        if padding_idx is not None:
            gw[padding_idx] = 0
        return gw, None, None


def embedding(input, weight, padding_idx=None):  # noqa: A002 (torch's argument name)
    """Rows of ``weight`` (num_embeddings, embedding_dim) picked by integer ``input`` (*) -> (*, embedding_dim).
    The row ``padding_idx`` gets no gradient."""
    idx = _indices("embedding", input, "input")
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise ValueError("embedding: weight must be a 2-D Tensor (num_embeddings, embedding_dim)")
    if input.device != weight.device:
        raise RuntimeError(f"embedding: indices are on {input.device}, weight on {weight.device}")
    _check_range("embedding", idx, weight.shape[0], "input")
    if padding_idx is not None:
        if not -weight.shape[0] <= int_arg("embedding", "padding_idx", padding_idx) < weight.shape[0]:
            raise ValueError(f"embedding: padding_idx {padding_idx} is out of range for {weight.shape[0]} rows")
        padding_idx %= weight.shape[0]
    return Embedding.apply(weight, idx, padding_idx)


def one_hot(tensor, num_classes=-1):
    """int64 tensor (*, num_classes) with a 1 at each index of integer ``tensor`` (*); no gradient.
    num_classes=-1 means one more than the largest index."""
    idx = _indices("one_hot", tensor, "tensor")
    xp = backend.get_array_module(idx)
    if int_arg("one_hot", "num_classes", num_classes) == -1:
        num_classes = int(idx.max()) + 1 if idx.size else 0
    _check_range("one_hot", idx, num_classes, "tensor")
    shape = backend.check_size("one_hot", "the output (tensor's shape, num_classes)", idx.shape + (num_classes,),
                               np.int64)
    try:
        return Tensor((idx[..., None] == xp.arange(num_classes)).astype(xp.int64))
    except MemoryError:
        raise backend.out_of_memory("one_hot", "the output", shape, np.int64) from None
