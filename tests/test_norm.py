"""Normalisation family: batch norm and layer norm kernels (CPU), forward and backward.

Checked against the float64 references in tests/reference/norm.py over awkward shapes, every
backward by gradcheck through nn.functional, NaN propagation, bad input, and torch where installed.
(The GPU path of these ops is cupy array code, covered by test_nn_functional's GPU runs.)"""

import numpy as np
import pytest
from conftest import TOL, leaf, rel_err, requires_torch
from reference import norm as ref

import pyfastdl as pf
import pyfastdl.nn.functional as F
from pyfastdl import kernels
from pyfastdl.testing import gradcheck


# (N, C, *): CIFAR ResNet, odd sizes, 1x1 maps, 2-D (BatchNorm1d), 3-D, batch 1 with a map
BN_SHAPES = [(4, 16, 8, 8), (3, 5, 7, 9), (7, 3, 1, 1), (6, 5), (2, 3, 11), (1, 4, 3, 5)]
# (input shape, normalized_shape)
LN_SHAPES = [((4, 7, 32), (32,)), ((3, 5), (5,)), ((2, 3, 4, 6), (4, 6)), ((1, 1, 33), 33), ((9, 1), (1,))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_kernels_match_reference(shape, dtype, training, rng):
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    rm0, rv0 = rm.astype(np.float64), rv.astype(np.float64)
    y, mean, invstd = kernels.batch_norm_forward(x, w, b, rm, rv, training, 0.3, 1e-3)
    y_ref, mean_ref, invstd_ref = ref.batch_norm(x, w, b, 1e-3, None if training else (rm0, rv0))
    tol = TOL[dtype]
    assert y.dtype == dtype and rel_err(y, y_ref) < tol
    assert rel_err(mean, mean_ref) < tol and rel_err(invstd, invstd_ref) < tol
    if training:  # running statistics move towards the batch's, the variance unbiased
        n = x.size // c
        var = 1 / invstd_ref**2 - 1e-3
        assert rel_err(rm, 0.7 * rm0 + 0.3 * mean_ref) < tol
        assert rel_err(rv, 0.7 * rv0 + 0.3 * var * n / (n - 1)) < tol
    else:
        assert (rm == rm0.astype(dtype)).all() and (rv == rv0.astype(dtype)).all()
    g = rng.standard_normal(shape).astype(dtype)
    grads = kernels.batch_norm_backward(g, x, w, mean, invstd, training)
    for out, want in zip(grads, ref.batch_norm_backward(g, x, w, 1e-3, None if training else (rm0, rv0))):
        assert rel_err(out, want) < tol * 10


def test_batch_norm_kernels_optional_arrays(rng):
    x = rng.standard_normal((3, 4, 5))
    y, mean, invstd = kernels.batch_norm_forward(x, None, None, None, None, True)
    y_ref, _, _ = ref.batch_norm(x, np.ones(4), np.zeros(4), 1e-5)
    assert rel_err(y, y_ref) < 1e-10
    g = rng.standard_normal(x.shape)
    gx, gw, gb = kernels.batch_norm_backward(g, x, None, mean, invstd, True, (True, False, False))
    assert gw is None and gb is None
    assert rel_err(gx, ref.batch_norm_backward(g, x, np.ones(4), 1e-5)[0]) < 1e-10
    gx, gw, gb = kernels.batch_norm_backward(g, x, None, mean, invstd, True, (False, True, True))
    assert gx is None and gw.shape == (4,) and gb.shape == (4,)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,norm", LN_SHAPES)
def test_layer_norm_kernels_match_reference(shape, norm, dtype, rng):
    k = 1 if isinstance(norm, int) else len(norm)
    fshape = shape[len(shape) - k:]
    x = (rng.standard_normal(shape) * 2 - 1).astype(dtype)
    w, b = rng.standard_normal(fshape).astype(dtype), rng.standard_normal(fshape).astype(dtype)
    y, mean, invstd = kernels.layer_norm_forward(x, norm, w, b, 1e-5)
    y_ref, mean_ref, invstd_ref = ref.layer_norm(x, k, w, b, 1e-5)
    tol = TOL[dtype]
    assert rel_err(y, y_ref) < tol and rel_err(mean, mean_ref) < tol and rel_err(invstd, invstd_ref) < tol
    g = rng.standard_normal(shape).astype(dtype)
    grads = kernels.layer_norm_backward(g, x, norm, w, mean, invstd)
    for out, want in zip(grads, ref.layer_norm_backward(g, x, k, w, 1e-5)):
        if not want.any():  # one value per row: d x is exactly 0, ours is 0 to rounding (fused multiply-adds)
            assert np.abs(out).max() < tol * np.abs(g).max()
        else:
            assert rel_err(out, want) < tol * 10


def test_layer_norm_many_rows_sums_weight_gradient_over_threads(rng):
    """Enough rows for the threaded path: per-thread partial sums of d weight and d bias."""
    x, g = rng.standard_normal((300, 64)), rng.standard_normal((300, 64))
    w = rng.standard_normal(64)
    _, mean, invstd = kernels.layer_norm_forward(x, 64, w, None)
    for out, want in zip(kernels.layer_norm_backward(g, x, 64, w, mean, invstd),
                         ref.layer_norm_backward(g, x, 1, w, 1e-5)):
        assert rel_err(out, want) < 1e-10


@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (5, 3), (1, 2, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck(shape, training, rng):
    c = shape[1]
    x, w, b = rng.standard_normal(shape), rng.standard_normal(c), rng.standard_normal(c)
    rm, rv = pf.tensor(rng.standard_normal(c)), pf.tensor(rng.uniform(0.5, 2, c))
    fn = lambda a, ww, bb: F.batch_norm(a, None if training else rm, None if training else rv, ww, bb,  # noqa: E731
                                        training=training)
    assert gradcheck(fn, (leaf(x), leaf(w), leaf(b)))


@pytest.mark.parametrize("shape,norm", LN_SHAPES[:4])
def test_layer_norm_gradcheck(shape, norm, rng):
    fshape = (norm,) if isinstance(norm, int) else norm
    x, w, b = rng.standard_normal(shape), rng.standard_normal(fshape), rng.standard_normal(fshape)
    assert gradcheck(lambda a, ww, bb: F.layer_norm(a, norm, ww, bb), (leaf(x), leaf(w), leaf(b)))


def test_nan_stays_in_its_group(rng):
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    x[2, 1, 3, 3] = np.nan
    y, _, _ = kernels.batch_norm_forward(x, None, None, None, None, True)
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, [0, 2]]).all()
    z = rng.standard_normal((4, 6)).astype(np.float32)
    z[1, 2] = np.nan
    y, _, _ = kernels.layer_norm_forward(z, 6)
    assert np.isnan(y[1]).all() and np.isfinite(np.delete(y, 1, axis=0)).all()


