"""Pooling family: max, average and adaptive average pooling, forward and backward, on every device.

Forward and backward are checked against the float64 references in tests/reference/pool.py over
awkward shapes, every backward by gradcheck, and everything against torch where it is installed.
GPU runs poison their outputs with NaN first and compare with the same float64 reference."""

import numpy as np
import pytest
from conftest import requires_torch
from reference import pool as ref

import pyfastdl
import pyfastdl.nn.functional as F
from pyfastdl import backend, kernels
from pyfastdl._core import _C
from pyfastdl.testing import gradcheck

TOL = {np.float64: 1e-10, np.float32: 1e-5}
CUDA_TOL = 1e-4

# (input shape, kernel, stride, padding, dilation, ceil_mode)
MAX_CASES = [
    ((2, 3, 8, 8), 2, None, 0, 1, False),  # LeNet/VGG 2x2
    ((2, 3, 9, 11), 3, 2, 1, 1, False),  # ResNet stem style, odd sizes
    ((2, 3, 9, 11), 3, 2, 1, 1, True),
    ((1, 2, 7, 7), 3, 2, 0, 1, True),  # NIN 3x3 s2, ceil
    ((2, 2, 6, 5), 1, 1, 0, 1, False),  # kernel 1
    ((2, 2, 9, 10), 1, 2, 0, 1, False),  # stride > kernel
    ((1, 3, 11, 9), 2, 3, 1, 1, True),  # stride > kernel, ceil, padding
    ((2, 2, 10, 9), 3, 1, 1, 2, True),  # dilation 2, overlapping
    ((3, 7, 8), (2, 3), (3, 1), (1, 1), (1, 2), True),  # 3-D input, rectangular everything
    ((1, 1, 5, 6), (4, 2), (1, 2), (2, 1), 1, False),  # padding = kernel / 2
]

# (input shape, kernel, stride, padding, ceil_mode)
AVG_CASES = [
    ((2, 3, 8, 8), 2, None, 0, False),
    ((2, 3, 9, 11), 3, 2, 1, False),
    ((2, 3, 9, 11), 3, 2, 1, True),
    ((1, 2, 5, 5), 3, 2, 1, True),  # last window clipped in ceil mode
    ((2, 2, 9, 10), 1, 2, 0, False),
    ((1, 3, 11, 9), 2, 3, 1, True),
    ((3, 7, 8), (2, 3), (3, 1), (1, 1), True),
    ((1, 1, 6, 7), (4, 2), (1, 2), (2, 1), False),
]

# (input shape, output size)
ADAPTIVE_CASES = [
    ((2, 3, 8, 8), 1),  # NIN global average pooling
    ((2, 3, 8, 8), (2, 4)),  # divides
    ((2, 3, 7, 9), (3, 4)),  # does not divide
    ((3, 5, 5), (7, 2)),  # output larger than input along H
    ((1, 2, 10, 10), (None, 3)),  # None keeps the input size
    ((1, 1, 14, 14), 7),
]


def rel_err(out, want):
    out = np.asarray(out, dtype=np.float64)
    assert out.shape == want.shape, (out.shape, want.shape)
    assert not np.isnan(out).any(), "output holds NaN"
    return np.linalg.norm(out - want) / max(np.linalg.norm(want), 1e-300)


