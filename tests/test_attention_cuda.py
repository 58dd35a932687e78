"""Scaled dot-product attention on the GPU: the CUDA kernels (the tensor-core flash-attention-style "fast" variant and "reference")
against the CPU kernels in float64 on the same (rounded) inputs -- float32, float16 and bfloat16,
shapes that are not multiples of the tiles, L != S, causal, bool and additive masks with every
broadcast pattern, fully masked rows, long sequences -- with every output poisoned with NaN before
the call, on cupy's current stream (also a non-default one), plus bad input.

The CUDA bindings are called directly (backend.launch), so that outputs can be NaN-filled and
bfloat16 arrays passed in: cupy has no bfloat16 dtype, so a bfloat16 array here is a uint16 cupy
buffer presented through __cuda_array_interface__ with typestr "<V2", which the bindings read as
bfloat16. lse is float32 on the GPU for every dtype."""

import numpy as np
import pytest

from pyfastdl import _C, backend, bfloat16, kernels
from pyfastdl.bfloat16 import BFloat16View

pytestmark = pytest.mark.gpu

DTYPES = ["float32", "float16", "bfloat16"]
VARIANTS = ["fast", "reference"]
TOL = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 2e-2}  # ||out - ref|| / ||ref||
LSE_TOL = {"float32": 1e-5, "float16": 1e-4, "bfloat16": 1e-4}  # lse comes from float32 scores


def cp():
    return backend.array_module("cuda")


# ---- bfloat16 and dtype plumbing ----------------------------------------------------------------


def rounded(x, dtype):
    """x rounded to dtype, as float64: the values the GPU kernels see."""
    if dtype == "bfloat16":
        return bfloat16.from_bits(bfloat16.to_bits(x)).astype(np.float64)
    return np.asarray(x).astype(dtype).astype(np.float64)


def to_gpu(x, dtype):
    """A float64 host array (already rounded) on the GPU in dtype (bool arrays stay bool)."""
    if x is None:
        return None
    if x.dtype == bool:
        return cp().asarray(x)
    if dtype == "bfloat16":
        return BFloat16View(cp().asarray(bfloat16.to_bits(x)))
    return cp().asarray(x.astype(dtype))


def poisoned(shape, dtype):
    """An output array of dtype filled with NaN, so that unwritten elements show."""
    if dtype == "bfloat16":
        return BFloat16View(cp().full(shape, 0x7FC0, dtype=cp().uint16))
    return cp().full(shape, np.nan, dtype=dtype)


def to_host(a):
    if isinstance(a, BFloat16View):
        return bfloat16.from_bits(a.bits.get()).astype(np.float64)
    return a.get().astype(np.float64)


def rel_err(out, expected):
    assert not np.isnan(out).any(), "NaN in the result (an element was not written, or 0/0)"
    denom = np.linalg.norm(expected)
    return np.linalg.norm(out - expected) / (denom if denom > 0 else 1.0)


def kernel(name, variant):
    return name if variant == "fast" else name + "_reference"


# ---- inputs -------------------------------------------------------------------------------------


def make_mask(rng, kind, B, H, L, S):
    """A float64 or bool host mask of the given broadcast pattern (None for no mask)."""
    if kind is None:
        return None
    if kind == "bool_key_padding":  # (B, 1, 1, S)
        m = rng.random((B, 1, 1, S)) > 0.3
        m[..., 0] = True
        return m
    if kind == "bool_LS_empty_rows":  # (L, S) with some rows that see no key at all
        m = rng.random((L, S)) > 0.5
        m[::7] = False
        return m
    if kind == "bool_full":  # (B, H, L, S)
        return rng.random((B, H, L, S)) > 0.4
    if kind == "add_full":  # (B, H, L, S)
        return rng.standard_normal((B, H, L, S))
    if kind == "add_key_padding_inf":  # (B, 1, 1, S) with -inf padding
        m = np.where(rng.random((B, 1, 1, S)) > 0.3, 0.0, -np.inf)
        m[..., 0] = 0.5
        return m
    if kind == "add_HL1":  # (H, L, 1): one value per (head, query) row, broadcast over keys
        return rng.standard_normal((H, L, 1))
    raise AssertionError(kind)


def make_case(rng, B, H, L, S, E, Ev, mask_kind, dtype):
    q = rounded(rng.standard_normal((B, H, L, E)), dtype)
    k = rounded(rng.standard_normal((B, H, S, E)), dtype)
    v = rounded(rng.standard_normal((B, H, S, Ev)), dtype)
    g = rounded(rng.standard_normal((B, H, L, Ev)), dtype)
    mask = make_mask(rng, mask_kind, B, H, L, S)
    if mask is not None and mask.dtype != bool:
        mask = rounded(mask, dtype)
    return q, k, v, g, mask


