"""Scaled dot-product attention: raw kernels (both variants, every device) against the float64
reference, masks and causal with L != S, fully masked rows, gradcheck through autograd, torch
cross-checks, O(seq * dim) memory, and bad input."""

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from conftest import requires_torch
from reference import attention as ref

import pyfastdl
from pyfastdl import _C, backend, kernels
from pyfastdl.nn.functional import scaled_dot_product_attention
from pyfastdl.testing import gradcheck

TOL = {("cpu", np.float64): 1e-10, ("cpu", np.float32): 1e-5, ("cuda", np.float32): 1e-4}
VARIANTS = kernels._dispatch.VARIANTS


def rel_err(out, expected):
    out = backend.to_device(out, "cpu").astype(np.float64)
    assert not np.isnan(out).any(), "NaN in the result"
    denom = np.linalg.norm(expected)
    return np.linalg.norm(out - expected) / (denom if denom > 0 else 1.0)


def qkv(rng, B, H, L, S, E, Ev, dtype):
    return (
        rng.standard_normal((B, H, L, E)).astype(dtype),
        rng.standard_normal((B, H, S, E)).astype(dtype),
        rng.standard_normal((B, H, S, Ev)).astype(dtype),
    )


def make_mask(rng, kind, B, H, L, S, dtype):
    """Masks of every broadcast pattern; each row keeps at least one visible key."""
    if kind is None:
        return None
    if kind == "bool_key_padding":  # (B, 1, 1, S)
        m = rng.random((B, 1, 1, S)) > 0.3
        m[..., 0] = True
        return m
    if kind == "bool_LS":  # (L, S)
        m = rng.random((L, S)) > 0.5
        m[:, -1] = True
        return m
    if kind == "bool_full":  # (B, H, L, S)
        m = rng.random((B, H, L, S)) > 0.5
        m[..., 0] = True
        return m
    if kind == "add_LS":  # (L, S)
        return rng.standard_normal((L, S)).astype(dtype)
    if kind == "add_key_padding":  # (B, 1, 1, S) with -inf padding
        m = np.where(rng.random((B, 1, 1, S)) > 0.3, 0.0, -np.inf).astype(dtype)
        m[..., 0] = 0.5
        return m
    if kind == "add_S":  # (S,)
        return rng.standard_normal(S).astype(dtype)
    if kind == "add_HL1":  # (H, L, 1): one value per (head, query) row
        return rng.standard_normal((H, L, 1)).astype(dtype)
    raise AssertionError(kind)


def on(device, *arrays):
    return tuple(None if a is None else backend.to_device(a, device) for a in arrays)


def check_forward_backward(device, variant, q, k, v, mask=None, is_causal=False, scale=None):
    dtype = q.dtype.type
    tol = TOL[(device, dtype)]
    dq, dk, dv, dmask = on(device, q, k, v, mask)
    out, lse = kernels.sdpa_forward(dq, dk, dv, dmask, is_causal, scale, variant=variant)
    assert rel_err(out, ref.sdpa(q, k, v, mask, is_causal, scale)) < tol
    lse, expected_lse = backend.to_device(lse, "cpu"), ref.logsumexp(q, k, mask, is_causal, scale)
    seen = np.isfinite(expected_lse)  # +inf marks rows with no visible key
    assert np.array_equal(np.isposinf(lse), ~seen)
    assert rel_err(lse[seen], expected_lse[seen]) < tol
    grad_out = np.random.default_rng(0).standard_normal(out.shape).astype(dtype)
    grads = kernels.sdpa_backward(dq, dk, dv, out, lse, on(device, grad_out)[0], dmask, is_causal, scale,
                                  variant=variant)
    for g, expected in zip(grads, ref.sdpa_backward(q, k, v, grad_out, mask, is_causal, scale)):
        assert rel_err(g, expected) < tol


SHAPES = [  # (B, H, L, S, E, Ev)
    (1, 1, 1, 1, 1, 1),  # everything length 1
    (2, 3, 70, 200, 7, 5),  # cross attention, odd feature sizes
    (1, 2, 300, 130, 16, 9),  # more queries than keys
    (3, 2, 64, 256, 32, 32),  # exact block multiples
    (1, 1, 129, 257, 8, 8),  # one past the block sizes
]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_reference_cpu(rng, variant, shape, dtype):
    check_forward_backward("cpu", variant, *qkv(rng, *shape, dtype))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", [(2, 3, 70, 200, 7, 5), (1, 2, 150, 130, 64, 64)], ids=lambda s: "x".join(map(str, s)))
def test_matches_reference_device(rng, device, variant, shape):
    check_forward_backward(device, variant, *qkv(rng, *shape, np.float32))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "kind", ["bool_key_padding", "bool_LS", "bool_full", "add_LS", "add_key_padding", "add_S", "add_HL1"]
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_masks(rng, variant, kind, dtype):
    B, H, L, S, E, Ev = 2, 3, 90, 150, 12, 10
    q, k, v = qkv(rng, B, H, L, S, E, Ev, dtype)
    check_forward_backward("cpu", variant, q, k, v, make_mask(rng, kind, B, H, L, S, dtype))


@pytest.mark.parametrize("kind", ["bool_key_padding", "add_LS"])
def test_masks_device(rng, device, kind):
    B, H, L, S, E, Ev = 2, 2, 70, 140, 16, 16
    q, k, v = qkv(rng, B, H, L, S, E, Ev, np.float32)
    check_forward_backward(device, "fast", q, k, v, make_mask(rng, kind, B, H, L, S, np.float32))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("L,S", [(100, 100), (60, 200), (200, 60), (1, 5), (5, 1)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_causal(rng, variant, L, S, dtype):
    q, k, v = qkv(rng, 2, 2, L, S, 8, 6, dtype)
    check_forward_backward("cpu", variant, q, k, v, is_causal=True)


@pytest.mark.parametrize("L,S", [(150, 150), (60, 200), (200, 60)])
def test_causal_device(rng, device, L, S):
    check_forward_backward(device, "fast", *qkv(rng, 1, 2, L, S, 32, 32, np.float32), is_causal=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_scale(rng, variant):
    check_forward_backward("cpu", variant, *qkv(rng, 1, 2, 40, 50, 8, 8, np.float64), scale=0.37)


def test_long_sequence_float32(rng):
    """L = S = 1000 in float32: the online softmax keeps float32 accuracy over many key blocks."""
    check_forward_backward("cpu", "fast", *qkv(rng, 1, 2, 1000, 1000, 64, 64, np.float32))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", [(1, 1, 300, 700, 16, 8), (4, 4, 70, 90, 8, 8)], ids=["split_head", "whole_heads"])
def test_backward_is_deterministic(rng, threads, shape):
    """At a given thread count the backward returns the same bits every call: a head split over
    several tasks (few heads, many key blocks) sums its dQ parts in a fixed order, whichever thread
    ran which part; and every count agrees with the reference."""
    q, k, v = qkv(rng, *shape, np.float32)
    before = pyfastdl.get_num_threads()
    pyfastdl.set_num_threads(threads)
    try:
        check_forward_backward("cpu", "fast", q, k, v, is_causal=False)
        out, lse = kernels.sdpa_forward(q, k, v, None, True, None)
        grad_out = rng.standard_normal(out.shape).astype(np.float32)
        first = kernels.sdpa_backward(q, k, v, out, lse, grad_out, None, True, None)
        for _ in range(4):
            again = kernels.sdpa_backward(q, k, v, out, lse, grad_out, None, True, None)
            assert all(np.array_equal(a, b) for a, b in zip(first, again))
    finally:
        pyfastdl.set_num_threads(before)


def test_rank3_inputs(rng):
    """(N, L, E) inputs are one head each, with a (N, L, S) mask."""
    q, k, v = qkv(rng, 3, 1, 20, 30, 8, 4, np.float64)
    mask = rng.random((3, 1, 20, 30)) > 0.4
    mask[..., 0] = True
    out, lse = kernels.sdpa_forward(q[:, 0], k[:, 0], v[:, 0], mask[:, 0])
    assert out.shape == (3, 20, 4) and lse.shape == (3, 20)
    assert rel_err(out, ref.sdpa(q, k, v, mask)[:, 0]) < 1e-10
    g = rng.standard_normal(out.shape)
    grads = kernels.sdpa_backward(q[:, 0], k[:, 0], v[:, 0], out, lse, g, mask[:, 0])
    for got, expected in zip(grads, ref.sdpa_backward(q, k, v, g[:, None], mask)):
        assert rel_err(got, expected[:, 0]) < 1e-10


def test_non_contiguous_and_broadcast_views(rng):
    """Transposed inputs are copied; a np.broadcast_to mask is read through its stored extent."""
    q, k, v = qkv(rng, 2, 3, 40, 50, 8, 8, np.float64)
    qt = np.ascontiguousarray(q.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)  # (B, L, H, E) memory
    pad = rng.random((2, 1, 1, 50)) > 0.3
    pad[..., 0] = True
    mask = np.broadcast_to(pad, (2, 3, 40, 50))
    out, _ = kernels.sdpa_forward(qt, k, v, mask)
    assert rel_err(out, ref.sdpa(q, k, v, pad)) < 1e-10


# ---- fully masked rows ------------------------------------------------------------------------------


def fully_masked_case(rng, dtype, additive):
    B, H, L, S = 2, 2, 70, 140
    q, k, v = qkv(rng, B, H, L, S, 8, 8, dtype)
    mask = rng.random((B, 1, L, S)) > 0.3
    mask[:, :, 5] = False  # query 5 of every head sees nothing
    mask[1, :, 66:] = False  # and the last rows of the second batch
    if additive:
        mask = np.where(mask, 0.0, -np.inf).astype(dtype)
    return q, k, v, mask


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("additive", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fully_masked_rows_give_zeros(rng, variant, additive, dtype):
    """A query row that sees no key outputs 0 (torch 2.13's CPU result) and passes zero gradient."""
    q, k, v, mask = fully_masked_case(rng, dtype, additive)
    out, lse = kernels.sdpa_forward(q, k, v, mask, variant=variant)
    assert np.all(out[:, :, 5] == 0) and np.all(out[1, :, 66:] == 0)
    assert np.all(np.isposinf(lse[:, :, 5]))
    check_forward_backward("cpu", variant, q, k, v, mask)
    grads = kernels.sdpa_backward(q, k, v, out, lse, np.ones_like(out), mask, variant=variant)
    assert all(np.isfinite(g).all() for g in grads)
    assert np.all(grads[0][:, :, 5] == 0)


# ---- autograd -----------------------------------------------------------------------------------------


def tensors(rng, *shapes):
    return tuple(pyfastdl.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"is_causal": True},
        {"scale": 0.7},
        {"mask": "bool"},
        {"mask": "additive"},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "plain",
)
def test_gradcheck(rng, options):
    q, k, v = tensors(rng, (2, 2, 5, 3), (2, 2, 7, 3), (2, 2, 7, 4))
    mask = None
    if options.get("mask") == "bool":
        m = rng.random((2, 1, 1, 7)) > 0.3
        m[..., 0] = True
        mask = pyfastdl.tensor(m)
    elif options.get("mask") == "additive":
        mask = pyfastdl.tensor(rng.standard_normal((5, 7)))
    kwargs = {k_: v_ for k_, v_ in options.items() if k_ != "mask"}
    assert gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask, **kwargs), (q, k, v))


def test_gradcheck_causal_cross_attention(rng):
    q, k, v = tensors(rng, (1, 2, 6, 3), (1, 2, 4, 3), (1, 2, 4, 2))
    assert gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, is_causal=True), (q, k, v))