def distinct(rng, shape, dtype=np.float64):
    """Random values with no ties (max-pool gradients are then well defined)."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) / n + rng.uniform(-1, 1)).astype(dtype)


def to_device(a, device):
    return backend.to_device(a, device)


def to_host(a):
    return backend.to_device(a, "cpu")


def variants(device):
    return ["fast", "reference"]


def nan_like(shape, dtype, device):
    xp = backend.array_module(device)
    return xp.full(shape, np.nan, dtype=dtype)


def dtypes(device):
    return [np.float32] if device == "cuda" else [np.float32, np.float64]


def tol(device, dtype):
    return CUDA_TOL if device == "cuda" else TOL[dtype]


def max_window(case):
    shape, k, s, p, d, c = case
    return dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=c)


def avg_window(case, count_include_pad=True, divisor_override=None):
    shape, k, s, p, c = case
    return dict(kernel_size=k, stride=s, padding=p, ceil_mode=c, count_include_pad=count_include_pad,
                divisor_override=divisor_override)


# ---- forward and backward against the float64 reference, on each device --------------------------


@pytest.mark.parametrize("case", MAX_CASES, ids=str)
def test_max_pool2d(device, rng, case):
    win = max_window(case)
    for dtype in dtypes(device):
        x = distinct(rng, case[0], dtype)
        y_ref, idx_ref = ref.max_pool2d(x, **win)
        g = rng.standard_normal(y_ref.shape).astype(dtype)
        gx_ref = ref.max_pool2d_backward(g, idx_ref, x.shape)
        for variant in variants(device):
            xd = to_device(x, device)
            y, idx = kernels.max_pool2d_forward(xd, **win, variant=variant, out=nan_like(y_ref.shape, dtype, device),
                                                indices_out=backend.array_module(device).full(y_ref.shape, -7))
            assert rel_err(to_host(y), y_ref) <= tol(device, dtype)
            np.testing.assert_array_equal(to_host(idx), idx_ref)
            y_only = kernels.max_pool2d_forward(xd, **win, return_indices=False, variant=variant)
            np.testing.assert_array_equal(to_host(y_only), to_host(y))
            gx = kernels.max_pool2d_backward(to_device(g, device), idx, x.shape, **win, variant=variant,
                                             out=nan_like(x.shape, dtype, device))
            assert rel_err(to_host(gx), gx_ref) <= tol(device, dtype)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", AVG_CASES, ids=str)
def test_avg_pool2d(device, rng, case, count_include_pad):
    for divisor_override in (None, 3):
        win = avg_window(case, count_include_pad, divisor_override)
        for dtype in dtypes(device):
            x = rng.standard_normal(case[0]).astype(dtype)
            y_ref = ref.avg_pool2d(x, **win)
            g = rng.standard_normal(y_ref.shape).astype(dtype)
            gx_ref = ref.avg_pool2d_backward(g, x.shape, **win)
            for variant in variants(device):
                y = kernels.avg_pool2d_forward(to_device(x, device), **win, variant=variant,
                                               out=nan_like(y_ref.shape, dtype, device))
                assert rel_err(to_host(y), y_ref) <= tol(device, dtype)
                gx = kernels.avg_pool2d_backward(to_device(g, device), x.shape, **win, variant=variant,
                                                 out=nan_like(x.shape, dtype, device))
                assert rel_err(to_host(gx), gx_ref) <= tol(device, dtype)


@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=str)
def test_adaptive_avg_pool2d(device, rng, case):
    shape, size = case
    want_size = tuple(shape[-2 + i] if s is None else s for i, s in enumerate(ref.pair(size)))
    for dtype in dtypes(device):
        x = rng.standard_normal(shape).astype(dtype)
        y_ref = ref.adaptive_avg_pool2d(x, want_size)
        g = rng.standard_normal(y_ref.shape).astype(dtype)
        gx_ref = ref.adaptive_avg_pool2d_backward(g, x.shape)
        for variant in variants(device):
            y = kernels.adaptive_avg_pool2d_forward(to_device(x, device), size, variant=variant,
                                                    out=nan_like(y_ref.shape, dtype, device))
            assert rel_err(to_host(y), y_ref) <= tol(device, dtype)
            gx = kernels.adaptive_avg_pool2d_backward(to_device(g, device), x.shape, variant=variant,
                                                      out=nan_like(x.shape, dtype, device))
            assert rel_err(to_host(gx), gx_ref) <= tol(device, dtype)


@pytest.mark.parametrize("variant_name", ["fast", "reference"])
def test_model_shapes_large(device, rng, variant_name):
    """Shapes the models use, big enough to run the multi-threaded CPU path and many GPU blocks."""
    x = rng.standard_normal((2, 64, 56, 56)).astype(np.float32)
    xd = to_device(x, device)
    y, idx = kernels.max_pool2d_forward(xd, 3, 2, 1, variant=variant_name)
    y_ref, idx_ref = ref.max_pool2d(x, 3, 2, 1)
    assert rel_err(to_host(y), y_ref) <= tol(device, np.float32)
    g = rng.standard_normal(y_ref.shape).astype(np.float32)
    gx = kernels.max_pool2d_backward(to_device(g, device), idx, x.shape, 3, 2, 1, variant=variant_name)
    assert rel_err(to_host(gx), ref.max_pool2d_backward(g, to_host(idx), x.shape)) <= tol(device, np.float32)
    ya = kernels.avg_pool2d_forward(xd, 2, variant=variant_name)
    assert rel_err(to_host(ya), ref.avg_pool2d(x, 2)) <= tol(device, np.float32)
    xg = rng.standard_normal((4, 192, 8, 8)).astype(np.float32)
    yg = kernels.adaptive_avg_pool2d_forward(to_device(xg, device), 1, variant=variant_name)
    assert rel_err(to_host(yg), ref.adaptive_avg_pool2d(xg, 1)) <= tol(device, np.float32)


# ---- max-pool semantics: NaN, ties, -inf, empty batch ----------------------------------------------


def test_max_pool2d_nan_ties_and_inf(device, rng):
    x = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 2, 2] = np.nan  # two NaNs in one window: the last wins
    x[1, 2, :3, :3] = 5.0  # ties: the first wins
    x[1, 1, 3:6, 3:6] = -np.inf  # an all -inf window reports its first cell
    for variant in variants(device):
        y, idx = kernels.max_pool2d_forward(to_device(x, device), 3, 2, 1, variant=variant)
        y_ref, idx_ref = ref.max_pool2d(x, 3, 2, 1)
        np.testing.assert_array_equal(to_host(y), y_ref.astype(np.float32))  # NaN == NaN here
        np.testing.assert_array_equal(to_host(idx), idx_ref)


@pytest.mark.parametrize("isa", _C.cpu.available_isas())
@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (2, 3, 5, 7), (64, 6, 28, 28), (3, 2, 9, 34), (1, 1, 2, 41)], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2d_2x2_stride_2_path(isa, shape, dtype, rng):
    """"fast" computes 2x2 windows of stride 2 straight from the input rows (pairs within each row
    first, then the two rows; vectors that may read into the next row): the float64 reference's
    values and indices exactly, with ties, NaN and -inf, odd sizes (the last row or column left
    out) and rows shorter and longer than a vector, under every instruction set's copy."""
    x = rng.standard_normal(shape)
    x = np.where(rng.random(shape) < 0.15, np.round(x), x)  # ties
    x[rng.random(shape) < 0.05] = np.nan
    x[rng.random(shape) < 0.05] = -np.inf
    x = x.astype(dtype)
    _C.cpu.set_isa(isa)
    try:
        for indices in (True, False):
            got = kernels.max_pool2d_forward(x, 2, 2, return_indices=indices)
            y, idx = got if indices else (got, None)
            y_ref, idx_ref = ref.max_pool2d(x, 2, 2, 0)
            np.testing.assert_array_equal(y, y_ref.astype(dtype))
            if indices:
                np.testing.assert_array_equal(idx, idx_ref)
    finally:
        _C.cpu.set_isa(_C.cpu.best_isa())


