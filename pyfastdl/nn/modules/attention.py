"""MultiheadAttention (Vaswani et al., 2017) with torch's parameters and call signature.

    q, k, v = query W_q^T + b_q, key W_k^T + b_k, value W_v^T + b_v     (rows of in_proj_weight)
    head_h  = softmax(q_h k_h^T / sqrt(head_dim) + mask) v_h            for each of num_heads heads
    out     = concat(head_1..head_H) W_o^T + b_o                        (out_proj)

The attention itself runs in ``F.scaled_dot_product_attention`` (the fused kernel) unless the
attention weights are wanted (need_weights=True, torch's default) or attention dropout is active;
then it is computed explicitly with softmax and matrix products so the weights can be returned.
Not supported (NotImplementedError): kdim/vdim different from embed_dim, add_bias_kv, add_zero_attn.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ... import backend
from ...tensor import Tensor
from .. import functional as F
from ..functional.attention import split_heads
from .. import init
from . import _factory
from .linear import Linear
from .module import Module

__all__ = ["MultiheadAttention"]


def _additive(mask, dtype, what):
    """A bool mask (True = may not attend) or a float mask (added to the scores) as a float array."""
    arr = mask.data if isinstance(mask, Tensor) else mask
    if arr.dtype == np.bool_:
        xp = backend.get_array_module(arr)
        return xp.where(arr, xp.asarray(-np.inf, dtype=dtype), xp.asarray(0, dtype=dtype))
    if arr.dtype.kind != "f":
        raise TypeError(f"MultiheadAttention: {what} must be bool or floating point, got {arr.dtype}")
    return arr.astype(dtype, copy=False)


class MultiheadAttention(Module):
    """Parameters: in_proj_weight (3E, E) (xavier uniform), in_proj_bias (3E,) (zeros), out_proj (Linear E->E,
    bias zeros). Inputs (L, N, E) or, with batch_first, (N, L, E); unbatched (L, E) also works."""

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, device=None, dtype=None):
        super().__init__()
        embed_dim = _factory.size(self, "embed_dim", embed_dim, 1)
        num_heads = _factory.size(self, "num_heads", num_heads, 1)
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        if (kdim not in (None, embed_dim)) or (vdim not in (None, embed_dim)) or add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: kdim/vdim other than embed_dim, add_bias_kv and "
                                      "add_zero_attn are not supported")
        self.embed_dim = embed_dim
        self.kdim = self.vdim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be a number in [0, 1], got {dropout!r}")
        self.dropout = dropout
        self.batch_first = batch_first
        self.in_proj_weight = _factory.parameter(self, (3 * embed_dim, embed_dim), device, dtype)
        self.register_parameter("in_proj_bias",
                                _factory.parameter(self, (3 * embed_dim,), device, dtype) if bias else None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self):
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _project(self, query, key, value, self_attention):
        """q, k, v (N, H, L or S, head_dim) from batch-first inputs: one matrix product for the three
        in self-attention, for keys and values when key is value (cross-attention), each split into
        heads in one copy."""
        e, w, b, h = self.embed_dim, self.in_proj_weight, self.in_proj_bias, self.num_heads

        def project(x, first, parts):  # x times rows [first * e, (first + parts) * e) of the weight
            rows = slice(first * e, (first + parts) * e)
            wr, br = (w, b) if parts == 3 else (w[rows], None if b is None else b[rows])
            return split_heads(F.linear(x, wr, br), parts, h)

        if self_attention:
            return project(query, 0, 3)
        (q,) = project(query, 0, 1)
        if key is value:
            return (q, *project(key, 1, 2))
        return q, *project(key, 1, 1), *project(value, 2, 1)

    def _mask(self, n, lq, ls, attn_mask, key_padding_mask, is_causal, dtype):
        """The additive mask (None when there is none), broadcastable to (N, H, L, S)."""
        mask = None
        if attn_mask is not None:
            m = _additive(attn_mask, dtype, "attn_mask")
            if m.shape == (lq, ls):
                m = m.reshape(1, 1, lq, ls)
            elif m.shape == (n * self.num_heads, lq, ls):
                m = m.reshape(n, self.num_heads, lq, ls)
            else:
                raise ValueError(f"MultiheadAttention: attn_mask has shape {tuple(m.shape)}; expected ({lq}, {ls}) or "
                                 f"({n * self.num_heads}, {lq}, {ls})")
            mask = m
        elif is_causal:
            xp = backend.get_array_module(self.in_proj_weight.data)
            mask = _additive(Tensor(xp.triu(xp.ones((lq, ls), dtype=bool), 1)), dtype, "causal").reshape(1, 1, lq, ls)
        if key_padding_mask is not None:
            kp = _additive(key_padding_mask, dtype, "key_padding_mask")
            if kp.shape != (n, ls):
                raise ValueError(f"MultiheadAttention: key_padding_mask has shape {tuple(kp.shape)}; "
                                 f"expected ({n}, {ls})")
            kp = kp.reshape(n, 1, 1, ls)
            mask = kp if mask is None else mask + kp
        return mask

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        """Returns (output like query, weights (N, L, S) averaged over heads, (N, H, L, S) if not
        average_attn_weights, or None when need_weights=False)."""
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise TypeError(f"MultiheadAttention: {name} must be a Tensor, got {type(t).__name__}")
            if t.ndim not in (2, 3):
                raise ValueError(f"MultiheadAttention: {name} must be 3-D (batched) or 2-D (unbatched), got "
                                 f"shape {tuple(t.shape)}")
        if not query.ndim == key.ndim == value.ndim:
            raise ValueError(f"MultiheadAttention: query, key and value must all be batched (3-D) or all "
                             f"unbatched (2-D), got shapes {tuple(query.shape)}, {tuple(key.shape)}, "
                             f"{tuple(value.shape)}")
        batched = query.ndim == 3
        self_attention = query is key and key is value
        if not batched:
            query, key, value = (t.unsqueeze(0) for t in (query, key, value))
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.reshape(1, -1)
        elif not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        if query.shape[-1] != self.embed_dim or key.shape != value.shape or key.shape[0] != query.shape[0]:
            raise ValueError(f"MultiheadAttention: query {query.shape}, key {key.shape}, value {value.shape} do not "
                             f"fit embed_dim {self.embed_dim} (batch-first shapes shown)")
        n, lq, ls = query.shape[0], query.shape[1], key.shape[1]
        q, k, v = self._project(query, key, value, self_attention)
        mask = self._mask(n, lq, ls, attn_mask, key_padding_mask, is_causal, q.dtype)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights or dropout > 0:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
            if mask is not None:
                scores = scores + Tensor(mask)
            attn = F.softmax(scores, dim=-1)
            out = F.dropout(attn, dropout, True) @ v
            if need_weights:
                weights = attn.mean(dim=1) if average_attn_weights else attn
        else:
            causal_only = is_causal and attn_mask is None and key_padding_mask is None
            kernel_mask = None if causal_only or mask is None else Tensor(mask)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=kernel_mask, is_causal=causal_only)
        out = self.out_proj(out.permute(0, 2, 1, 3).reshape(n, lq, self.embed_dim))
        if not batched:
            return out.squeeze(0), None if weights is None else weights.squeeze(0)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights
