"""Property tests (hypothesis): the four kernel families on random small shapes, strides, paddings,
dilations, groups, masks, sequence lengths and dtypes, against the float64 references in
tests/reference/. Where the arguments are invalid the op must raise ValueError (and the reference's
shape arithmetic must agree that they are invalid); otherwise the results must match.

Examples are bounded and sizes small so the file runs in seconds (``deadline=None``: timings on a
shared 2-core machine vary too much for hypothesis's per-example deadline)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import attention as ref_attn
from reference import conv as ref_conv
from reference import lstm as ref_lstm
from reference import pool as ref_pool
from reference.nn import rel_err

from pyfastdl import kernels as K

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = st.sampled_from([np.float32, np.float64])
TOL = {np.float32: 1e-5, np.float64: 1e-10}


def _data(rng_seed, shape, dtype):
    return np.random.default_rng(rng_seed).standard_normal(shape).astype(dtype)


@PROPS
@given(n=st.integers(1, 2), groups=st.integers(1, 3), cg=st.integers(1, 3), kg=st.integers(1, 3),
       h=st.integers(1, 9), w=st.integers(1, 9), r=st.integers(1, 4), s=st.integers(1, 4),
       stride=st.tuples(st.integers(1, 4), st.integers(1, 4)), padding=st.tuples(st.integers(0, 3), st.integers(0, 3)),
       dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)), dtype=DTYPES, seed=st.integers(0, 2**31),
       variant=st.sampled_from(["fast", "reference"]))
def test_conv2d_matches_reference(n, groups, cg, kg, h, w, r, s, stride, padding, dilation, dtype, seed, variant):
    x = _data(seed, (n, groups * cg, h, w), dtype)
    wt = _data(seed + 1, (groups * kg, cg, r, s), dtype)
    P = (h + 2 * padding[0] - dilation[0] * (r - 1) - 1) // stride[0] + 1
    Q = (w + 2 * padding[1] - dilation[1] * (s - 1) - 1) // stride[1] + 1
    if min(h + 2 * padding[0] - dilation[0] * (r - 1), w + 2 * padding[1] - dilation[1] * (s - 1)) < 1:
        try:
            K.conv2d_forward(x, wt, None, stride, padding, dilation, groups, variant=variant)
        except ValueError as e:
            assert "conv2d" in str(e)
            return
        raise AssertionError(f"no error for an output of {P} x {Q}")
    y = K.conv2d_forward(x, wt, None, stride, padding, dilation, groups, variant=variant)
    assert rel_err(y, ref_conv.conv2d(x, wt, None, stride, padding, dilation, groups)) < TOL[dtype]
    gy = _data(seed + 2, y.shape, dtype)
    gx_ref, gw_ref, _ = ref_conv.conv2d_grads(x, wt, gy, stride, padding, dilation, groups)
    gx = K.conv2d_backward_input(gy, wt, x.shape, stride, padding, dilation, groups, variant=variant)
    gw = K.conv2d_backward_weight(x, gy, wt.shape, stride, padding, dilation, groups, variant=variant)
    assert rel_err(gx, gx_ref) < TOL[dtype] and rel_err(gw, gw_ref) < TOL[dtype]


@PROPS
@given(lead=st.sampled_from([(3,), (2, 3)]), h=st.integers(1, 9), w=st.integers(1, 9),
       k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.tuples(st.sampled_from([1, 2, 3, 5, 10**12]), st.sampled_from([1, 2, 3, 5, 10**12])),
       pad=st.tuples(st.integers(0, 2), st.integers(0, 2)), dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       ceil_mode=st.booleans(), dtype=DTYPES, seed=st.integers(0, 2**31))
def test_max_pool2d_matches_reference(lead, h, w, k, stride, pad, dilation, ceil_mode, dtype, seed):
    pad = (min(pad[0], k[0] // 2), min(pad[1], k[1] // 2))
    x = _data(seed, (*lead, h, w), dtype)
    oh = ref_pool.out_size(h, k[0], stride[0], pad[0], dilation[0], ceil_mode)
    ow = ref_pool.out_size(w, k[1], stride[1], pad[1], dilation[1], ceil_mode)
    if oh < 1 or ow < 1:
        try:
            K.max_pool2d_forward(x, k, stride, pad, dilation, ceil_mode)
        except ValueError as e:
            assert "max_pool2d" in str(e)
            return
        raise AssertionError(f"no error for an output of {oh} x {ow}")
    y, idx = K.max_pool2d_forward(x, k, stride, pad, dilation, ceil_mode)
    y_ref, idx_ref = ref_pool.max_pool2d(x, k, stride, pad, dilation, ceil_mode)
    assert np.array_equal(y, y_ref.astype(dtype)) and np.array_equal(idx, idx_ref)
    gy = _data(seed + 1, y.shape, dtype)
    gx = K.max_pool2d_backward(gy, idx, x.shape, k, stride, pad, dilation, ceil_mode)
    keep = idx_ref >= 0  # a window with no input cell (dilation) has no gradient to give
    gx_ref = ref_pool.max_pool2d_backward(np.where(keep, gy, 0), np.where(keep, idx_ref, 0), x.shape)
    assert rel_err(gx, gx_ref) < TOL[dtype]


@PROPS
@given(lead=st.sampled_from([(3,), (2, 3)]), h=st.integers(1, 9), w=st.integers(1, 9),
       k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.tuples(st.sampled_from([1, 2, 3, 5, 10**12]), st.sampled_from([1, 2, 3, 5, 10**12])),
       pad=st.tuples(st.integers(0, 2), st.integers(0, 2)), ceil_mode=st.booleans(), count_include_pad=st.booleans(),
       divisor_override=st.sampled_from([None, 3]), dtype=DTYPES, seed=st.integers(0, 2**31))
def test_avg_pool2d_matches_reference(lead, h, w, k, stride, pad, ceil_mode, count_include_pad, divisor_override,
                                      dtype, seed):
    pad = (min(pad[0], k[0] // 2), min(pad[1], k[1] // 2))
    x = _data(seed, (*lead, h, w), dtype)
    opts = (k, stride, pad, ceil_mode, count_include_pad, divisor_override)
    if min(ref_pool.out_size(h, k[0], stride[0], pad[0], 1, ceil_mode),
           ref_pool.out_size(w, k[1], stride[1], pad[1], 1, ceil_mode)) < 1:
        try:
            K.avg_pool2d_forward(x, *opts)
        except ValueError as e:
            assert "avg_pool2d" in str(e)
            return
        raise AssertionError("no error for an empty output")
    y = K.avg_pool2d_forward(x, *opts)
    assert rel_err(y, ref_pool.avg_pool2d(x, *opts)) < TOL[dtype]
    gy = _data(seed + 1, y.shape, dtype)
    assert rel_err(K.avg_pool2d_backward(gy, x.shape, *opts), ref_pool.avg_pool2d_backward(gy, x.shape, *opts)) < TOL[dtype]


@PROPS
@given(lead=st.sampled_from([(3,), (2, 3)]), h=st.integers(1, 9), w=st.integers(1, 9),
       out=st.tuples(st.integers(1, 10), st.integers(1, 10)), dtype=DTYPES, seed=st.integers(0, 2**31))
def test_adaptive_avg_pool2d_matches_reference(lead, h, w, out, dtype, seed):
    x = _data(seed, (*lead, h, w), dtype)
    y = K.adaptive_avg_pool2d_forward(x, out)
    assert rel_err(y, ref_pool.adaptive_avg_pool2d(x, out)) < TOL[dtype]
    gy = _data(seed + 1, y.shape, dtype)
    assert rel_err(K.adaptive_avg_pool2d_backward(gy, x.shape), ref_pool.adaptive_avg_pool2d_backward(gy, x.shape)) < TOL[dtype]


@PROPS
@given(t=st.integers(1, 6), b=st.integers(1, 5), i=st.integers(1, 6), hidden=st.integers(1, 6),
       reverse=st.booleans(), with_lengths=st.booleans(), bias=st.booleans(), dtype=DTYPES, seed=st.integers(0, 2**31))
def test_lstm_layer_matches_reference(t, b, i, hidden, reverse, with_lengths, bias, dtype, seed):
    rng = np.random.default_rng(seed)
    x, h0, c0 = (rng.standard_normal(s).astype(dtype) for s in ((t, b, i), (b, hidden), (b, hidden)))
    w_ih, w_hh = (0.5 * rng.standard_normal(s).astype(dtype) for s in ((4 * hidden, i), (4 * hidden, hidden)))
    b_ih, b_hh = (rng.standard_normal(4 * hidden).astype(dtype) for _ in range(2)) if bias else (None, None)
    lengths = rng.integers(1, t + 1, b) if with_lengths else None
    out, hn, cn, _ = K.lstm_layer_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=reverse, lengths=lengths)
    f64 = lambda a: None if a is None else a.astype(np.float64)  # noqa: E731
    out_ref, hn_ref, cn_ref = ref_lstm.lstm_layer(*(f64(a) for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)),
                                                  reverse=reverse, lengths=lengths)
    tol = 10 * TOL[dtype]  # a recurrence: float32 rounding compounds over the steps
    assert rel_err(out, out_ref) < tol and rel_err(hn, hn_ref) < tol and rel_err(cn, cn_ref) < tol


@PROPS
@given(b=st.integers(1, 2), h=st.integers(1, 3), L=st.integers(1, 9), S=st.integers(1, 9), e=st.integers(1, 8),
       ev=st.integers(1, 8), mask=st.sampled_from(["none", "causal", "bool", "additive", "key_padding"]),
       scale=st.sampled_from([None, 0.3]), dtype=DTYPES, seed=st.integers(0, 2**31),
       variant=st.sampled_from(["fast", "reference"]))
def test_attention_matches_reference(b, h, L, S, e, ev, mask, scale, dtype, seed, variant):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal(s).astype(dtype) for s in ((b, h, L, e), (b, h, S, e), (b, h, S, ev)))
    attn_mask, causal = None, mask == "causal"
    if mask == "bool":
        attn_mask = rng.random((L, S)) > 0.3
    elif mask == "additive":
        attn_mask = np.where(rng.random((b, 1, L, S)) > 0.2, rng.standard_normal((b, 1, L, S)), -np.inf).astype(dtype)
    elif mask == "key_padding":
        attn_mask = np.arange(S)[None, None, None, :] < rng.integers(1, S + 1, (b, 1, 1, 1))
    out, lse = K.sdpa_forward(q, k, v, attn_mask, causal, scale, variant=variant)
    assert rel_err(out, ref_attn.sdpa(q, k, v, attn_mask, causal, scale)) < 10 * TOL[dtype]
    g = rng.standard_normal(out.shape).astype(dtype)
    grads = K.sdpa_backward(q, k, v, out, lse, g, attn_mask, causal, scale, variant=variant)
    for got, want in zip(grads, ref_attn.sdpa_backward(q, k, v, g, attn_mask, causal, scale)):
        assert rel_err(got, want) < 10 * TOL[dtype]