@pytest.mark.parametrize("isa", _C.cpu.available_isas())
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 5, 2, 2), (2, 3, 5, 5), (2, 3, 7, 7), (1, 2, 3, 11)], ids=str)
def test_global_avg_pool_path(isa, shape, rng):
    """Global average pooling (output 1x1) sums each plane in 32-byte vectors, the last plane's
    partial vector value by value (no read past the input), and spreads the gradient as one fill:
    the float64 means and gradient, under every instruction set's copy."""
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape[:2] + (1, 1))
    _C.cpu.set_isa(isa)
    try:
        for dtype, tol in ((np.float32, 1e-6), (np.float64, 1e-14)):
            y = kernels.adaptive_avg_pool2d_forward(x.astype(dtype), 1)
            np.testing.assert_allclose(y, x.mean(axis=(2, 3), keepdims=True), rtol=tol, atol=tol)
            gx = kernels.adaptive_avg_pool2d_backward(g.astype(dtype), shape)
            np.testing.assert_allclose(gx, np.broadcast_to(g / (shape[2] * shape[3]), shape), rtol=tol, atol=tol)
    finally:
        _C.cpu.set_isa(_C.cpu.best_isa())


def test_empty_batch(device):
    x = backend.array_module(device).zeros((0, 3, 8, 8), np.float32)
    y, idx = kernels.max_pool2d_forward(x, 2)
    assert y.shape == (0, 3, 4, 4) and idx.shape == (0, 3, 4, 4)
    assert kernels.avg_pool2d_backward(y, x.shape, 2).shape == x.shape
    assert kernels.adaptive_avg_pool2d_forward(x, 1).shape == (0, 3, 1, 1)