def test_autograd_fully_masked_row_has_zero_grad(rng):
    q, k, v = tensors(rng, (1, 1, 3, 4), (1, 1, 5, 4), (1, 1, 5, 4))
    m = np.ones((3, 5), dtype=bool)
    m[1] = False
    out = scaled_dot_product_attention(q, k, v, pyfastdl.tensor(m))
    out.sum().backward()
    assert np.all(out.data[0, 0, 1] == 0)
    for t in (q, k, v):
        assert np.isfinite(t.grad.data).all()
    assert np.all(q.grad.data[0, 0, 1] == 0)


# ---- NaN and Inf (issue 13) ---------------------------------------------------------------------------

ISAS = _C.cpu.available_isas()

# (name, where the bad value goes, value, mask kind): every case leaves each row at least one visible key
NONFINITE_CASES = [
    ("nan_q_row", "q", np.nan, None),
    ("nan_k_row", "k", np.nan, None),
    ("nan_v_row", "v", np.nan, None),
    ("inf_q", "q", np.inf, None),
    ("neg_inf_q", "q", -np.inf, None),
    ("inf_k", "k", np.inf, None),
    ("nan_q_causal", "q", np.nan, "causal"),
    ("nan_k_causal", "k", np.nan, "causal"),
    ("nan_q_bool", "q", np.nan, "bool"),
    ("nan_additive_mask", "mask", np.nan, "additive"),
    ("inf_additive_mask", "mask", np.inf, "additive"),
]


