"""Scaled dot-product attention with autograd (torch.nn.functional's name and arguments)."""

from __future__ import annotations

from ... import backend, kernels
from ...autograd import Function

__all__ = ["scaled_dot_product_attention"]


class ScaledDotProductAttention(Function):
    """out = softmax(scale * q k^T + mask) v; the backward recomputes the probabilities blockwise
    from q, k and the forward's per-row log-sum-exp (no L x S matrix is kept)."""

    @staticmethod
    def forward(ctx, query, key, value, attn_mask, is_causal, scale):
        out, lse = kernels.sdpa_forward(query, key, value, attn_mask, is_causal, scale)
        ctx.save_for_backward(query, key, value, out)
        ctx.lse, ctx.attn_mask, ctx.is_causal, ctx.scale = lse, attn_mask, is_causal, scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, out = ctx.saved_tensors
        grads = kernels.sdpa_backward(
            query, key, value, out, ctx.lse, grad_out, ctx.attn_mask, ctx.is_causal, ctx.scale
        )
        return (*grads, None, None, None)


def scaled_dot_product_attention(query, key, value, attn_mask=None, *, is_causal=False, scale=None):
    """softmax(scale * query key^T + attn_mask) value, like torch's (without dropout).

    query (B, H, L, E) or (N, L, E); key (B, H, S, E); value (B, H, S, Ev) -> (B, H, L, Ev).
    attn_mask broadcastable to (B, H, L, S): bool (True = takes part in attention) or an additive
    float mask of the query's dtype; it receives no gradient (an additive mask is treated as a
    constant even if it requires grad). is_causal: key j visible to query i iff j <= i (top-left
    aligned, also for L != S); it cannot be combined with attn_mask. scale defaults to 1/sqrt(E).
    A query that sees no key outputs zeros and passes no gradient (torch's CPU behaviour).
    Memory is O(seq * dim): the L x S attention matrix is never stored, not even for the backward.
    """
    return ScaledDotProductAttention.apply(query, key, value, attn_mask, is_causal, scale)


class SplitHeads(Function):
    """x (N, L, parts * H * D) -> ``parts`` views (N, H, L, D) of x: the queries, keys and values of
    multi-head attention cut from one projection without a copy (the CPU attention kernels read a
    head's rows in place, L rows H * D * parts apart; other consumers copy only if they need to).
    The backward gathers the parts' gradients into one array of x's shape (one copy)."""

    @staticmethod
    def forward(ctx, x, parts, heads):
        n, length, width = x.shape
        ctx.shape = x.shape
        return tuple(x.reshape(n, length, parts, heads, width // (parts * heads)).transpose(2, 0, 3, 1, 4))

    @staticmethod
    def backward(ctx, *grads):
        n, length, width = ctx.shape
        g = backend.get_array_module(grads[0]).empty((n, length, len(grads)) + grads[0].shape[1:2] + grads[0].shape[3:],
                                                   dtype=grads[0].dtype)
        for i, gi in enumerate(grads):
            g[:, :, i] = gi.transpose(0, 2, 1, 3)
        return g.reshape(ctx.shape), None, None


def split_heads(x, parts, heads):
    """(N, L, parts * heads * D) -> a tuple of ``parts`` Tensors (N, heads, L, D) (not a torch function:
    nn.MultiheadAttention's projection split into heads)."""
    if x.ndim != 3 or x.shape[2] % (parts * heads):
        raise ValueError(f"split_heads: expected (N, L, {parts} * {heads} * head_dim), got shape {tuple(x.shape)}")
    return SplitHeads.apply(x, parts, heads)