# ---- autograd ---------------------------------------------------------------------------------------


# (input shape, window, flat output position to spoil): a 3x3 stride-2 window, and a dilated window
# whose taps all miss the input (its index is -1, and the GPU gather still reads it).
BAD_INDEX_CASES = [((2, 3, 5, 6), dict(kernel_size=3, stride=2, padding=1), 14),
                   ((1, 1, 2, 2), dict(kernel_size=2, stride=1, padding=1, dilation=3), 0)]


@pytest.mark.parametrize("bad", [-2, 30, 2**62])
@pytest.mark.parametrize("case", BAD_INDEX_CASES, ids=str)
def test_max_pool2d_backward_rejects_out_of_range_indices(device, rng, case, bad):
    """An argmax index outside [-1, H*W) is a ValueError naming it and its position on both devices,
    in both variants (the GPU kernels check every index they read, the launcher reads the verdict
    back), and the next call with good indices still works."""
    shape, win, at = case
    x = distinct(rng, shape, np.float32)
    g = rng.standard_normal(ref.max_pool2d(x, **win)[0].shape).astype(np.float32)
    for variant in variants(device):
        y, idx = kernels.max_pool2d_forward(to_device(x, device), **win, variant=variant)
        good = to_host(idx)
        spoiled = good.copy()
        spoiled.flat[at] = bad
        with pytest.raises(ValueError, match=rf"max_pool2d_backward: indices holds {bad} at flat position {at}: "
                                             rf"not -1 and outside the input plane \[0, {shape[-2] * shape[-1]}\)"):
            kernels.max_pool2d_backward(to_device(g, device), to_device(spoiled, device), shape, **win,
                                        variant=variant)
        gx = kernels.max_pool2d_backward(to_device(g, device), idx, shape, **win, variant=variant)
        assert rel_err(to_host(gx), ref.max_pool2d_backward(g, good, shape)) <= tol(device, np.float32)


@pytest.mark.parametrize("case", MAX_CASES[:4] + MAX_CASES[7:9], ids=str)
def test_max_pool2d_gradcheck(rng, case):
    x = pyfastdl.tensor(distinct(rng, case[0]), requires_grad=True)
    assert gradcheck(lambda t: F.max_pool2d(t, **max_window(case)), (x,))


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", AVG_CASES[1:4] + AVG_CASES[6:], ids=str)
def test_avg_pool2d_gradcheck(rng, case, count_include_pad):
    x = pyfastdl.tensor(rng.standard_normal(case[0]), requires_grad=True)
    assert gradcheck(lambda t: F.avg_pool2d(t, **avg_window(case, count_include_pad)), (x,))
    assert gradcheck(lambda t: F.avg_pool2d(t, **avg_window(case, count_include_pad, 5)), (x,))


@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=str)
def test_adaptive_avg_pool2d_gradcheck(rng, case):
    x = pyfastdl.tensor(rng.standard_normal(case[0]), requires_grad=True)
    assert gradcheck(lambda t: F.adaptive_avg_pool2d(t, case[1]), (x,))


def test_pool1d_gradcheck(rng):
    x = pyfastdl.tensor(distinct(rng, (2, 3, 11)), requires_grad=True)
    assert gradcheck(lambda t: F.max_pool1d(t, 3, 2, 1, ceil_mode=True), (x,))
    assert gradcheck(lambda t: F.avg_pool1d(t, 3, 2, 1, count_include_pad=False), (x,))


