"""float64 numpy reference for scaled dot-product attention: the explicit L x S score matrix and
softmax, written for clarity (never the code under test).

Shapes: q (..., L, E), k (..., S, E), v (..., S, Ev), mask broadcastable to (..., L, S)
(bool: True = takes part; float: added to the scores). A row with no visible key gives 0 and
zero gradients (torch's CPU behaviour).
"""

import numpy as np


def visible_and_bias(L, S, mask, is_causal):
    """(visible bool (..., L, S), additive bias (..., L, S)) for the mask options."""
    visible = np.ones((L, S), dtype=bool)
    bias = np.zeros((L, S))
    if is_causal:
        visible = np.tril(visible)  # top-left aligned: key j visible to query i iff j <= i
    if mask is not None:
        if mask.dtype == bool:
            visible = visible & mask
        else:
            bias = bias + mask.astype(np.float64)
            visible = visible & np.isfinite(bias)
    return visible, np.where(visible, bias, 0.0)


def probabilities(q, k, mask=None, is_causal=False, scale=None):
    """softmax(scale * q k^T + mask) over keys, rows with no visible key all zero."""
    q, k = q.astype(np.float64), k.astype(np.float64)
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    L, S = q.shape[-2], k.shape[-2]
    visible, bias = visible_and_bias(L, S, mask, is_causal)
    scores = scale * np.einsum("...le,...se->...ls", q, k) + bias
    scores = np.where(visible, scores, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    e = np.where(visible, np.exp(scores - row_max), 0.0)
    total = e.sum(axis=-1, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0)


def sdpa(q, k, v, mask=None, is_causal=False, scale=None):
    """out (..., L, Ev) = P v."""
    return probabilities(q, k, mask, is_causal, scale) @ v.astype(np.float64)


def logsumexp(q, k, mask=None, is_causal=False, scale=None):
    """(..., L): log sum_j exp(scale q.k_j + mask); +inf for rows with no visible key."""
    q, k = q.astype(np.float64), k.astype(np.float64)
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    visible, bias = visible_and_bias(q.shape[-2], k.shape[-2], mask, is_causal)
    scores = np.where(visible, scale * np.einsum("...le,...se->...ls", q, k) + bias, -np.inf)
    with np.errstate(divide="ignore"):
        lse = np.log(np.exp(scores).sum(axis=-1))
    return np.where(np.isneginf(lse), np.inf, lse)


def sdpa_backward(q, k, v, grad_out, mask=None, is_causal=False, scale=None):
    """(grad_q, grad_k, grad_v) by the chain rule through the explicit softmax."""
    q, k, v, g = (x.astype(np.float64) for x in (q, k, v, grad_out))
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    p = probabilities(q, k, mask, is_causal, scale)
    grad_v = np.swapaxes(p, -1, -2) @ g
    grad_p = g @ np.swapaxes(v, -1, -2)
    grad_scores = p * (grad_p - (p * grad_p).sum(axis=-1, keepdims=True))
    grad_q = scale * grad_scores @ k
    grad_k = scale * np.swapaxes(grad_scores, -1, -2) @ q
    return grad_q, grad_k, grad_v