def test_bad_input():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="batch_norm.*more than 1 value per channel"):
        kernels.batch_norm_forward(np.ones((1, 3), np.float32), None, None, None, None, True)
    with pytest.raises(ValueError, match="batch_norm_forward: weight has shape \\(4,\\), expected \\(3,\\)"):
        kernels.batch_norm_forward(x, np.ones(4, np.float32), None, None, None, True)
    with pytest.raises(TypeError, match="batch_norm_forward: bias has dtype float64, expected float32"):
        kernels.batch_norm_forward(x, None, np.ones(3), None, None, True)
    with pytest.raises(ValueError, match="running_mean"):
        kernels.batch_norm_forward(x, None, None, None, None, False)
    with pytest.raises(TypeError, match="batch_norm_forward: input has dtype int64"):
        kernels.batch_norm_forward(np.ones((2, 3), np.int64), None, None, None, None, True)
    with pytest.raises(ValueError, match="batch_norm: input must be \\(N, C, \\*\\)"):
        kernels.batch_norm_forward(np.ones(3, np.float32), None, None, None, None, True)
    with pytest.raises(ValueError, match="layer_norm: eps must be"):
        kernels.layer_norm_forward(x, 4, eps=-1.0)
    with pytest.raises(ValueError, match="layer_norm_forward: weight has shape"):
        kernels.layer_norm_forward(x, 4, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="variant"):
        kernels.layer_norm_forward(x, 4, variant="fastest")


def test_fused_ops_save_the_input_not_a_normalised_copy(rng):
    """What the forward keeps for the backward: the input itself and the small statistics."""
    x = leaf(rng.standard_normal((4, 3, 5, 5)).astype(np.float32))
    y = F.batch_norm(x, None, None, training=True)
    saved = y._node.ctx.saved_tensors
    assert saved[0] is x.data and sum(a.size for a in saved[1:] if a is not None) == 6


@requires_torch
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_module_matches_torch(training, rng):
    import torch

    x = rng.standard_normal((8, 16, 6, 6)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    ours, theirs = pf.nn.BatchNorm2d(16), torch.nn.BatchNorm2d(16)
    ours.train(training), theirs.train(training)
    for _ in range(2):  # the second call sees updated running statistics
        xt, tt = leaf(x), torch.tensor(x, requires_grad=True)
        ours(xt).backward(pf.tensor(g))
        theirs(tt).backward(torch.tensor(g))
    assert rel_err(xt.grad.data, tt.grad.numpy()) < 1e-5
    assert rel_err(ours.weight.grad.data, theirs.weight.grad.numpy()) < 1e-5
    assert rel_err(ours.running_var.data, theirs.running_var.numpy()) < 1e-6


@requires_torch
def test_layer_norm_matches_torch(rng):
    import torch

    x = rng.standard_normal((4, 16, 256)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    ours, theirs = pf.nn.LayerNorm(256), torch.nn.LayerNorm(256)
    xt, tt = leaf(x), torch.tensor(x, requires_grad=True)
    y = ours(xt)
    y.backward(pf.tensor(g))
    ty = theirs(tt)
    ty.backward(torch.tensor(g))
    assert rel_err(y.data, ty.detach().numpy()) < 1e-5
    assert rel_err(xt.grad.data, tt.grad.numpy()) < 1e-5
    assert rel_err(ours.weight.grad.data, theirs.weight.grad.numpy()) < 1e-5
