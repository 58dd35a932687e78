"""Raw scaled dot-product attention kernels on numpy (CPU) or cupy (CUDA) arrays: no autograd.

    out, lse = sdpa_forward(query, key, value, attn_mask=None, is_causal=False, scale=None)
    grad_query, grad_key, grad_value = sdpa_backward(query, key, value, out, lse, grad_out, ...)

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

``variant="flash"`` (default) is the blocked online-softmax kernel, O(seq * dim) memory;
``variant="reference"`` computes one query row at a time with a two-pass softmax.
"""

from __future__ import annotations

from .. import backend
from .._core import _C

__all__ = ["sdpa_forward", "sdpa_backward", "ATTENTION_VARIANTS"]

ATTENTION_VARIANTS = ("flash", "reference")


def _kernel(name: str, variant: str) -> str:
    if variant not in ATTENTION_VARIANTS:
        raise ValueError(f"scaled_dot_product_attention: variant must be one of {ATTENTION_VARIANTS}, got {variant!r}")
    return name if variant == "flash" else name + "_reference"


def _narrow_broadcast(mask):
    """A view of ``mask`` with every zero-stride (broadcast) axis cut to length 1."""
    index = tuple(slice(0, 1) if st == 0 and n > 1 else slice(None) for n, st in zip(mask.shape, mask.strides))
    return mask[index]


def _kernel_input(x):
    """``x`` as the compiled kernels take it: C-contiguous and (numpy) writeable, copied if need be."""
    x = backend.contiguous(x)
    if getattr(x.flags, "writeable", True):
        return x
    return x.copy()


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
    """(device, AttentionArgs, q, k, v, mask) as the compiled kernels want them (rank 4, contiguous)."""
    device = backend.device_of(query)
    rank = getattr(query, "ndim", None)
    q, k, v = (_as_4d(x, n) for x, n in ((query, "query"), (key, "key"), (value, "value")))
    if not (getattr(key, "ndim", None) == getattr(value, "ndim", None) == rank):
        raise ValueError(
            f"scaled_dot_product_attention: query, key and value must have the same rank, got "
            f"{query.shape}, {key.shape}, {value.shape}"
        )
    q, k, v = (_kernel_input(x) for x in (q, k, v))
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
        mask = _kernel_input(_narrow_broadcast(mask))
    args = _C.AttentionArgs(
        q.shape, k.shape, v.shape, None if mask is None else mask.shape, kind, bool(is_causal),
        None if scale is None else float(scale),
    )
    return device, args, q, k, v, mask


def sdpa_forward(query, key, value, attn_mask=None, is_causal=False, scale=None, variant="flash"):
    """Scaled dot-product attention forward: returns (out (B, H, L, Ev), lse (B, H, L)).

    Rank-3 inputs (N, L, E) give out (N, L, Ev) and lse (N, L)."""
    name = _kernel("sdpa_forward", variant)
    device, args, q, k, v, mask = _prepare(query, key, value, attn_mask, is_causal, scale)
    xp = backend.array_module(device)
    out = xp.empty(args.out_shape, dtype=q.dtype)
    lse = xp.empty(args.lse_shape, dtype=q.dtype if device == "cpu" else xp.float32)
    backend.launch(name, device, args, q, k, v, mask, out, lse)
    if query.ndim == 3:
        return out[:, 0], lse[:, 0]
    return out, lse


def sdpa_backward(query, key, value, out, lse, grad_out, attn_mask=None, is_causal=False, scale=None,
                  variant="flash"):
    """Gradients (grad_query, grad_key, grad_value) of scaled dot-product attention.

    ``out`` and ``lse`` are what :func:`sdpa_forward` returned for the same inputs and options;
    ``grad_out`` has out's shape. The mask gets no gradient."""
    name = _kernel("sdpa_backward", variant)
    device, args, q, k, v, mask = _prepare(query, key, value, attn_mask, is_causal, scale)
    if query.ndim == 3:
        out, lse, grad_out = out[:, None], lse[:, None], grad_out[:, None]
    out, lse, grad_out = (_kernel_input(x) for x in (out, lse, grad_out))
    xp = backend.array_module(device)
    grads = tuple(xp.empty(x.shape, dtype=q.dtype) for x in (q, k, v))
    backend.launch(name, device, args, q, k, v, mask, out, lse, grad_out, *grads)
    if query.ndim == 3:
        return tuple(g[:, 0] for g in grads)
    return grads