def test_functional_indices_and_no_grad(rng):
    x = pyfastdl.tensor(distinct(rng, (2, 3, 6, 6)), requires_grad=True)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert idx.dtype == np.int64 and not idx.requires_grad and y.requires_grad
    y_ref, idx_ref = ref.max_pool2d(x.detach().numpy(), 2)
    np.testing.assert_array_equal(idx.numpy(), idx_ref)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), ref.max_pool2d_backward(np.ones_like(y_ref), idx_ref, x.shape))
    with pyfastdl.no_grad():
        z = F.max_pool2d(x, 2)
    assert not z.requires_grad
    np.testing.assert_array_equal(z.numpy(), y_ref)


def test_functional_on_device(device, rng):
    """The autograd ops on each device agree with the CPU float64 reference."""
    x = distinct(rng, (2, 4, 9, 9), np.float32)
    t = pyfastdl.tensor(x, device=device, requires_grad=True)
    out = F.max_pool2d(t, 3, 2, 1) + F.avg_pool2d(t, 3, 2, 1) + F.adaptive_avg_pool2d(t, 5)
    out.sum().backward()
    g = np.ones((2, 4, 5, 5))
    y_ref, idx_ref = ref.max_pool2d(x, 3, 2, 1)
    want = ref.max_pool2d_backward(g, idx_ref, x.shape) + ref.avg_pool2d_backward(g, x.shape, 3, 2, 1) + \
        ref.adaptive_avg_pool2d_backward(g, x.shape)
    assert rel_err(t.grad.cpu().numpy(), want) <= tol(device, np.float32)


# ---- torch cross-check -------------------------------------------------------------------------------


def _torch_grad(fn, x, g):
    import torch

    tx = torch.tensor(x, requires_grad=True)
    out = fn(tx)
    y = out[0] if isinstance(out, tuple) else out
    y.backward(torch.tensor(g))
    return out, tx.grad.numpy()


@requires_torch
@pytest.mark.parametrize("case", MAX_CASES, ids=str)
def test_max_pool2d_matches_torch(rng, case):
    import torch.nn.functional as tF

    win = max_window(case)
    x = distinct(rng, case[0])
    x.flat[::7] = x.flat[0]  # some ties
    y, idx = kernels.max_pool2d_forward(x, **win)
    g = rng.standard_normal(y.shape)
    (ty, tidx), tgx = _torch_grad(lambda t: tF.max_pool2d(t, **win, return_indices=True), x, g)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    assert rel_err(kernels.max_pool2d_backward(g, idx, x.shape, **win), tgx) <= 1e-12


@requires_torch
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", AVG_CASES, ids=str)
def test_avg_pool2d_matches_torch(rng, case, count_include_pad):
    import torch.nn.functional as tF

    for divisor_override in (None, 4):
        win = avg_window(case, count_include_pad, divisor_override)
        x = rng.standard_normal(case[0])
        y = kernels.avg_pool2d_forward(x, **win)
        g = rng.standard_normal(y.shape)
        ty, tgx = _torch_grad(lambda t: tF.avg_pool2d(t, **win), x, g)
        assert rel_err(y, ty.detach().numpy()) <= 1e-12
        assert rel_err(kernels.avg_pool2d_backward(g, x.shape, **win), tgx) <= 1e-12


@requires_torch
@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=str)
def test_adaptive_avg_pool2d_matches_torch(rng, case):
    import torch.nn.functional as tF

    x = rng.standard_normal(case[0])
    y = kernels.adaptive_avg_pool2d_forward(x, case[1])
    g = rng.standard_normal(y.shape)
    ty, tgx = _torch_grad(lambda t: tF.adaptive_avg_pool2d(t, case[1]), x, g)
    assert rel_err(y, ty.detach().numpy()) <= 1e-12
    assert rel_err(kernels.adaptive_avg_pool2d_backward(g, x.shape), tgx) <= 1e-12