def cpu_reference(q, k, v, g, mask, causal, scale):
    """out, lse, grads from the CPU kernels in float64."""
    out, lse = kernels.sdpa_forward(q, k, v, mask, causal, scale)
    grads = kernels.sdpa_backward(q, k, v, out, lse, g, mask, causal, scale)
    return out, lse, grads


def gpu_run(q, k, v, g, mask, causal, scale, dtype, variant):
    """out, lse, (dq, dk, dv) from the CUDA kernels, every output NaN-poisoned beforehand."""
    kind = "none" if mask is None else ("bool" if mask.dtype == bool else "additive")
    a = _C.AttentionArgs(q.shape, k.shape, v.shape, None if mask is None else mask.shape, kind, causal, scale)
    dq_, dk_, dv_, dg, dmask = (to_gpu(x, dtype) for x in (q, k, v, g, mask))
    out = poisoned(a.out_shape, dtype)
    lse = poisoned(a.lse_shape, "float32")
    backend.launch(kernel("sdpa_forward", variant), "cuda", a, dq_, dk_, dv_, dmask, out, lse)
    grads = tuple(poisoned(s, dtype) for s in (a.query_shape, a.key_shape, a.value_shape))
    backend.launch(kernel("sdpa_backward", variant), "cuda", a, dq_, dk_, dv_, dmask, out, lse, dg, *grads)
    return out, lse, grads, a


def check(rng, B, H, L, S, E, Ev, mask_kind, causal, dtype, variant, scale=None):
    q, k, v, g, mask = make_case(rng, B, H, L, S, E, Ev, mask_kind, dtype)
    out_ref, lse_ref, grads_ref = cpu_reference(q, k, v, g, mask, causal, scale)
    out, lse, grads, _ = gpu_run(q, k, v, g, mask, causal, scale, dtype, variant)
    tol = TOL[dtype]
    assert rel_err(to_host(out), out_ref) < tol, "out"
    lse = to_host(lse)
    empty = np.isinf(lse_ref)
    assert np.array_equal(np.isinf(lse) & (lse > 0), empty), "fully masked rows must have lse = +inf"
    assert rel_err(lse[~empty], lse_ref[~empty]) < LSE_TOL[dtype], "lse"
    for name, got, expected in zip(("grad_query", "grad_key", "grad_value"), grads, grads_ref):
        assert rel_err(to_host(got), expected) < tol, name


# ---- tests --------------------------------------------------------------------------------------

# (B, H, L, S, E, Ev, mask, causal): no size a multiple of the tiles unless it says so.
CASES = [
    (2, 3, 77, 45, 64, 64, None, False),
    (1, 2, 130, 257, 128, 128, None, True),  # causal, L < S
    (2, 2, 200, 70, 64, 64, None, True),  # causal, L > S: rows past S see every key
    (1, 3, 150, 190, 128, 128, "bool_key_padding", False),
    (2, 2, 65, 129, 64, 64, "bool_LS_empty_rows", False),  # fully masked rows
    (1, 2, 70, 100, 64, 64, "bool_full", False),
    (1, 2, 100, 80, 128, 128, "add_full", False),
    (2, 1, 90, 140, 64, 64, "add_key_padding_inf", False),
    (1, 2, 96, 61, 128, 128, "add_HL1", False),
    (1, 2, 33, 70, 40, 24, None, True),  # head sizes off the tensor-core path
    (1, 1, 1, 1, 64, 64, None, False),
    (1, 3, 33, 50, 128, 128, None, False),  # B H L odd
    (1, 1, 128, 256, 64, 64, None, True),  # exact tile multiples
]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:6])) + f"-{c[6]}-{'causal' if c[7] else 'full'}")
def test_matches_cpu_float64(rng, case, dtype, variant):
    check(rng, *case, dtype, variant)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("E,causal", [(64, True), (128, False)])
def test_long_sequences(rng, dtype, E, causal):
    """The tensor-core kernels over many key and query blocks."""
    check(rng, 1, 2, 2048 + 37, 3000 + 11, E, E, None, causal, dtype, "fast")


@pytest.mark.parametrize("dtype", DTYPES)
def test_explicit_scale(rng, dtype):
    check(rng, 1, 2, 50, 90, 64, 64, None, False, dtype, "fast", scale=0.37)


def test_tensor_cores_selected():
    a = _C.AttentionArgs((1, 1, 8, 64), (1, 1, 8, 64), (1, 1, 8, 64))
    assert _C.cuda.sdpa_uses_tensor_cores(a, "bfloat16") and _C.cuda.sdpa_uses_tensor_cores(a, "float16")
    assert not _C.cuda.sdpa_uses_tensor_cores(a, "float32")
    b = _C.AttentionArgs((1, 1, 8, 64), (1, 1, 8, 64), (1, 1, 8, 32))
    assert not _C.cuda.sdpa_uses_tensor_cores(b, "bfloat16")


