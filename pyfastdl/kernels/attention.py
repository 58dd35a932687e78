"""Raw scaled dot-product attention kernels on numpy (CPU) or cupy (CUDA) arrays: no autograd.

    out, lse = sdpa_forward(query, key, value, attn_mask=None, is_causal=False, scale=None, *, variant="fast", out=None)
    grad_query, grad_key, grad_value = sdpa_backward(query, key, value, out, lse, grad_out, ..., *, variant, out)

Shapes (torch.nn.functional.scaled_dot_product_attention's): query (B, H, L, E), key (B, H, S, E),
value (B, H, S, Ev) -> out (B, H, L, Ev) and lse (B, H, L), the per-row log-sum-exp of the scores
the backward recomputes the probabilities from (q's dtype on the CPU, float32 on the GPU for every
input dtype: float32, float16, bfloat16). Rank-3 inputs (N, L, E) are treated as one head
each. ``attn_mask`` broadcasts to (B, H, L, S): bool (True = takes part in attention) or a float
array of the query's dtype added to the scores; it is read in place with broadcast strides, never
expanded. ``is_causal`` is the top-left aligned lower triangle (key j visible to query i iff j <= i)
and excludes ``attn_mask``. ``scale`` defaults to 1/sqrt(E). A query row that sees no key gives
out = 0 and lse = +inf (torch's CPU kernels give 0 too), and zero gradients.

Non-contiguous or read-only inputs are copied to contiguous arrays first (a zero-stride broadcast
mask, e.g. from numpy.broadcast_to, is first narrowed to its stored extent, so it is not expanded).

``variant="fast"`` (default) is the flash-attention-style kernel (FlashAttention-2: blocked online
softmax, the L x S score matrix never formed, O(seq * dim) memory); ``variant="reference"``
computes one query row at a time with a two-pass softmax. ``out=`` takes the outputs' arrays, a
tuple in the order returned ((out, lse) forward, (grad_query, grad_key, grad_value) backward), of
the shapes of rank-4 inputs (rank-3 inputs: of rank 3).
The AttentionArgs are cached (kernels._dispatch.cached): the backward, given the forward's
arguments, reuses the forward's.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from .._core import _C
from . import _dispatch

__all__ = ["sdpa_forward", "sdpa_backward"]

_attention_args = _dispatch.cached(_C.AttentionArgs)


def _narrow_broadcast(mask):
    """A view of ``mask`` with every zero-stride (broadcast) axis cut to length 1."""
    index = tuple(slice(0, 1) if st == 0 and n > 1 else slice(None) for n, st in zip(mask.shape, mask.strides))
    return mask[index]


def _as_4d(x, name):
    if not hasattr(x, "ndim"):
        raise TypeError(f"scaled_dot_product_attention: {name} must be a numpy or cupy array, got {type(x).__name__}")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise ValueError(
            f"scaled_dot_product_attention: {name} must have 3 or 4 dimensions (batch, [heads,] seq, dim), "
            f"got shape {tuple(x.shape)}"
        )
    return x


def _prepare(query, key, value, attn_mask, is_causal, scale):
    """(AttentionArgs, q, k, v, mask) as the compiled kernels want them (rank 4, contiguous)."""
    if not backend.is_array(query):
        raise TypeError("scaled_dot_product_attention: query must be a numpy or cupy array, got "
                        f"{type(query).__name__}")
    rank = getattr(query, "ndim", None)
    q, k, v = (_as_4d(x, n) for x, n in ((query, "query"), (key, "key"), (value, "value")))
    if not (getattr(key, "ndim", None) == getattr(value, "ndim", None) == rank):
        raise ValueError(
            f"scaled_dot_product_attention: query, key and value must have the same rank, got "
            f"{query.shape}, {key.shape}, {value.shape}"
        )
    q, k, v = (_dispatch.kernel_input(x) for x in (q, k, v))
    kind, mask = "none", None
    if attn_mask is not None:
        if not hasattr(attn_mask, "dtype"):
            raise TypeError(
                f"scaled_dot_product_attention: attn_mask must be an array, got {type(attn_mask).__name__}"
            )
        if attn_mask.dtype == bool:
            kind = "bool"
        elif attn_mask.dtype == query.dtype:
            kind = "additive"
        else:
            raise TypeError(
                f"scaled_dot_product_attention: attn_mask must be bool or the query's dtype ({query.dtype}), "
                f"got {attn_mask.dtype}"
            )
        mask = attn_mask
        if rank == 3 and mask.ndim == 3:  # (N, L, S) -> (N, 1, L, S) like the inputs
            mask = mask[:, None]
        mask = _dispatch.kernel_input(_narrow_broadcast(mask))
    if scale is not None:
        scale = _dispatch.float_arg("scaled_dot_product_attention", "scale", scale)
        # a finite scale that is inf in the kernel's arithmetic (float32 for 16-bit inputs)
        arith = np.result_type(q.dtype, np.float32) if q.dtype.kind == "f" else np.dtype(np.float32)
        if np.isfinite(scale) and abs(scale) > float(np.finfo(arith).max):
            raise ValueError(f"scaled_dot_product_attention: scale {scale} overflows {arith}, the kernel's arithmetic")
    args = _attention_args(
        tuple(q.shape), tuple(k.shape), tuple(v.shape), None if mask is None else tuple(mask.shape), kind,
        bool(is_causal), scale,
    )
    return args, q, k, v, mask


def sdpa_forward(query, key, value, attn_mask=None, is_causal=False, scale=None, *, variant="fast", out=None):
    """Scaled dot-product attention forward: returns (out (B, H, L, Ev), lse (B, H, L)).

    Rank-3 inputs (N, L, E) give out (N, L, Ev) and lse (N, L). lse is float32 on the GPU."""
    args, q, k, v, mask = _prepare(query, key, value, attn_mask, is_causal, scale)
    if out is not None and query.ndim == 3:
        out = tuple(x[:, None] for x in out)
    lse_dtype = q.dtype if backend.device_of(q) == "cpu" else "float32"
    o, = _dispatch.outputs(None if out is None else out[0], q, args.out_shape)
    lse, = _dispatch.outputs(None if out is None else out[1], q, args.lse_shape, dtype=lse_dtype)
    _dispatch.launch("sdpa_forward", variant, args, q, k, v, mask, o, lse)
    if query.ndim == 3:
        return o[:, 0], lse[:, 0]
    return o, lse


def sdpa_backward(query, key, value, output, lse, grad_output, attn_mask=None, is_causal=False, scale=None, *,
                  variant="fast", out=None):
    """Gradients (grad_query, grad_key, grad_value) of scaled dot-product attention.

    ``output`` and ``lse`` are what :func:`sdpa_forward` returned for the same inputs and options;
    ``grad_output`` has output's shape. The mask gets no gradient."""
    args, q, k, v, mask = _prepare(query, key, value, attn_mask, is_causal, scale)
    saved = (output, lse, grad_output)
    if query.ndim == 3:
        saved = tuple(x[:, None] for x in saved)
        out = None if out is None else tuple(g[:, None] for g in out)
    o, lse, go = (_dispatch.kernel_input(x, "sdpa_backward", name) for x, name in zip(saved, ("output", "lse",
                                                                                             "grad_output")))
    grads = _dispatch.outputs(out, q, q.shape, k.shape, v.shape)
    _dispatch.launch("sdpa_backward", variant, args, q, k, v, mask, o, lse, go, *grads)
    if query.ndim == 3:
        return tuple(g[:, 0] for g in grads)
    return grads
