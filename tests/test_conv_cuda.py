"""CUDA convolution kernels (kernels/conv.cu) against the CPU float64 result.

Every pass (forward, input gradient, weight gradient), both variants (fast implicit GEMM and the
reference direct loop) and every dtype (float32; float16 and bfloat16 with float32 accumulation) on
shapes that are not multiples of the 128x128 tiles, with stride, padding, dilation and groups.
Inputs are rounded to the dtype first, so the float64 CPU result on the same values is exact up to
the kernel's own rounding. Outputs are NaN-poisoned before each call: an unwritten element fails.

cupy has no bfloat16 dtype; bfloat16 arrays are cupy uint16 arrays behind a small view object that
presents them as raw 2-byte elements, which the bindings read as bfloat16.
"""

import numpy as np
import pytest

from pyfastdl import backend, bfloat16, kernels
from pyfastdl.bfloat16 import BFloat16View

pytestmark = pytest.mark.gpu

TOL = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 2e-2}
DTYPES = tuple(TOL)
VARIANTS = ("fast", "reference")

# (N, C, H, W, K, R, S, stride, padding, dilation, groups)
CASES = {
    "first-layer": (2, 3, 17, 19, 10, 3, 3, 1, 1, 1, 1),
    "stride2": (3, 20, 13, 11, 36, 3, 3, 2, 1, 1, 1),
    "groups-dilation": (2, 12, 15, 14, 18, 5, 3, (2, 1), (2, 0), (1, 2), 3),
    "wide-1x1": (1, 130, 9, 9, 140, 1, 1, 1, 0, 1, 1),
    "depthwise": (4, 16, 10, 10, 16, 3, 3, 1, 1, 1, 16),
    "stride3-dil2": (2, 9, 12, 12, 7, 3, 3, 3, 2, 2, 1),
    "split-k": (8, 64, 14, 14, 96, 3, 3, 1, 1, 1, 1),
}