@pytest.mark.parametrize("dtype", DTYPES)
def test_repeatable(rng, dtype):
    """Forward, dK and dV are bitwise repeatable (no race); dQ sums with atomics, so only close."""
    q, k, v, g, mask = make_case(rng, 2, 2, 300, 333, 64, 64, None, dtype)
    first = gpu_run(q, k, v, g, mask, True, None, dtype, "fast")
    second = gpu_run(q, k, v, g, mask, True, None, dtype, "fast")
    for x, y in zip((first[0], first[1], first[2][1], first[2][2]), (second[0], second[1], second[2][1], second[2][2])):
        assert np.array_equal(to_host(x), to_host(y))
    assert rel_err(to_host(first[2][0]), to_host(second[2][0])) < 1e-6


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_runs_on_current_stream(rng, dtype):
    """Launched on cupy's current stream: results read after that stream alone has finished."""
    q, k, v, g, mask = make_case(rng, 1, 2, 200, 150, 64, 64, "bool_key_padding", dtype)
    out_ref, lse_ref, grads_ref = cpu_reference(q, k, v, g, mask, False, None)
    stream = cp().cuda.Stream(non_blocking=True)
    with stream:
        out, lse, grads, _ = gpu_run(q, k, v, g, mask, False, None, dtype, "fast")
        stream.synchronize()
        assert rel_err(to_host(out), out_ref) < TOL[dtype]
        assert rel_err(to_host(grads[1]), grads_ref[1]) < TOL[dtype]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_public_wrapper(rng, dtype):
    """pyfastdl.kernels.sdpa_forward/backward on cupy arrays reach these kernels; lse is float32 for
    every dtype (the wrapper allocates it so)."""
    q, k, v, g, mask = make_case(rng, 2, 2, 40, 70, 64, 64, "add_full", dtype)
    out_ref, lse_ref, grads_ref = cpu_reference(q, k, v, g, mask, False, None)
    dq_, dk_, dv_, dg, dmask = (cp().asarray(x.astype(dtype)) for x in (q, k, v, g, mask))
    out, lse = kernels.sdpa_forward(dq_, dk_, dv_, dmask)
    assert out.dtype == dtype and lse.dtype == np.float32
    grads = kernels.sdpa_backward(dq_, dk_, dv_, out, lse, dg, dmask)
    assert rel_err(to_host(out), out_ref) < TOL[dtype]
    assert rel_err(to_host(lse), lse_ref) < LSE_TOL[dtype]
    for got, expected in zip(grads, grads_ref):
        assert got.dtype == dtype and rel_err(to_host(got), expected) < TOL[dtype]


# ---- bad input ----------------------------------------------------------------------------------


def _args_and_arrays(dtype="float16"):
    a = _C.AttentionArgs((1, 2, 16, 64), (1, 2, 24, 64), (1, 2, 24, 64))
    x = cp().ones
    return a, x(a.query_shape, dtype), x(a.key_shape, dtype), x(a.value_shape, dtype), x(a.out_shape, dtype)


def test_bad_lse_dtype():
    a, q, k, v, out = _args_and_arrays()
    lse = cp().empty(a.lse_shape, cp().float16)
    with pytest.raises(TypeError, match="lse"):
        backend.launch("sdpa_forward", "cuda", a, q, k, v, None, out, lse)


def test_bad_inputs():
    a, q, k, v, out = _args_and_arrays()
    lse = cp().empty(a.lse_shape, cp().float32)
    with pytest.raises(TypeError, match="query"):
        backend.launch("sdpa_forward", "cuda", a, q.get(), k, v, None, out, lse)
    with pytest.raises(TypeError, match="key"):
        backend.launch("sdpa_forward", "cuda", a, q, k.astype(cp().float32), v, None, out, lse)
    with pytest.raises(ValueError, match="out"):
        backend.launch("sdpa_forward", "cuda", a, q, k, v, None, out[:, :, :8], lse)
    with pytest.raises(ValueError, match="C-contiguous"):
        backend.launch("sdpa_forward", "cuda", a, q, k, v[..., ::-1], None, out, lse)
    with pytest.raises(TypeError, match="float32"):
        backend.launch("sdpa_forward", "cuda", a, q.astype(cp().float64), k, v, None, out, lse)
    with pytest.raises(ValueError, match="attn_mask"):
        backend.launch("sdpa_forward", "cuda", a, q, k, v, cp().ones((16, 24), bool), out, lse)