def torch_math_sdpa(q, k, v, mask, is_causal):
    """torch's math path (softmax of the explicit scores), float64; with the causal or a boolean mask
    torch's fused CPU kernel instead: the math path adds -inf to a masked-out NaN score and so lets a
    NaN key that a row cannot see spoil it, where the fused kernels (torch's and ours) skip it."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    tq, tk, tv = (torch.tensor(x, dtype=torch.float64) for x in (q, k, v))
    tm = None if mask is None else torch.tensor(mask if mask.dtype == bool else mask.astype(np.float64))
    fused = is_causal or (mask is not None and mask.dtype == bool)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION if fused else SDPBackend.MATH):
        return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, is_causal=is_causal).numpy()


def nonfinite_case(rng, where, value, mask_kind, dtype):
    B, H, L, S = 2, 2, 70, 140  # two key blocks, a partial query block
    q, k, v = qkv(rng, B, H, L, S, 8, 8, dtype)
    mask = None
    if mask_kind == "bool":
        mask = rng.random((B, 1, L, S)) > 0.3
        mask[..., 0] = True
    elif mask_kind == "additive":
        mask = rng.standard_normal((L, S)).astype(dtype)
    if where == "q":
        q[0, 1, 3] = np.nan if np.isnan(value) else 0.0
        q[0, 1, 3, 2] = value  # one element; for NaN the whole row
        q[1, 0, 69, 0] = value
    elif where in ("k", "v"):
        (k if where == "k" else v)[1, 1, 7, 1] = value  # key 7: every query of head (1, 1) sees it
        (k if where == "k" else v)[0, 0, 130, 0] = value  # in the second key block
    else:
        mask[4, 9] = value
        mask[60, 135] = value
    return q, k, v, mask


@requires_torch
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", NONFINITE_CASES, ids=lambda c: c[0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nonfinite_propagates_like_torch_math(rng, isa, variant, case, dtype):
    """NaN and Inf in q, k, v or an additive mask give NaN exactly where torch's math path does (no
    longer zeros), the other rows are unchanged, and the backward keeps the NaN (never a silent 0)."""
    _, where, value, mask_kind = case
    q, k, v, mask = nonfinite_case(rng, where, value, mask_kind, dtype)
    is_causal = mask_kind == "causal"
    expected = torch_math_sdpa(q, k, v, mask, is_causal)
    _C.cpu.set_isa(isa)
    try:
        out, lse = kernels.sdpa_forward(q, k, v, mask, is_causal, variant=variant)
        grads = kernels.sdpa_backward(q, k, v, out, lse, np.ones_like(out), mask, is_causal, variant=variant)
    finally:
        _C.cpu.set_isa(_C.cpu.best_isa())
    bad = np.isnan(expected).any(axis=-1)
    assert bad.any() and not bad.all()
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isnan(lse), bad if where != "v" else False)  # v is not in the softmax
    np.testing.assert_allclose(out[~bad], expected[~bad], rtol=TOL[("cpu", dtype)] * 100, atol=TOL[("cpu", dtype)])
    if where != "v":
        assert np.isnan(grads[0][bad]).all()  # dQ of every NaN row


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_nan_in_fully_masked_row_keeps_zeros(rng, isa, variant):
    """A row whose every key is masked out by a boolean mask still outputs 0 (its documented result)
    even when its query is NaN: the mask replaces the scores."""
    q, k, v, mask = fully_masked_case(rng, np.float32, additive=False)
    q[:, :, 5] = np.nan
    _C.cpu.set_isa(isa)
    try:
        out, lse = kernels.sdpa_forward(q, k, v, mask, variant=variant)
    finally:
        _C.cpu.set_isa(_C.cpu.best_isa())
    assert np.all(out[:, :, 5] == 0) and np.all(np.isposinf(lse[:, :, 5]))
    assert np.isfinite(np.delete(out, 5, axis=2)).all()


def test_multihead_attention_need_weights_paths_agree_on_nan(rng):
    """need_weights=True (explicit softmax) and False (the fused kernel) give the same NaN rows."""
    mha = pyfastdl.nn.MultiheadAttention(16, 4, batch_first=True)
    x = rng.standard_normal((2, 9, 16)).astype(np.float32)
    x[1, 4, 3] = np.nan
    with pyfastdl.no_grad():
        a, _ = mha(pyfastdl.tensor(x), pyfastdl.tensor(x), pyfastdl.tensor(x), need_weights=True)
        b, _ = mha(pyfastdl.tensor(x), pyfastdl.tensor(x), pyfastdl.tensor(x), need_weights=False)
    np.testing.assert_array_equal(np.isnan(a.data), np.isnan(b.data))
    assert np.isnan(b.data[1]).all() and np.isfinite(b.data[0]).all()
    np.testing.assert_allclose(a.data[0], b.data[0], rtol=1e-4, atol=1e-5)


# ---- torch --------------------------------------------------------------------------------------------


def torch_sdpa(q, k, v, mask, is_causal, grad_out):
    import torch
    import torch.nn.functional as F

    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    tm = None if mask is None else torch.tensor(mask)
    out = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, is_causal=is_causal)
    out.backward(torch.tensor(grad_out))
    return [x.detach().numpy().astype(np.float64) for x in (out, tq.grad, tk.grad, tv.grad)]


@requires_torch
@pytest.mark.parametrize(
    "case",
    ["plain", "causal_L<S", "causal_L>S", "bool_key_padding", "add_LS", "fully_masked_bool", "fully_masked_add"],
)
def test_matches_torch(rng, case):
    dtype = np.float32
    B, H, L, S = 2, 3, 100, 150
    if case == "causal_L>S":
        L, S = 150, 100
    q, k, v = qkv(rng, B, H, L, S, 16, 12, dtype)
    mask, is_causal = None, case.startswith("causal")
    if case in ("bool_key_padding", "add_LS"):
        mask = make_mask(rng, case, B, H, L, S, dtype)
    elif case.startswith("fully_masked"):
        q, k, v, mask = fully_masked_case(rng, dtype, additive=case.endswith("add"))
    out, lse = kernels.sdpa_forward(q, k, v, mask, is_causal)
    grad_out = rng.standard_normal(out.shape).astype(dtype)
    ours = [out, *kernels.sdpa_backward(q, k, v, out, lse, grad_out, mask, is_causal)]
    for got, expected in zip(ours, torch_sdpa(q, k, v, mask, is_causal, grad_out)):
        assert rel_err(got, expected) < 1e-5


# ---- memory -------------------------------------------------------------------------------------------

MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from pyfastdl import kernels

    def status_kib(field):  # VmRSS: resident now; VmHWM: peak since the last reset
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

    BH, L, E = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    small = [rng.standard_normal((1, 2, 70, 8), dtype=np.float32) for _ in range(3)]
    o, lse = kernels.sdpa_forward(*small)  # warm up: OpenBLAS and OpenMP allocate their buffers
    kernels.sdpa_backward(*small, o, lse, o)
    q, k, v, g = (rng.standard_normal((1, BH, L, E), dtype=np.float32) for _ in range(4))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size
    before = status_kib("VmRSS")
    out, lse = kernels.sdpa_forward(q, k, v, is_causal=True)
    grads = kernels.sdpa_backward(q, k, v, out, lse, g, is_causal=True)
    growth = (status_kib("VmHWM") - before) * 1024
    outputs = out.nbytes + lse.nbytes + sum(x.nbytes for x in grads)
    print(json.dumps({"peak_growth": growth, "outputs": outputs}))
    """
)