def _case(name):
    N, C, H, W, K, R, S, stride, padding, dilation, groups = CASES[name]
    return (N, C, H, W), (K, C // groups, R, S), dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.fixture
def cp():
    return backend.array_module("cuda")


# ---- dtype plumbing -----------------------------------------------------------------------------------


def to_gpu(a, dtype, cp):
    """(device array of `a` rounded to dtype, the rounded values as float64 on the host)."""
    if dtype == "bfloat16":
        bits = bfloat16.to_bits(a)
        return BFloat16View(cp.asarray(bits)), bfloat16.from_bits(bits).astype(np.float64)
    rounded = np.asarray(a, dtype)
    return cp.asarray(rounded), rounded.astype(np.float64)


def poisoned(shape, dtype, cp):
    if dtype == "bfloat16":
        return BFloat16View(cp.full(shape, 0x7FC0, cp.uint16))  # a bfloat16 NaN
    return cp.full(shape, cp.nan, dtype)


def to_host(a):
    if isinstance(a, BFloat16View):
        return bfloat16.from_bits(a.bits.get()).astype(np.float64)
    return a.get().astype(np.float64)


def rel_err(out, ref):
    assert not np.isnan(out).any(), f"{np.isnan(out).sum()} of {out.size} outputs never written (NaN)"
    return np.linalg.norm(out - ref) / np.linalg.norm(ref)


def launch(op, variant, *args):
    backend.launch(op if variant == "fast" else f"{op}_{variant}", "cuda", *args)


# ---- the three passes ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_forward(case, dtype, variant, rng, cp):
    xs, ws, hyper = _case(case)
    a = kernels.conv2d_args(xs, ws, **hyper)
    x, x64 = to_gpu(rng.standard_normal(xs), dtype, cp)
    w, w64 = to_gpu(rng.standard_normal(ws), dtype, cp)
    b, b64 = to_gpu(rng.standard_normal(ws[0]), dtype, cp)
    y = poisoned(a.out_shape, dtype, cp)
    launch("conv2d_forward", variant, a, x, w, b, y)
    ref = kernels.conv2d_forward(x64, w64, b64, **hyper)
    assert rel_err(to_host(y), ref) < TOL[dtype]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_backward_input(case, dtype, variant, rng, cp):
    xs, ws, hyper = _case(case)
    a = kernels.conv2d_args(xs, ws, **hyper)
    dy, dy64 = to_gpu(rng.standard_normal(a.out_shape), dtype, cp)
    w, w64 = to_gpu(rng.standard_normal(ws), dtype, cp)
    dx = poisoned(xs, dtype, cp)
    launch("conv2d_backward_input", variant, a, dy, w, dx)
    ref = kernels.conv2d_backward_input(dy64, w64, xs, **hyper)
    assert rel_err(to_host(dx), ref) < TOL[dtype]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_backward_weight(case, dtype, variant, rng, cp):
    xs, ws, hyper = _case(case)
    a = kernels.conv2d_args(xs, ws, **hyper)
    x, x64 = to_gpu(rng.standard_normal(xs), dtype, cp)
    dy, dy64 = to_gpu(rng.standard_normal(a.out_shape), dtype, cp)
    dw = poisoned(ws, dtype, cp)
    launch("conv2d_backward_weight", variant, a, x, dy, dw)
    ref = kernels.conv2d_backward_weight(x64, dy64, ws, **hyper)
    assert rel_err(to_host(dw), ref) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_transpose2d_forward(dtype, rng, cp):
    """FCN's upsampling: conv_transpose2d runs conv2d's input-gradient kernel (output_padding too)."""
    xs, ws = (2, 21, 9, 7), (21, 10, 4, 4)
    hyper = dict(stride=2, padding=1, output_padding=1)
    a = kernels.conv_transpose2d_args(xs, ws, **hyper)
    x, x64 = to_gpu(rng.standard_normal(xs), dtype, cp)
    w, w64 = to_gpu(rng.standard_normal(ws), dtype, cp)
    y = poisoned(a.x_shape, dtype, cp)
    launch("conv2d_backward_input", "fast", a, x, w, y)
    ref = kernels.conv_transpose2d_forward(x64, w64, **hyper)
    assert rel_err(to_host(y), ref) < TOL[dtype]


def test_kernels_layer_float32(rng, cp):
    """pyfastdl.kernels' functions pick the CUDA kernels for cupy arrays."""
    xs, ws, hyper = _case("groups-dilation")
    x64, w64 = rng.standard_normal(xs), rng.standard_normal(ws)
    y = kernels.conv2d_forward(cp.asarray(x64, cp.float32), cp.asarray(w64, cp.float32), **hyper)
    ref = kernels.conv2d_forward(x64.astype(np.float32).astype(np.float64), w64.astype(np.float32).astype(np.float64),
                                 **hyper)
    assert rel_err(y.get().astype(np.float64), ref) < TOL["float32"]


# ---- streams, determinism ----------------------------------------------------------------------------


def test_runs_on_cupys_current_stream(rng, cp):
    """Kernels and their pooled workspace follow cupy's current stream (here a non-blocking one)."""
    xs, ws, hyper = _case("split-k")
    a = kernels.conv2d_args(xs, ws, **hyper)
    x64, dy64 = rng.standard_normal(xs), rng.standard_normal(a.out_shape)
    ref = kernels.conv2d_backward_weight(x64.astype(np.float32).astype(np.float64),
                                         dy64.astype(np.float32).astype(np.float64), ws, **hyper)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        x, dy = cp.asarray(x64, cp.float32), cp.asarray(dy64, cp.float32)
        dw = cp.full(ws, cp.nan, cp.float32)
        for _ in range(3):  # reuses the pool's workspace blocks on the same stream
            launch("conv2d_backward_weight", "fast", a, x, dy, dw)
        out = cp.asnumpy(dw, stream=stream)
    stream.synchronize()
    assert rel_err(out.astype(np.float64), ref) < TOL["float32"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_weight_gradient_is_deterministic(dtype, rng, cp):
    """Split-K partial sums are added in a fixed order: identical bits on every run."""
    xs, ws, hyper = _case("split-k")
    a = kernels.conv2d_args(xs, ws, **hyper)
    x, _ = to_gpu(rng.standard_normal(xs), dtype, cp)
    dy, _ = to_gpu(rng.standard_normal(a.out_shape), dtype, cp)
    runs = []
    for _ in range(2):
        dw = poisoned(ws, dtype, cp)
        launch("conv2d_backward_weight", "fast", a, x, dy, dw)
        runs.append(to_host(dw))
    assert np.array_equal(runs[0], runs[1])


def test_workspace_bytes(cp):
    a = kernels.conv2d_args((32, 64, 56, 56), (64, 64, 3, 3), padding=1)
    cuda = backend.kernels("cuda")
    # forward packs x (NHWC) and the weight; float16 needs half of float32's bytes
    assert cuda.conv2d_workspace_bytes(a, "forward", "float32") >= 4 * (32 * 56 * 56 * 64 + 64 * 64 * 9)
    assert cuda.conv2d_workspace_bytes(a, "forward", "float16") < cuda.conv2d_workspace_bytes(a, "forward", "float32")
    with pytest.raises(ValueError, match="op must be"):
        cuda.conv2d_workspace_bytes(a, "sideways", "float32")
    with pytest.raises(ValueError, match="dtype must be"):
        cuda.conv2d_workspace_bytes(a, "forward", "float64")


# ---- bad input -------------------------------------------------------------------------------------


def test_rejects_float64(rng, cp):
    a = kernels.conv2d_args((1, 2, 5, 5), (3, 2, 3, 3))
    x, w, y = cp.ones((1, 2, 5, 5)), cp.ones((3, 2, 3, 3)), cp.empty(a.out_shape)
    with pytest.raises(TypeError, match="x has dtype float64"):
        launch("conv2d_forward", "fast", a, x, w, None, y)


def test_rejects_mixed_dtypes(cp):
    a = kernels.conv2d_args((1, 2, 5, 5), (3, 2, 3, 3))
    x = cp.ones((1, 2, 5, 5), cp.float32)
    w = cp.ones((3, 2, 3, 3), cp.float16)
    with pytest.raises(TypeError, match="weight"):
        launch("conv2d_forward", "fast", a, x, w, None, cp.empty(a.out_shape, cp.float32))


def test_rejects_wrong_shape(cp):
    a = kernels.conv2d_args((1, 2, 5, 5), (3, 2, 3, 3))
    dy = cp.ones((1, 3, 4, 3), cp.float32)  # out_shape is (1, 3, 3, 3)
    with pytest.raises(ValueError, match="grad_out has shape"):
        launch("conv2d_backward_input", "fast", a, dy, cp.ones((3, 2, 3, 3), cp.float32),
               cp.empty((1, 2, 5, 5), cp.float32))


def test_rejects_host_arrays(cp):
    a = kernels.conv2d_args((1, 2, 5, 5), (3, 2, 3, 3))
    with pytest.raises(TypeError, match="grad_weight must be a device"):
        launch("conv2d_backward_weight", "fast", a, cp.ones((1, 2, 5, 5), cp.float32),
               cp.ones((1, 3, 3, 3), cp.float32), np.empty((3, 2, 3, 3), np.float32))


def test_rejects_non_contiguous(cp):
    a = kernels.conv2d_args((1, 2, 5, 5), (3, 2, 3, 3))
    x = cp.ones((1, 2, 5, 10), cp.float32)[..., ::2]
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        launch("conv2d_forward", "fast", a, x, cp.ones((3, 2, 3, 3), cp.float32), None,
               cp.empty(a.out_shape, cp.float32))


def test_rejects_mixed_devices(cp):
    """numpy and cupy arrays are both "ndarray": the error names the library of the misplaced one."""
    x, w = np.ones((1, 2, 5, 5), np.float32), cp.ones((3, 2, 3, 3), cp.float32)
    with pytest.raises(TypeError, match="weight must be a numpy array.*argument 2 .* is a cupy array"):
        kernels.conv2d_forward(x, w)
    with pytest.raises(TypeError, match="weight must be a device.*argument 2 .* is a numpy array"):
        kernels.conv2d_forward(cp.asarray(x), w.get())