@requires_torch
def test_pool1d_matches_torch(rng):
    import torch
    import torch.nn.functional as tF

    x = rng.standard_normal((2, 3, 13))
    y, idx = F.max_pool1d(pyfastdl.tensor(x), 3, 2, 1, dilation=2, ceil_mode=True, return_indices=True)
    ty, tidx = tF.max_pool1d(torch.tensor(x), 3, 2, 1, dilation=2, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(y.numpy(), ty.numpy())
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    a = F.avg_pool1d(pyfastdl.tensor(x), 4, 3, 2, ceil_mode=True, count_include_pad=False)
    assert rel_err(a.numpy(), tF.avg_pool1d(torch.tensor(x), 4, 3, 2, True, False).numpy()) <= 1e-12


# ---- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda x: kernels.max_pool2d_forward(x[0, 0], 2), ValueError, "input must be 3-D"),
        (lambda x: kernels.max_pool2d_forward(x[None], 2), ValueError, "input must be 3-D"),
        (lambda x: kernels.max_pool2d_forward(x, 0), ValueError, "kernel_size must be > 0"),
        (lambda x: kernels.max_pool2d_forward(x, 2, -1), ValueError, "stride must be > 0"),
        (lambda x: kernels.max_pool2d_forward(x, 2, 1, -1), ValueError, "padding must be >= 0"),
        (lambda x: kernels.max_pool2d_forward(x, 3, 1, 2), ValueError, "padding must be at most half"),
        (lambda x: kernels.max_pool2d_forward(x, 2, dilation=0), ValueError, "dilation must be > 0"),
        (lambda x: kernels.max_pool2d_forward(x, 9), ValueError, "output size is too small"),
        (lambda x: kernels.max_pool2d_forward(x, (2, 2, 2)), ValueError, "kernel_size must be an int or a pair"),
        (lambda x: kernels.max_pool2d_forward(x, 2.5), TypeError, "kernel_size must be an int"),
        (lambda x: kernels.max_pool2d_forward(x.astype(np.int32), 2), TypeError, "input has dtype int32"),
        (lambda x: kernels.max_pool2d_forward(x.tolist(), 2), TypeError, "numpy or cupy array"),
        (lambda x: kernels.max_pool2d_forward(x, 2, variant="fastest"), ValueError, "variant must be one of"),
        (lambda x: kernels.max_pool2d_forward(x, 2, out=np.empty((2, 3, 3, 3), np.float32)), ValueError,
         "output has shape"),
        (lambda x: kernels.max_pool2d_forward(x, 2, out=np.empty((2, 3, 4, 4))), TypeError,
         "input is float32 but output is float64"),
        (lambda x: kernels.max_pool2d_backward(np.ones((2, 3, 4, 4), np.float32), np.zeros((2, 3, 4, 4), np.int32),
                                               x.shape, 2), TypeError, "indices has dtype int32"),
        (lambda x: kernels.avg_pool2d_forward(x, 2, divisor_override=0), ValueError, "divisor_override must be > 0"),
        (lambda x: kernels.avg_pool2d_forward(x, 4, 1, 3), ValueError, "padding must be at most half"),
        (lambda x: kernels.adaptive_avg_pool2d_forward(x, 0), ValueError, "output_size must be >= 1"),
        (lambda x: kernels.adaptive_avg_pool2d_forward(x, (2, 2, 2)), ValueError, "output_size must be an int"),
        (lambda x: kernels.adaptive_avg_pool2d_forward(x[:, :, :0], 1), ValueError, "zero-size"),
        (lambda x: F.max_pool2d(x, 2), TypeError, "input must be a pyfastdl Tensor"),
        (lambda x: F.max_pool1d(pyfastdl.tensor(x), 2), ValueError, "input must be 2-D"),
    ],
)
def test_bad_input(call, exc, match):
    x = np.ones((2, 3, 8, 8), np.float32)
    with pytest.raises(exc, match=match):
        call(x)


def test_bad_dtype(device):
    """CPU kernels take float32/float64, CUDA kernels float32: anything else is a TypeError naming it."""
    bad = np.float64 if device == "cuda" else np.int32
    x = backend.array_module(device).ones((2, 3, 8, 8), bad)
    for call in (lambda: kernels.max_pool2d_forward(x, 2), lambda: kernels.avg_pool2d_forward(x, 2),
                 lambda: kernels.adaptive_avg_pool2d_forward(x, 1)):
        with pytest.raises(TypeError, match=f"input has dtype {np.dtype(bad).name}"):
            call()


