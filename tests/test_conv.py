"""Convolution family: raw kernels (every variant) against the float64 numpy reference over awkward
shapes, every backward by gradcheck, torch cross-checks, and the validation errors."""

import numpy as np
import pytest
from conftest import requires_torch
from reference import conv as ref

import pyfastdl as pf
from pyfastdl import backend
from pyfastdl import kernels as K
from pyfastdl.autograd import Function
from pyfastdl.nn import functional as F
from pyfastdl.testing import gradcheck

TOL = {np.float64: 1e-10, np.float32: 1e-5}
# Winograd F(4x4, 3x3) rounds about 10x more than a direct sum (its transforms scale by up to 8 and
# 1/24): measured 1e-6 to 3e-6 in float32 on these shapes and the models'.
WINOGRAD_TOL = {np.float64: 1e-10, np.float32: 1e-4}
VARIANTS = ["fast", "im2col", "reference"]  # for every shape; "winograd" has its own cases below

# (N, C, H, W, K, R, S, stride, padding, dilation, groups)
CASES = {
    "pointwise": (2, 3, 5, 7, 4, 1, 1, 1, 0, 1, 1),
    "pointwise_groups": (3, 4, 5, 5, 6, 1, 1, 1, 0, 1, 2),
    "1x1_stride2": (2, 3, 6, 5, 4, 1, 1, 2, 0, 1, 1),
    "1x1_padded": (2, 3, 4, 4, 2, 1, 1, 1, 1, 1, 1),
    "kernel_gt_stride": (3, 4, 9, 8, 6, 3, 3, 2, 1, 1, 1),
    "stride_gt_kernel": (2, 3, 11, 10, 5, 2, 2, 3, 1, 1, 1),
    "odd_rect": (1, 5, 7, 9, 3, 5, 3, (1, 2), (2, 1), 1, 1),
    "dilation2": (2, 4, 10, 9, 4, 3, 3, 1, 2, 2, 1),
    "groups2": (2, 4, 8, 8, 6, 3, 3, 1, 1, 1, 2),
    "depthwise": (2, 6, 9, 7, 6, 3, 3, 2, 1, 1, 6),
    "depthwise_x2": (1, 3, 6, 6, 6, 3, 3, 1, 1, 1, 3),
    "lenet_batch1": (1, 1, 32, 32, 6, 5, 5, 1, 0, 1, 1),
    "chunked_batch": (70, 2, 4, 5, 3, 3, 3, 1, 1, 1, 1),  # several images per GEMM, partial last chunk
    # the kernel covers the whole input (LeNet's C5): a fully connected layer, one GEMM over the batch
    "dense": (5, 4, 5, 5, 7, 5, 5, 1, 0, 1, 1),
    "dense_rect_batch1": (1, 3, 3, 4, 2, 3, 4, 2, 0, 1, 1),
    # large enough (> 2^20 multiply-adds) for the task-parallel path: one GEMM per thread
    "parallel_groups": (8, 8, 16, 16, 16, 3, 3, 1, 1, 1, 2),
    "parallel_pointwise": (4, 64, 16, 16, 64, 1, 1, 1, 0, 1, 1),
    "parallel_chunked": (41, 16, 6, 6, 16, 3, 3, 1, 1, 1, 1),
    # single images with a large im2col matrix, cut into blocks of output rows
    "row_blocks": (2, 16, 64, 64, 8, 3, 3, 1, 1, 1, 1),
    "row_blocks_strided": (1, 64, 61, 45, 4, 5, 5, 2, 2, 1, 1),
}


def rel_err(out, expected):
    out = np.asarray(out, np.float64)
    assert not np.isnan(out).any(), "output contains NaN"
    return np.linalg.norm(out - expected) / np.linalg.norm(expected)