def check_memory(BH, L, E):
    """Forward + backward in a fresh process: its peak resident memory may grow by the outputs plus
    a few O(seq * dim) buffers (K^T, per-thread dQ), far less than one L x L float32 matrix of a
    single head (Linux: /proc/self/status). Not under tools/sanitize.sh: AddressSanitizer's allocator
    holds freed blocks in quarantine, so the resident size measures it rather than the kernels."""
    if os.environ.get("PYFASTDL_SANITIZER"):
        pytest.skip(f"resident memory is ASan's under the sanitizers ({os.environ['PYFASTDL_SANITIZER']})")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    # from the filesystem root, so the installed package runs rather than a source folder in the cwd
    res = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(BH), str(L), str(E)], env=env,
                         capture_output=True, text=True, check=True, cwd=os.path.abspath(os.sep))
    got = json.loads(res.stdout.strip().splitlines()[-1])
    one_head_matrix = L * L * 4
    one_input = BH * L * E * 4  # room for one O(seq * dim) copy, such as K^T
    assert got["peak_growth"] > got["outputs"] / 2, got  # the measurement sees the outputs
    assert got["peak_growth"] - got["outputs"] < one_input + one_head_matrix / 8, (got, one_head_matrix)


def test_memory_is_linear_in_seq():
    check_memory(8, 2048, 64)