def test_bad_input_reaching_C():
    x = np.ones((2, 3, 8, 8), np.float32)
    a = kernels.max_pool2d_args(x.shape, 2)
    y = np.empty(a.out_shape, np.float32)
    with pytest.raises(ValueError, match="input must be C-contiguous"):
        _C.cpu.max_pool2d_forward(a, np.ones((2, 3, 8, 16), np.float32)[..., ::2], y, None)
    with pytest.raises(ValueError, match="args were made by Pool2dArgs for max_pool2d"):
        _C.cpu.avg_pool2d_forward(a, x, y)
    with pytest.raises(ValueError, match="indices are required"):
        _C.cpu.max_pool2d_backward(a, y, None, x)
    with pytest.raises(TypeError, match="grad_output must be a numpy array"):
        _C.cpu.max_pool2d_backward(a, [1.0], None, x)


def test_unknown_variant():
    with pytest.raises(ValueError, match=r"max_pool2d_forward: variant must be one of \('fast', 'reference'\)"):
        kernels.max_pool2d_forward(np.ones((1, 1, 4, 4)), 2, variant="naive")


def test_args_properties():
    a = kernels.max_pool2d_args((2, 3, 112, 112), 3, 2, 1)
    assert (a.kind, a.in_shape, a.out_shape, a.planes) == ("max_pool2d", (2, 3, 112, 112), (2, 3, 56, 56), 6)
    assert (a.kernel_size, a.stride, a.padding, a.dilation, a.ceil_mode) == ((3, 3), (2, 2), (1, 1), (1, 1), False)
    b = kernels.avg_pool2d_args((3, 5, 5), 3, 2, 1, ceil_mode=True, divisor_override=7)
    assert (b.out_shape, b.divisor_override, b.count_include_pad) == ((3, 3, 3), 7, True)
    assert kernels.adaptive_avg_pool2d_args((2, 10, 8, 8), 1).out_shape == (2, 10, 1, 1)




@pytest.mark.parametrize("variant", ["fast", "reference"])
def test_a_window_far_larger_than_the_input_visits_only_the_padded_input(variant, rng):
    """kernel_size=2**31 with ceil_mode and a huge stride is one output per plane (torch overflows); its
    taps past the right padding read nothing, so the kernels visit at most the padded input (they had
    staged 2**31 rows: std::bad_alloc, or "cannot create std::vector larger than max_size()")."""
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    for huge in (2**31, 10**11):
        a = kernels.max_pool2d_args(x.shape, huge, 10**12, 1, ceil_mode=True)
        assert a.out_shape == (2, 3, 1, 1) and a.kernel_size == (7, 8)  # the padded input, 7 x 8
        for small, big in zip(kernels.max_pool2d_forward(x, 40, 10**12, 1, ceil_mode=True, variant=variant),
                              kernels.max_pool2d_forward(x, huge, 10**12, 1, ceil_mode=True, variant=variant)):
            np.testing.assert_array_equal(big, small)
        for cip in (True, False):
            np.testing.assert_array_equal(
                kernels.avg_pool2d_forward(x, huge, 10**12, 1, True, cip, variant=variant),
                kernels.avg_pool2d_forward(x, 40, 10**12, 1, True, cip, variant=variant))


@requires_torch
@pytest.mark.parametrize("variant", ["fast", "reference"])
def test_windows_past_the_padded_input_match_torch(variant, rng):
    """Windows that overhang the padded input (ceil_mode), at strides torch can hold."""
    import torch

    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    tx = torch.from_numpy(x)
    for k, s, p, d in ((40, 100, 1, 1), (9, 8, 1, 1), (11, 9, 5, 1), (7, 8, 3, 2)):
        y, idx = kernels.max_pool2d_forward(x, k, s, p, d, ceil_mode=True, variant=variant)
        ty, tidx = torch.nn.functional.max_pool2d(tx, k, s, p, d, ceil_mode=True, return_indices=True)
        np.testing.assert_array_equal(y, ty.numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())
        if d == 1:
            for cip in (True, False):
                np.testing.assert_allclose(kernels.avg_pool2d_forward(x, k, s, p, True, cip, variant=variant),
                                           torch.nn.functional.avg_pool2d(tx, k, s, p, True, cip).numpy(), rtol=1e-6)