def make_case(rng, case, dtype=np.float64):
    N, C, H, W, Kc, R, S, stride, padding, dilation, groups = CASES[case]
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((Kc, C // groups, R, S)).astype(dtype)
    b = rng.standard_normal(Kc).astype(dtype)
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


# ---- raw kernels against the reference --------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", sorted(CASES))
def test_conv2d_kernels(case, dtype, variant, rng):
    x, w, b, conf = make_case(rng, case, dtype)
    y_ref = ref.conv2d(x, w, b, **conf)
    gy = rng.standard_normal(y_ref.shape).astype(dtype)
    gx_ref, gw_ref, gb_ref = ref.conv2d_grads(x, w, gy, **conf)

    y = K.conv2d_forward(x, w, b, **conf, variant=variant)
    assert y.dtype == dtype and rel_err(y, y_ref) < TOL[dtype]
    gx = K.conv2d_backward_input(gy, w, x.shape, **conf, variant=variant)
    assert gx.dtype == dtype and rel_err(gx, gx_ref) < TOL[dtype]
    gw = K.conv2d_backward_weight(x, gy, w.shape, **conf, variant=variant)
    assert gw.dtype == dtype and rel_err(gw, gw_ref) < TOL[dtype]
    assert rel_err(K.conv2d_backward_bias(gy), gb_ref) < TOL[dtype]


# Winograd applies to 3x3 kernels with stride 1, dilation 1, groups 1, padding <= 2: (N, C, H, W, K, padding)
WINOGRAD_CASES = {
    "1x1_map": (2, 3, 1, 1, 4, 1),
    "batch1_odd": (1, 5, 7, 9, 3, 1),
    "pad0": (2, 8, 6, 5, 17, 0),
    "pad2": (2, 5, 7, 9, 3, 2),
    "pad2_tiny": (3, 2, 2, 1, 2, 2),
    "lanes_plus_one": (3, 9, 5, 6, 33, 1),  # channels one past a vector width (AVX2 and AVX-512, float and double)
    "many_blocks": (5, 17, 13, 11, 7, 1),  # several tile blocks, a partial last one
    "wide": (2, 64, 8, 8, 64, 1),  # the blocks' size limit (ResNet's last stage)
    "streamed_weights": (4, 176, 18, 18, 176, 1),  # transformed weights past 4 MiB: big blocks, a partial last
}


def make_winograd_case(rng, case, dtype):
    N, C, H, W, Kc, padding = WINOGRAD_CASES[case]
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((Kc, C, 3, 3)).astype(dtype)
    return x, w, rng.standard_normal(Kc).astype(dtype), dict(padding=padding)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", sorted(WINOGRAD_CASES))
def test_conv2d_winograd_kernels(case, dtype, rng):
    x, w, b, conf = make_winograd_case(rng, case, dtype)
    y_ref = ref.conv2d(x, w, b, **conf)
    gy = rng.standard_normal(y_ref.shape).astype(dtype)
    gx_ref, gw_ref, _ = ref.conv2d_grads(x, w, gy, **conf)
    tol = WINOGRAD_TOL[dtype]
    y = K.conv2d_forward(x, w, b, **conf, variant="winograd", out=np.full(y_ref.shape, np.nan, dtype))
    assert y.dtype == dtype and rel_err(y, y_ref) < tol
    gx = K.conv2d_backward_input(gy, w, x.shape, **conf, variant="winograd", out=np.full(x.shape, np.nan, dtype))
    assert rel_err(gx, gx_ref) < tol
    gw = K.conv2d_backward_weight(x, gy, w.shape, **conf, variant="winograd", out=np.full(w.shape, np.nan, dtype))
    assert rel_err(gw, gw_ref) < tol


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_conv2d_winograd_threads(threads, rng):
    """The blocks split over threads (and the weight gradient's per-thread sums) agree with the reference."""
    x, w, b, conf = make_winograd_case(rng, "many_blocks", np.float64)
    x = np.concatenate([x] * 4)  # enough work for the parallel path
    gy = rng.standard_normal(ref.conv2d(x, w, b, **conf).shape)
    gx_ref, gw_ref, _ = ref.conv2d_grads(x, w, gy, **conf)
    before = pf.get_num_threads()
    pf.set_num_threads(threads)
    try:
        assert rel_err(K.conv2d_forward(x, w, b, **conf, variant="winograd"), ref.conv2d(x, w, b, **conf)) < 1e-10
        assert rel_err(K.conv2d_backward_input(gy, w, x.shape, **conf, variant="winograd"), gx_ref) < 1e-10
        assert rel_err(K.conv2d_backward_weight(x, gy, w.shape, **conf, variant="winograd"), gw_ref) < 1e-10
    finally:
        pf.set_num_threads(before)


@pytest.mark.parametrize("isa", pf._C.cpu.available_isas())
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv2d_winograd_every_isa(isa, dtype, rng):
    """Each instruction set's copy (its own vector width and micro-kernel shape) against the reference."""
    x, w, b, conf = make_winograd_case(rng, "lanes_plus_one", dtype)
    gy = rng.standard_normal(ref.conv2d(x, w, b, **conf).shape).astype(dtype)
    gx_ref, gw_ref, _ = ref.conv2d_grads(x, w, gy, **conf)
    pf._C.cpu.set_isa(isa)
    try:
        assert rel_err(K.conv2d_forward(x, w, b, **conf, variant="winograd"), ref.conv2d(x, w, b, **conf)) < \
            WINOGRAD_TOL[dtype]
        assert rel_err(K.conv2d_backward_input(gy, w, x.shape, **conf, variant="winograd"), gx_ref) < WINOGRAD_TOL[dtype]
        assert rel_err(K.conv2d_backward_weight(x, gy, w.shape, **conf, variant="winograd"), gw_ref) < WINOGRAD_TOL[dtype]
    finally:
        pf._C.cpu.set_isa(pf._C.cpu.best_isa())


def test_winograd_weight_gradient_is_the_same_bits_every_run(rng):
    """Like the im2col weight gradient (test_weight_gradient_is_the_same_bits_every_run): each thread
    sums a fixed share of the tiles and the shares are added in order, whatever the load."""
    import subprocess
    import sys

    x = rng.standard_normal((32, 16, 12, 12)).astype(np.float32)  # enough tiles for the parallel path
    gy = rng.standard_normal((32, 16, 12, 12)).astype(np.float32)
    before = pf.get_num_threads()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    pf.set_num_threads(3)  # more threads than cores
    try:
        first = K.conv2d_backward_weight(x, gy, (16, 16, 3, 3), padding=1, variant="winograd")
        for _ in range(40):
            again = K.conv2d_backward_weight(x.copy(), gy.copy(), (16, 16, 3, 3), padding=1, variant="winograd")
            np.testing.assert_array_equal(again, first)
    finally:
        pf.set_num_threads(before)
        busy.kill()


# The direct kernel's register tiles hold 14 output rows with AVX-512 (6 with AVX2 and base): "fast"
# takes a row of 8 outputs direct with the first, through im2col with the others (two tiles of 6, 2/3
# full): ROW_OF_8 stands for that pick.
ROW_OF_8 = "direct under AVX-512, else im2col"
# On a 5x5 map a 3x3 layer's Winograd tiles are mostly outside the map: "fast" goes direct with
# AVX-512's 14-row tiles (a third full; packed weights within 512 KiB), Winograd with the others.
SMALL_MAP = "direct under AVX-512, else winograd"

# (C, K, kernel, stride, map side) -> the variant "fast" runs for (forward, input gradient, weight gradient)
FAST_PICKS = [
    ((16, 8, 3, 1, 9), ("winograd", "winograd", "winograd")),
    ((16, 16, 3, 1, 5), (SMALL_MAP, SMALL_MAP, "direct")),  # a small map: the weight gradient goes direct
    ((64, 64, 3, 1, 5), (SMALL_MAP, SMALL_MAP, "direct")),  # ResNet-20's last stage (recipe's 20x20 crops)
    ((64, 64, 3, 1, 6), ("winograd", "winograd", "direct")),  # Winograd's tiles over half full: it stays
    ((64, 64, 3, 1, 3), ("winograd", "winograd", "direct")),  # direct's rows of 3 would fill 3/14 of its tiles
    ((3, 16, 3, 1, 12), ("direct", "im2col", "direct")),  # few input channels: Winograd does not pay
    ((16, 4, 3, 1, 12), ("direct", "direct", "direct")),
    ((6, 16, 5, 1, 16), ("direct", "im2col", "direct")),  # LeNet-5 C3, output rows of 12
    ((16, 16, 3, 2, 23), ("direct", "im2col", "direct")),  # stride 2 (the input gradient: direct needs stride 1)
    ((16, 16, 3, 2, 15), (ROW_OF_8, "im2col", "direct")),  # stride 2, output rows of 8
    ((32, 96, 5, 1, 16), ("direct", "direct", "direct")),  # packed weights 300 KiB: still read from L2
    ((64, 128, 5, 1, 16), ("im2col", "im2col", "im2col")),  # packed weights 800 KiB: im2col's GEMM
    ((16, 8, 1, 1, 9), ("im2col", "im2col", "im2col")),  # pointwise: plain GEMMs
    ((16, 8, 5, 1, 5), ("im2col", "im2col", "im2col")),  # the kernel covers the map: a fully connected layer
    ((64, 128, 3, 2, 9), ("im2col", "im2col", "im2col")),  # strided, C*K > 2048: im2col's GEMM beats direct
    ((129, 128, 3, 1, 4), ("winograd", "winograd", "im2col")),  # wide (C*K > 128*128): big tile blocks
    ((129, 128, 3, 1, 2), ("im2col", "im2col", "im2col")),  # wide on a 2x2 map: 3/4 of a Winograd tile wasted
    ((128, 128, 3, 1, 4), ("winograd", "winograd", "direct")),  # the widest layer Winograd takes
]


@pytest.mark.parametrize("isa", pf._C.cpu.available_isas())
@pytest.mark.parametrize("shape,chosen", FAST_PICKS)
def test_fast_picks_per_shape(shape, chosen, isa, rng):
    """"fast" picks a variant per shape and pass (the variants round differently, so the results tell
    them apart), in every instruction set's copy this CPU runs."""
    other = {ROW_OF_8: "im2col", SMALL_MAP: "winograd"}
    chosen = [("direct" if isa == "avx512" else other[c]) if c in other else c for c in chosen]
    pf._C.cpu.set_isa(isa)
    try:
        check_picks(shape, chosen, rng)
    finally:
        pf._C.cpu.set_isa(pf._C.cpu.best_isa())


def check_picks(shape, chosen, rng):
    C, Kc, k, stride, side = shape
    pad = 1 if k == 3 else 0
    x = rng.standard_normal((2, C, side, side)).astype(np.float32)
    w = rng.standard_normal((Kc, C, k, k)).astype(np.float32)
    gy = K.conv2d_forward(x, w, None, stride, pad)
    calls = [(K.conv2d_forward, (x, w, None, stride, pad)), (K.conv2d_backward_input, (gy, w, x.shape, stride, pad)),
             (K.conv2d_backward_weight, (x, gy, w.shape, stride, pad))]
    for (kernel, args), variant in zip(calls, chosen):
        assert np.array_equal(kernel(*args), kernel(*args, variant=variant)), (kernel.__name__, variant)


def same_nonfinite(out, expected, tol):
    """out and expected have NaN and +-Inf in the same places, and agree elsewhere."""
    assert np.array_equal(np.isnan(out), np.isnan(expected)) and np.array_equal(out == np.inf, expected == np.inf)
    assert np.array_equal(out == -np.inf, expected == -np.inf)
    ok = np.isfinite(expected)
    assert np.linalg.norm(out[ok] - expected[ok]) <= tol * np.linalg.norm(expected[ok])


# (C, K, kernel, stride, map side, padding, dilation, groups): unpadded, grouped and dilated layers
NON_FINITE_SHAPES = [(*s, 1 if s[2] == 3 else 0, 1, 1) for s, _ in FAST_PICKS] + [
    (16, 8, 3, 1, 9, 0, 1, 1), (3, 16, 3, 1, 12, 0, 1, 1), (4, 6, 3, 1, 7, 1, 1, 2), (4, 6, 3, 1, 7, 2, 2, 2),
    (16, 16, 3, 1, 16, 1, 1, 2), (6, 6, 3, 2, 9, 1, 1, 6)]


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", NON_FINITE_SHAPES)
def test_fast_variants_skip_the_padding_on_non_finite_values(shape, dtype, value, rng):
    """A NaN/Inf in x, the weight or dy reaches the outputs the definition (and torch's float32
    oneDNN convolutions) says, in each of the three passes: "fast" must not multiply it by the zero
    padding (im2col's columns, the direct variant's padded copy) nor spread it over a Winograd tile;
    the reference loops are the judge."""
    C, Kc, k, stride, side, pad, dil, groups = shape
    x = rng.standard_normal((2, C, side, side)).astype(dtype)
    w = rng.standard_normal((Kc, C // groups, k, k)).astype(dtype)
    conf = (stride, pad, dil, groups)
    gy = rng.standard_normal(K.conv2d_forward(x, w, None, *conf).shape).astype(dtype)
    calls = [(K.conv2d_forward, (x, w, None, *conf)), (K.conv2d_backward_input, (gy, w, x.shape, *conf)),
             (K.conv2d_backward_weight, (x, gy, w.shape, *conf))]
    for kernel, args in calls:
        for i in (0, 1):
            for at in (0, -1, args[i].size // 2 + 1):  # a corner (meets the padding), the far corner, inside
                bad = args[i].copy()
                bad.flat[at] = value
                call = list(args)
                call[i] = bad
                out, ref_out = kernel(*call), kernel(*call, variant="reference")
                same_nonfinite(out, ref_out, WINOGRAD_TOL[dtype])


@requires_torch
def test_non_finite_weight_meets_padding_as_in_torch(rng):
    """The three passes in float32 against torch's (oneDNN's) on a NaN weight, an Inf in x and a NaN in dy."""
    import torch

    for C, Kc, k, stride, side in ((16, 8, 3, 1, 9), (3, 16, 3, 1, 12), (16, 16, 3, 2, 15), (129, 128, 3, 1, 4)):
        x = rng.standard_normal((2, C, side, side)).astype(np.float32)
        w = rng.standard_normal((Kc, C, k, k)).astype(np.float32)
        x[0, 0, 0, 1], w[0, 0, 0, 0] = np.inf, np.nan
        xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        yt = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=1)
        gy = rng.standard_normal(yt.shape).astype(np.float32)
        gy[1, 0, 0, 0] = np.nan
        yt.backward(torch.tensor(gy))
        same_nonfinite(K.conv2d_forward(x, w, None, stride, 1), yt.detach().numpy(), 1e-4)
        same_nonfinite(K.conv2d_backward_input(gy, w, x.shape, stride, 1), xt.grad.numpy(), 1e-4)
        same_nonfinite(K.conv2d_backward_weight(x, gy, w.shape, stride, 1), wt.grad.numpy(), 1e-4)


def test_winograd_gradcheck(rng):
    """Through nn.functional (the "fast" variant picks Winograd for these channel counts), float64."""
    x, w, b = leaves(rng, (2, 8, 5, 6), (8, 8, 3, 3), (8,))
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=1), (x, w, b))


# The direct variant: dilation 1, groups 1, any kernel, stride and padding (its input gradient: stride 1
# and padding < kernel). (N, C, H, W, K, R, S, stride, padding)
DIRECT_CASES = {
    "1x1_map": (2, 3, 1, 1, 4, 1, 1, 1, 0),
    "pointwise": (3, 5, 4, 7, 9, 1, 1, 1, 0),
    "lenet_c1_batch1": (1, 1, 32, 32, 6, 5, 5, 1, 0),
    "5x5_pad2": (2, 6, 9, 7, 17, 5, 5, 1, 2),  # K one past two AVX2 float vectors
    "kernel_is_map": (3, 16, 5, 5, 33, 5, 5, 1, 0),  # LeNet's C5: one output per image
    "odd_rect": (1, 5, 7, 9, 3, 5, 3, 1, (2, 1)),
    "pad_max": (2, 3, 4, 5, 4, 3, 3, 1, 2),  # padding R - 1: dy's padding in the input gradient is 0
    "stride2_5x5": (3, 3, 15, 13, 16, 5, 5, 2, 2),  # YOLO's stem, small
    "stride2_3x3": (2, 8, 9, 8, 16, 3, 3, 2, 1),  # ResNet's down-sampling layers
    "stride_gt_kernel": (2, 3, 11, 10, 5, 2, 2, 3, 1),
    "rect_stride": (2, 4, 10, 9, 7, 3, 3, (1, 2), 1),
    "pad_gt_kernel": (2, 3, 5, 5, 4, 3, 3, 1, 3),  # forward and weight gradient only
    "many_rows": (9, 7, 12, 11, 24, 3, 3, 1, 1),  # enough work for the parallel path
}


def direct_input_gradient_applies(R, S, stride, padding):
    pad = padding if isinstance(padding, tuple) else (padding, padding)
    return stride == 1 and pad[0] < R and pad[1] < S


def make_direct_case(rng, case, dtype):
    N, C, H, W, Kc, R, S, stride, padding = DIRECT_CASES[case]
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((Kc, C, R, S)).astype(dtype)
    b = rng.standard_normal(Kc).astype(dtype)
    return x, w, b, dict(stride=stride, padding=padding)


def check_direct(rng, case, dtype, tol):
    x, w, b, conf = make_direct_case(rng, case, dtype)
    y_ref = ref.conv2d(x, w, b, **conf)
    gy = rng.standard_normal(y_ref.shape).astype(dtype)
    gx_ref, gw_ref, _ = ref.conv2d_grads(x, w, gy, **conf)
    y = K.conv2d_forward(x, w, b, **conf, variant="direct", out=np.full(y_ref.shape, np.nan, dtype))
    assert y.dtype == dtype and rel_err(y, y_ref) < tol
    gw = K.conv2d_backward_weight(x, gy, w.shape, **conf, variant="direct", out=np.full(w.shape, np.nan, dtype))
    assert rel_err(gw, gw_ref) < tol
    if direct_input_gradient_applies(*w.shape[2:], **conf):
        gx = K.conv2d_backward_input(gy, w, x.shape, **conf, variant="direct", out=np.full(x.shape, np.nan, dtype))
        assert rel_err(gx, gx_ref) < tol
    else:
        with pytest.raises(ValueError, match="conv2d_backward_input_direct: the direct variant needs"):
            K.conv2d_backward_input(gy, w, x.shape, **conf, variant="direct")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", sorted(DIRECT_CASES))
def test_conv2d_direct_kernels(case, dtype, rng):
    check_direct(rng, case, dtype, TOL[dtype])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_conv2d_direct_threads(threads, rng):
    """Output rows split over threads, the weight gradient's per-thread sums: against the reference."""
    before = pf.get_num_threads()
    pf.set_num_threads(threads)
    try:
        check_direct(rng, "many_rows", np.float64, 1e-10)
        check_direct(rng, "stride2_5x5", np.float64, 1e-10)
    finally:
        pf.set_num_threads(before)


@pytest.mark.parametrize("isa", pf._C.cpu.available_isas())
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv2d_direct_every_isa(isa, dtype, rng):
    pf._C.cpu.set_isa(isa)
    try:
        check_direct(rng, "5x5_pad2", dtype, TOL[dtype])
    finally:
        pf._C.cpu.set_isa(pf._C.cpu.best_isa())


@pytest.mark.parametrize("shape,conf", [(((2, 3, 9, 8), (16, 3, 5, 5)), dict(stride=2, padding=2)),
                                        (((2, 6, 7, 7), (16, 6, 5, 5)), dict(padding=2)),
                                        (((2, 8, 6, 7), (8, 8, 3, 3)), dict(stride=2, padding=1))])
def test_direct_gradcheck(shape, conf, rng):
    """Through nn.functional with every pass on the direct variant, float64."""
    x, w, b = leaves(rng, *shape, (shape[1][0],))
    direct = dict(conf, variant="direct")
    stride1 = direct_input_gradient_applies(*shape[1][2:], conf.get("stride", 1), conf["padding"])

    class Direct(Function):
        @staticmethod
        def forward(ctx, x, w, b):
            ctx.save_for_backward(x, w)
            return K.conv2d_forward(x, w, b, **direct)

        @staticmethod
        def backward(ctx, gy):
            x, w = ctx.saved_tensors
            gx = K.conv2d_backward_input(gy, w, x.shape, **(direct if stride1 else conf))
            return gx, K.conv2d_backward_weight(x, gy, w.shape, **direct), K.conv2d_backward_bias(gy)

    assert gradcheck(lambda x, w, b: Direct.apply(x, w, b), (x, w, b))


# (N, Cin, H, W, Cout, R, S, stride, padding, output_padding, groups, dilation)
TRANSPOSED = {
    "fcn_k4s2": (2, 3, 5, 4, 3, 4, 4, 2, 1, 0, 1, 1),
    "fcn_k16s8": (1, 2, 3, 3, 2, 16, 16, 8, 4, 0, 1, 1),
    "output_padding": (2, 4, 3, 5, 6, 3, 3, 2, 1, 1, 2, 1),
    "output_padding_dilation": (1, 2, 4, 3, 3, 2, 3, 1, 0, 1, 1, 2),  # op >= stride but < dilation
    "rect": (3, 2, 4, 6, 4, 3, 2, (2, 3), (1, 0), (1, 2), 1, 1),
}


def make_transposed(rng, case, dtype=np.float64):
    N, Cin, H, W, Cout, R, S, stride, padding, output_padding, groups, dilation = TRANSPOSED[case]
    x = rng.standard_normal((N, Cin, H, W)).astype(dtype)
    w = rng.standard_normal((Cin, Cout // groups, R, S)).astype(dtype)
    b = rng.standard_normal(Cout).astype(dtype)
    conf = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    return x, w, b, conf


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", sorted(TRANSPOSED))
def test_conv_transpose2d_forward_kernel(case, dtype, variant, rng):
    x, w, b, conf = make_transposed(rng, case, dtype)
    y = K.conv_transpose2d_forward(x, w, b, **conf, variant=variant)
    assert y.dtype == dtype and rel_err(y, ref.conv_transpose2d(x, w, b, **conf)) < TOL[dtype]


def test_args_shapes():
    a = K.conv2d_args((2, 4, 9, 11), (6, 2, 3, 3), stride=2, padding=(1, 0), dilation=1, groups=2)
    assert (a.x_shape, a.w_shape, a.out_shape) == ((2, 4, 9, 11), (6, 2, 3, 3), (2, 6, 5, 5))
    assert a.macs == 2 * 6 * 5 * 5 * 2 * 3 * 3 and not a.is_pointwise
    t = K.conv_transpose2d_args((2, 21, 8, 8), (21, 21, 4, 4), stride=2, padding=1)
    assert t.out_shape == (2, 21, 8, 8) and t.x_shape == (2, 21, 16, 16)
    assert "Conv2dArgs(" in repr(a)


# ---- gradcheck of every backward ----------------------------------------------------------------------


def leaves(rng, *shapes):
    return tuple(pf.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes)


@pytest.mark.parametrize(
    "conf",
    [
        dict(stride=1, padding=0, dilation=1, groups=1),
        dict(stride=2, padding=1, dilation=1, groups=2),
        dict(stride=(1, 2), padding=(2, 1), dilation=2, groups=1),
        dict(stride=1, padding="same", dilation=1, groups=1),
    ],
    ids=["plain", "stride2_groups2", "dilated", "same_even"],
)
def test_conv2d_gradcheck(conf, rng):
    x, w, b = leaves(rng, (2, 4, 7, 6), (4, 4 // conf["groups"], 2 if conf["padding"] == "same" else 3, 3), (4,))
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, **conf), (x, w, b))


def test_conv2d_gradcheck_pointwise_no_bias(rng):
    x, w = leaves(rng, (2, 3, 4, 5), (5, 3, 1, 1))
    assert gradcheck(lambda x, w: F.conv2d(x, w), (x, w))


@pytest.mark.parametrize(
    "conf",
    [
        dict(stride=2, padding=1, output_padding=0, groups=1, dilation=1),
        dict(stride=2, padding=0, output_padding=1, groups=2, dilation=1),
        dict(stride=1, padding=1, output_padding=1, groups=1, dilation=2),
    ],
    ids=["k4s2", "output_padding_groups", "dilated"],
)
def test_conv_transpose2d_gradcheck(conf, rng):
    x, w, b = leaves(rng, (2, 4, 3, 4), (4, 2, 4, 3), (2 * conf["groups"],))
    assert gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, **conf), (x, w, b))


@pytest.mark.parametrize(
    "conf",
    [dict(stride=1, padding=1, dilation=1, groups=1), dict(stride=2, padding=0, dilation=2, groups=2),
     dict(stride=1, padding="same", dilation=1, groups=1)],
    ids=["convs2s", "strided_dilated_groups", "same_even"],
)
def test_conv1d_gradcheck(conf, rng):
    k = 4 if conf["padding"] == "same" else 3
    x, w, b = leaves(rng, (2, 4, 9), (6, 4 // conf["groups"], k), (6,))
    assert gradcheck(lambda x, w, b: F.conv1d(x, w, b, **conf), (x, w, b))


def test_conv2d_functional_matches_reference(rng):
    x, w, b, conf = make_case(rng, "groups2")
    y = F.conv2d(pf.tensor(x), pf.tensor(w), pf.tensor(b), **conf)
    assert rel_err(y.numpy(), ref.conv2d(x, w, b, **conf)) < 1e-10


def test_noncontiguous_input_is_copied(rng):
    x = rng.standard_normal((2, 3, 6, 8))[:, :, :, ::2]
    w = rng.standard_normal((4, 3, 3, 3))
    y = F.conv2d(pf.tensor(x), pf.tensor(w), padding=1)
    assert rel_err(y.numpy(), ref.conv2d(x, w, padding=1)) < 1e-10


# ---- torch cross-checks -----------------------------------------------------------------------------


def torch_grads(fn, arrays):
    import torch

    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = fn(*ts)
    gy = torch.from_numpy(np.random.default_rng(1).standard_normal(tuple(y.shape)).astype(arrays[0].dtype))
    y.backward(gy)
    return y.detach().numpy(), gy.numpy(), [t.grad.numpy() for t in ts]


def ours_grads(fn, arrays, gy):
    ts = [pf.tensor(a, requires_grad=True) for a in arrays]
    y = fn(*ts)
    y.backward(pf.tensor(gy))
    return y.detach().numpy(), [t.grad.numpy() for t in ts]


TORCH_CASES = [
    ("conv2d", dict(stride=2, padding=1, dilation=1, groups=2), (3, 4, 11, 9), (6, 2, 3, 3)),
    ("conv2d", dict(stride=1, padding="same", dilation=2, groups=1), (2, 3, 8, 7), (4, 3, 4, 3)),
    ("conv2d", dict(stride=1, padding="valid", dilation=1, groups=1), (2, 3, 8, 7), (4, 3, 3, 3)),
    ("conv2d", dict(stride=1, padding=0, dilation=1, groups=1), (4, 16, 7, 7), (8, 16, 1, 1)),
    ("conv2d", dict(stride=1, padding=1, dilation=1, groups=1), (3, 16, 7, 9), (12, 16, 3, 3)),  # Winograd
    ("conv1d", dict(stride=1, padding="same", dilation=1, groups=1), (2, 6, 10), (8, 6, 4)),
    ("conv1d", dict(stride=2, padding=1, dilation=1, groups=3), (2, 6, 11), (9, 2, 3)),
    ("conv_transpose2d", dict(stride=2, padding=1, output_padding=1, groups=1, dilation=1), (2, 5, 6, 5),
     (5, 3, 4, 4)),
    ("conv_transpose2d", dict(stride=8, padding=4, output_padding=0, groups=1, dilation=1), (1, 3, 3, 4),
     (3, 3, 16, 16)),
    ("conv_transpose2d", dict(stride=1, padding=0, output_padding=1, groups=2, dilation=2), (2, 4, 5, 4),
     (4, 2, 3, 3)),
]


@requires_torch
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on its own copy
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op,conf,x_shape,w_shape", TORCH_CASES)
def test_against_torch(op, conf, x_shape, w_shape, dtype, rng):
    import torch

    tfn, ofn = getattr(torch.nn.functional, op), getattr(F, op)
    bias_len = w_shape[1] * conf["groups"] if op == "conv_transpose2d" else w_shape[0]
    arrays = [rng.standard_normal(s).astype(dtype) for s in (x_shape, w_shape, (bias_len,))]
    y_t, gy, grads_t = torch_grads(lambda x, w, b: tfn(x, w, b, **conf), arrays)
    y, grads = ours_grads(lambda x, w, b: ofn(x, w, b, **conf), arrays, gy)
    assert y.shape == y_t.shape and rel_err(y, y_t) < TOL[dtype]
    for g, g_t in zip(grads, grads_t):
        assert g.dtype == dtype and rel_err(g, g_t) < TOL[dtype]


# ---- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x_shape,w_shape,conf,match",
    [
        ((2, 3, 8), (4, 3, 3, 3), {}, "input must have 4 dimensions"),
        ((2, 3, 8, 8), (4, 3, 3), {}, "weight must have 4 dimensions"),
        ((2, 3, 8, 8), (4, 2, 3, 3), {}, "channel mismatch"),
        ((2, 3, 8, 8), (4, 1, 3, 3), dict(groups=2), "input channels 3 must be divisible by groups 2"),
        ((2, 4, 8, 8), (3, 2, 3, 3), dict(groups=2), "out channels 3 must be divisible by groups 2"),
        ((2, 3, 8, 8), (4, 3, 3, 3), dict(stride=0), "stride must be > 0"),
        ((2, 3, 8, 8), (4, 3, 3, 3), dict(stride=(1, -1)), "stride must be > 0"),
        ((2, 3, 8, 8), (4, 3, 3, 3), dict(padding=-1), "padding must be >= 0"),
        ((2, 3, 8, 8), (4, 3, 3, 3), dict(dilation=0), "dilation must be > 0"),
        ((2, 3, 8, 8), (4, 3, 3, 3), dict(groups=0), "groups must be > 0"),
        ((2, 3, 4, 8), (4, 3, 5, 3), {}, "output height would be < 1"),
        ((2, 3, 8, 4), (4, 3, 3, 3), dict(dilation=2), "output width would be < 1"),
        ((0, 3, 8, 8), (4, 3, 3, 3), {}, "input has a zero-size dimension"),
        ((2, 3, 8, 8), (0, 3, 3, 3), {}, "weight has a zero-size dimension"),
        ((2, 3, 8, 8), (4, 3, 3, 3), dict(stride=(1, 2, 3)), "stride must be an int or a pair"),
    ],
)
def test_conv2d_args_errors(x_shape, w_shape, conf, match):
    with pytest.raises(ValueError, match=match):
        K.conv2d_args(x_shape, w_shape, **conf)


def test_conv2d_args_type_errors():
    with pytest.raises(TypeError, match="padding must be an int or a pair"):
        K.conv2d_args((2, 3, 8, 8), (4, 3, 3, 3), padding="same")  # strings are resolved by nn.functional


@pytest.mark.parametrize(
    "x_shape,w_shape,conf,match",
    [
        ((2, 4, 5, 5), (3, 2, 3, 3), {}, "channel mismatch"),
        ((2, 4, 5, 5), (4, 2, 3, 3), dict(stride=2, output_padding=2), "output_padding must be >= 0 and smaller"),
        ((2, 4, 5, 5), (4, 2, 3, 3), dict(output_padding=1), "output_padding must be >= 0 and smaller"),
        ((2, 3, 5, 5), (3, 2, 3, 3), dict(groups=2), "input channels 3 must be divisible by groups 2"),
        ((2, 4, 1, 1), (4, 2, 1, 1), dict(padding=1), "output size would be < 1"),
        ((2, 4, 5), (4, 2, 3, 3), {}, "input must have 4 dimensions"),
    ],
)
def test_conv_transpose2d_args_errors(x_shape, w_shape, conf, match):
    with pytest.raises(ValueError, match=match):
        K.conv_transpose2d_args(x_shape, w_shape, **conf)


def test_kernel_array_errors(rng):
    x, w, b, conf = make_case(rng, "groups2")
    a = K.conv2d_args(x.shape, w.shape, **conf)
    y = np.empty(a.out_shape)
    cpu = pf._C.cpu
    with pytest.raises(TypeError, match="conv2d_forward: weight is float64 but .*x is float32|x is float32 but weight"):
        cpu.conv2d_forward(a, x.astype(np.float32), w, b, y)
    with pytest.raises(TypeError, match="conv2d_forward: x has dtype int64"):
        cpu.conv2d_forward(a, x.astype(np.int64), w, b, y)
    with pytest.raises(TypeError, match="conv2d_forward: weight must be a numpy array"):
        cpu.conv2d_forward(a, x, w.tolist(), b, y)
    with pytest.raises(ValueError, match="conv2d_forward: x must be C-contiguous"):
        cpu.conv2d_forward(a, np.asfortranarray(x), w, b, y)
    with pytest.raises(ValueError, match=r"conv2d_forward: bias has shape \(5,\), expected \(6,\)"):
        cpu.conv2d_forward(a, x, w, b[:5].copy(), y)
    with pytest.raises(ValueError, match="conv2d_forward: out has shape"):
        cpu.conv2d_forward(a, x, w, b, np.empty((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="conv2d_backward_input: grad_out must be C-contiguous"):
        cpu.conv2d_backward_input(a, y.transpose(0, 1, 3, 2), w, np.empty_like(x))
    with pytest.raises(TypeError, match="conv2d_backward_weight: grad_weight has dtype"):
        cpu.conv2d_backward_weight(a, x, y, np.empty(w.shape, np.float16))
    with pytest.raises(ValueError, match=r"conv_transpose2d: bias must have shape \(4,\)"):
        K.conv_transpose2d_forward(x, np.ones((4, 2, 3, 3)), np.ones(6), groups=2)
    with pytest.raises(ValueError, match="variant must be one of"):
        K.conv2d_forward(x, w, **conf, variant="im2row")
    with pytest.raises(ValueError, match=r"conv2d_forward_direct: the direct variant needs dilation 1 and groups 1"
                                         r".*groups 2"):
        K.conv2d_forward(x, w, **conf, variant="direct")
    with pytest.raises(ValueError, match=r"conv2d_backward_input_direct: .*stride 1 and padding smaller than the "
                                         r"kernel.*stride \(2, 2\)"):
        K.conv2d_backward_input(np.ones((1, 2, 3, 3)), np.ones((2, 2, 3, 3)), (1, 2, 6, 6), stride=2, padding=1,
                                variant="direct")
    with pytest.raises(ValueError, match=r"conv2d_forward_winograd: the winograd variant needs a 3x3 kernel, stride "
                                         r"1, dilation 1, groups 1 .*groups 2"):
        K.conv2d_forward(x, w, **conf, variant="winograd")
    with pytest.raises(ValueError, match=r"conv2d_backward_input_winograd: .*padding \(3, 3\)"):
        K.conv2d_backward_input(np.ones((1, 2, 10, 10)), np.ones((2, 2, 3, 3)), (1, 2, 6, 6), padding=3,
                                variant="winograd")


def test_functional_errors(rng):
    x, w = pf.tensor(rng.standard_normal((1, 2, 6, 6))), pf.tensor(rng.standard_normal((2, 2, 3, 3)))
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        F.conv2d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match="invalid padding string 'full'"):
        F.conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match="conv1d: input and weight must have 3 dimensions"):
        F.conv1d(x, w)
    with pytest.raises(ValueError, match="conv2d: channel mismatch"):
        F.conv2d(x, pf.tensor(rng.standard_normal((2, 3, 3, 3))))


# ---- every device: raw kernels against the CPU reference, outputs poisoned --------------------------


@pytest.mark.parametrize(
    "case", ["pointwise", "kernel_gt_stride", "depthwise", "chunked_batch", "parallel_groups", "row_blocks"]
)
def test_raw_kernels_on_device(device, case, rng):
    x, w, b, conf = make_case(rng, case, np.float32)
    y_ref = ref.conv2d(x, w, b, **conf)
    gy = rng.standard_normal(y_ref.shape).astype(np.float32)
    gx_ref, gw_ref, _ = ref.conv2d_grads(x, w, gy, **conf)
    xp = backend.array_module(device)
    dx, dw, dy, db = (xp.asarray(a) for a in (x, w, gy, b))
    tol = TOL[np.float32] if device == "cpu" else 1e-4

    def poisoned(shape):
        return xp.full(shape, np.nan, np.float32)

    y = K.conv2d_forward(dx, dw, db, **conf, out=poisoned(y_ref.shape))
    assert rel_err(backend.to_device(y, "cpu"), y_ref) < tol
    gx = K.conv2d_backward_input(dy, dw, x.shape, **conf, out=poisoned(x.shape))
    assert rel_err(backend.to_device(gx, "cpu"), gx_ref) < tol
    gw = K.conv2d_backward_weight(dx, dy, w.shape, **conf, out=poisoned(w.shape))
    assert rel_err(backend.to_device(gw, "cpu"), gw_ref) < tol


@pytest.mark.parametrize("threads", [1, 3])
def test_thread_counts(threads, rng):
    """Task-parallel and serial paths agree for other thread counts (and uneven task splits)."""
    x, w, b, conf = make_case(rng, "parallel_chunked")
    gy = rng.standard_normal(ref.conv2d(x, w, b, **conf).shape)
    gx_ref, gw_ref, _ = ref.conv2d_grads(x, w, gy, **conf)
    before = pf.get_num_threads()
    pf.set_num_threads(threads)
    try:
        assert rel_err(K.conv2d_forward(x, w, b, **conf), ref.conv2d(x, w, b, **conf)) < 1e-10
        assert rel_err(K.conv2d_backward_input(gy, w, x.shape, **conf), gx_ref) < 1e-10
        assert rel_err(K.conv2d_backward_weight(x, gy, w.shape, **conf), gw_ref) < 1e-10
    finally:
        pf.set_num_threads(before)


def test_weight_gradient_is_the_same_bits_every_run(rng):
    """The task-parallel weight gradient sums its per-chunk copies in a fixed order, so repeated
    calls give identical bits however the threads share the tasks out -- here with a busy process
    beside them, under which the old per-thread accumulation differed in the last bits now and then
    (about one call in 40 here: this test caught it often, not always). A resumed training run must
    retrace an uninterrupted one."""
    import subprocess
    import sys

    x = rng.standard_normal((32, 6, 14, 14)).astype(np.float32)
    gy = rng.standard_normal((32, 16, 10, 10)).astype(np.float32)
    before = pf.get_num_threads()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    pf.set_num_threads(3)  # more threads than cores: the tasks' assignment varies from call to call
    try:
        first = K.conv2d_backward_weight(x, gy, (16, 6, 5, 5))
        for _ in range(40):
            np.testing.assert_array_equal(K.conv2d_backward_weight(x.copy(), gy.copy(), (16, 6, 5, 5)), first)
    finally:
        pf.set_num_threads(before)
        busy.kill()