@pytest.mark.slow
def test_memory_is_linear_in_seq_8192():
    check_memory(8, 8192, 64)


def test_numpy_allocations_are_linear_in_seq(rng):
    """tracemalloc sees every numpy allocation of the Python layer: nothing of size L x S."""
    L = S = 1024
    q, k, v = qkv(rng, 1, 2, L, S, 16, 16, np.float32)
    g = rng.standard_normal((1, 2, L, 16)).astype(np.float32)
    tracemalloc.start()
    out, lse = kernels.sdpa_forward(q, k, v, is_causal=True)
    kernels.sdpa_backward(q, k, v, out, lse, g, is_causal=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * q.nbytes + L * S * 4 / 8


# ---- bad input ----------------------------------------------------------------------------------------


def ok_inputs(dtype=np.float32):
    rng = np.random.default_rng(0)
    return qkv(rng, 2, 3, 5, 7, 4, 6, dtype)


@pytest.mark.parametrize(
    "mutate,error,match",
    [
        (lambda q, k, v: (q[0], k, v), ValueError, "query, key and value must have the same rank"),
        (lambda q, k, v: (q[0, 0], k[0, 0], v[0, 0]), ValueError, "query must have 3 or 4 dimensions"),
        (lambda q, k, v: (q, k[:, :2], v), ValueError, "key's \\(batch, heads\\)"),
        (lambda q, k, v: (q, k[:1], v), ValueError, "key's \\(batch, heads\\)"),
        (lambda q, k, v: (q, k, v[:, :2]), ValueError, "value's \\(batch, heads\\)"),
        (lambda q, k, v: (q, k[..., :3], v), ValueError, "key's feature size"),
        (lambda q, k, v: (q, k, v[:, :, :6]), ValueError, "value's sequence length"),
        (lambda q, k, v: (q[:, :, :0], k, v), ValueError, "query has a zero-size dimension"),
        (lambda q, k, v: (q.astype(np.int32), k, v), TypeError, "query has dtype int32"),
        (lambda q, k, v: (q, k.astype(np.float64), v), TypeError, "key"),
        (lambda q, k, v: (q, k, v.astype(np.float64)), TypeError, "value"),
        (lambda q, k, v: (q.tolist(), k, v), TypeError,
         "scaled_dot_product_attention: query must be a numpy or cupy array"),
    ],
)
def test_bad_inputs(mutate, error, match):
    q, k, v = mutate(*ok_inputs())
    with pytest.raises(error, match=match):
        kernels.sdpa_forward(q, k, v)


@pytest.mark.parametrize(
    "mask,error,match",
    [
        (np.ones((2, 3, 5, 6), bool), ValueError, "attn_mask of shape \\(2, 3, 5, 6\\) does not broadcast"),
        (np.ones((3, 3, 5, 7), bool), ValueError, "attn_mask of shape .* does not broadcast"),
        (np.ones((1, 2, 3, 5, 7), bool), ValueError, "attn_mask must have at most 4 dimensions"),
        (np.ones((5, 7), np.float64), TypeError, "attn_mask must be bool or the query's dtype"),
        (np.ones((5, 7), np.int64), TypeError, "attn_mask must be bool or the query's dtype"),
        ([[True]], TypeError, "attn_mask must be an array"),
    ],
)
def test_bad_masks(mask, error, match):
    q, k, v = ok_inputs()
    with pytest.raises(error, match=match):
        kernels.sdpa_forward(q, k, v, mask)


def test_causal_with_mask_is_an_error():
    q, k, v = ok_inputs()
    with pytest.raises(ValueError, match="attn_mask and is_causal cannot both be set"):
        kernels.sdpa_forward(q, k, v, np.ones((5, 7), bool), is_causal=True)


def test_bad_variant_and_scale():
    q, k, v = ok_inputs()
    with pytest.raises(ValueError, match="variant must be one of"):
        kernels.sdpa_forward(q, k, v, variant="flash")
    with pytest.raises(ValueError, match="scale must be finite"):
        kernels.sdpa_forward(q, k, v, scale=float("inf"))


def test_compiled_kernel_checks_its_arrays():
    """What reaches _C is checked again: layout, shapes, dtypes and the mask against the Args."""
    q, k, v = ok_inputs()
    a = _C.AttentionArgs(q.shape, k.shape, v.shape)
    out, lse = np.empty(a.out_shape, np.float32), np.empty(a.lse_shape, np.float32)
    qt = np.ascontiguousarray(np.swapaxes(q, 2, 3)).swapaxes(2, 3)
    with pytest.raises(ValueError, match="query must have contiguous rows"):
        _C.cpu.sdpa_forward(a, qt, k, v, None, out, lse)
    with pytest.raises(ValueError, match="key's rows overlap"):
        _C.cpu.sdpa_forward(a, q, np.lib.stride_tricks.as_strided(k, strides=k.strides[:2] + (4, 4)), v, None, out, lse)
    with pytest.raises(ValueError, match="out is written and must not be a broadcast view"):
        _C.cpu.sdpa_forward(a, q, k, v, None, np.lib.stride_tricks.as_strided(out, strides=(0,) + out.strides[1:]), lse)
    with pytest.raises(ValueError, match="lse must be C-contiguous"):
        _C.cpu.sdpa_forward(a, q, k, v, None, out, np.empty(a.lse_shape[::-1], np.float32).T)
    with pytest.raises(ValueError, match="out has shape"):
        _C.cpu.sdpa_forward(a, q, k, v, None, np.empty((2, 3, 4, 6), np.float32), lse)
    with pytest.raises(TypeError, match="lse is float64"):
        _C.cpu.sdpa_forward(a, q, k, v, None, out, lse.astype(np.float64))
    with pytest.raises(ValueError, match="attn_mask was given but the AttentionArgs were built without"):
        _C.cpu.sdpa_forward(a, q, k, v, np.ones((5, 7), bool), out, lse)
    am = _C.AttentionArgs(q.shape, k.shape, v.shape, (5, 7), "bool")
    with pytest.raises(ValueError, match="expect a bool attn_mask, got None"):
        _C.cpu.sdpa_forward(am, q, k, v, None, out, lse)
    with pytest.raises(TypeError, match="attn_mask has dtype float32, expected bool"):
        _C.cpu.sdpa_forward(am, q, k, v, np.ones((5, 7), np.float32), out, lse)
    with pytest.raises(ValueError, match="mask_kind must be"):
        _C.AttentionArgs(q.shape, k.shape, v.shape, (5, 7), "boolean")
    with pytest.raises(ValueError, match="attn_mask_shape must be given exactly when"):
        _C.AttentionArgs(q.shape, k.shape, v.shape, None, "bool")


def test_args_expose_shapes_and_broadcast_strides():
    a = _C.AttentionArgs((2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 6), (2, 1, 1, 7), "bool", False, None)
    assert (a.B, a.H, a.L, a.S, a.E, a.Ev) == (2, 3, 5, 7, 4, 6)
    assert a.out_shape == (2, 3, 5, 6) and a.lse_shape == (2, 3, 5)
    assert a.mask_stride == (7, 0, 0, 1)
    assert a.scale == pytest.approx(0.5)
    assert _C.AttentionArgs((2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 6), (5, 1), "additive").mask_stride == (0, 0, 1, 0)


# ---- GPU: unwritten outputs are caught ----------------------------------------------------------------


@pytest.mark.gpu
def test_device_writes_every_output(rng):
    """Outputs poisoned with NaN before the launch; the CUDA result matches the CPU one."""
    q, k, v = qkv(rng, 2, 2, 130, 77, 32, 32, np.float32)
    mask = make_mask(rng, "bool_key_padding", 2, 2, 130, 77, np.float32)
    cpu_out, cpu_lse = kernels.sdpa_forward(q, k, v, mask)
    g = rng.standard_normal(cpu_out.shape).astype(np.float32)
    cpu_grads = kernels.sdpa_backward(q, k, v, cpu_out, cpu_lse, g, mask)
    cp = backend.array_module("cuda")
    dq, dk, dv, dm, dg = on("cuda", q, k, v, mask, g)
    a = _C.AttentionArgs(q.shape, k.shape, v.shape, mask.shape, "bool", False, None)
    out, lse = cp.full(a.out_shape, np.nan, np.float32), cp.full(a.lse_shape, np.nan, np.float32)
    backend.launch("sdpa_forward", "cuda", a, dq, dk, dv, dm, out, lse)
    grads = [cp.full(x.shape, np.nan, np.float32) for x in (q, k, v)]
    backend.launch("sdpa_backward", "cuda", a, dq, dk, dv, dm, out, lse, dg, *grads)
    assert rel_err(out, cpu_out) < 1e-4 and rel_err(lse, cpu_lse) < 1e-4
    for got, expected in zip(grads, cpu_grads):
        assert rel_err(got, expected) < 1e-4



@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("variant", ["fast", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_kernels_read_and_write_views_in_place(dtype, variant, threads, rng):
    """q, k, v as the heads of one packed (B, L, 3, H, E) projection, grad_output and the gradients
    as views of (B, L, ...) arrays: the same numbers as on contiguous copies, and out in the query's
    layout, (B, L, H, E) underneath. 150 positions: several query and key blocks, and with two
    threads a head's keys split over tasks (the summed dQ slots written back through strides)."""
    B, L, H, E = 2, 150, 3, 5
    x = rng.standard_normal((B, L, 3, H, E)).astype(dtype)
    q, k, v = x.transpose(2, 0, 3, 1, 4)
    copies = [np.ascontiguousarray(a) for a in (q, k, v)]
    mask = rng.random((B, 1, 1, L)) > 0.2
    mask[..., 0] = True
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    before = pyfastdl.get_num_threads()
    pyfastdl.set_num_threads(threads)
    try:
        for m, causal in ((None, True), (mask, False)):
            out, lse = kernels.sdpa_forward(q, k, v, m, causal, variant=variant)
            expected, expected_lse = kernels.sdpa_forward(*copies, m, causal, variant=variant)
            assert out.transpose(0, 2, 1, 3).flags.c_contiguous
            np.testing.assert_allclose(out, expected, **tol)
            np.testing.assert_allclose(lse, expected_lse, **tol)
            go = rng.standard_normal((B, L, H, E)).astype(dtype).transpose(0, 2, 1, 3)
            packed = np.full((B, L, 3, H, E), np.nan, dtype)
            grads = kernels.sdpa_backward(q, k, v, out, lse, go, m, causal, variant=variant,
                                          out=tuple(packed.transpose(2, 0, 3, 1, 4)))
            want = kernels.sdpa_backward(*copies, expected, expected_lse, np.ascontiguousarray(go), m, causal,
                                         variant=variant)
            for g, w in zip(grads, want):
                np.testing.assert_allclose(g, w, **tol)
            assert not np.isnan(packed).any()  # every gradient row written in place
    finally:
        pyfastdl.set_num_threads(before)


def test_cpu_kernels_copy_inputs_they_cannot_read_in_place(rng):
    """A key broadcast along its rows (stride 0), rows that are not contiguous, a read-only value:
    copied first, so the results equal the contiguous inputs'."""
    q, k, v = (rng.standard_normal((2, 3, 7, 4)).astype(np.float32) for _ in range(3))
    k_row = np.broadcast_to(k[:, :, :1], k.shape)
    k_cols = np.ascontiguousarray(k.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    v_ro = v.copy()
    v_ro.flags.writeable = False
    for kk, vv, kref in ((k_row, v, np.ascontiguousarray(k_row)), (k_cols, v_ro, k)):
        out, _ = kernels.sdpa_forward(q, kk, vv)
        np.testing.assert_allclose(out, kernels.sdpa_forward(q, kref, v)[0], rtol=1e-6)
