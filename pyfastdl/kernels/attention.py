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

On the CPU, query, key, value, the output and the gradients are read and written in place as
strided views whose rows (the last dimension) are contiguous: the heads of a (B, L, H, E) projection
viewed as (B, H, L, E) (``x.reshape(B, L, H, E).transpose(0, 2, 1, 3)``, as multi-head attention
splits them) need no transpose copy, and ``out`` takes the query's layout (then merging the heads
back, ``out.transpose(0, 2, 1, 3).reshape(B, L, H * Ev)``, copies nothing); the gradients are
C-contiguous (written through strides they ran 10% slower: 128 x 8 heads x 16 x 32, one thread),
though a caller's ``out=`` may be any such view. Other inputs (rows not
contiguous, read-only, cupy arrays) are copied to contiguous arrays first; the mask is read in place
with broadcast strides (a zero-stride broadcast mask, e.g. from numpy.broadcast_to, is first narrowed
to its stored extent, so it is not expanded).

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


def _input(x, op=None, name=None):
    """x as the kernels read it: in place when a numpy array's rows are contiguous and its other
    strides are whole, non-negative elements (a view of heads); else a contiguous copy (a TypeError
    naming ``op`` and ``name``, when given, for anything but an array)."""
    if (type(x) is np.ndarray and x.ndim >= 2 and x.flags.writeable and all(st >= 0 and st % x.itemsize == 0 for st in
                                                                              x.strides)
            and (x.strides[-1] == x.itemsize or x.shape[-1] <= 1)
            and (x.strides[-2] >= x.shape[-1] * x.itemsize or x.shape[-2] <= 1)):  # rows apart (no broadcast row)
        return x
    return _dispatch.kernel_input(x, op, name)


def _output_like(x, shape, dtype=None):
    """A new array of ``shape`` (rank 4, (B, H, rows, features)) in ``x``'s layout: heads interleaved
    in each row, (B, rows, H, features) viewed as (B, H, rows, features), when x's are (its head
    stride below its row stride); else C-contiguous."""
    b, h, rows, features = shape
    if type(x) is np.ndarray and h > 1 and rows > 1 and x.strides[1] < x.strides[2]:
        return _dispatch.outputs(None, x, (b, rows, h, features), dtype=dtype)[0].transpose(0, 2, 1, 3)
    return _dispatch.outputs(None, x, shape, dtype=dtype)[0]


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
    q, k, v = (_input(x) for x in (q, k, v))
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
    o = _output_like(q, args.out_shape) if out is None else out[0]
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
    o, go = _input(saved[0], "sdpa_backward", "output"), _input(saved[2], "sdpa_backward", "grad_output")
    lse = _dispatch.kernel_input(saved[1], "sdpa_backward", "lse")
    grads = _dispatch.outputs(out, q, q.shape, k.shape, v.shape)
    _dispatch.launch("sdpa_backward", variant, args, q, k, v, mask, o, lse, go, *grads)
    if query.ndim == 3:
        return tuple(g[:, 0] for g in grads)
    return grads
