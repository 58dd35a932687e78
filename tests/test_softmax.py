"""Softmax family: softmax / log_softmax along the last dimension and fused cross-entropy (CPU
kernels), forward and backward.

Checked against the float64 references in tests/reference/ (softmax.py, nn.cross_entropy) over
awkward shapes, every backward by gradcheck through nn.functional, large and infinite logits, NaN
propagation, bad input, and torch where installed."""

import numpy as np
import pytest
from conftest import TOL, leaf, rel_err, requires_torch
from reference import nn as nn_ref
from reference import softmax as ref

import pyfastdl as pf
import pyfastdl.nn.functional as F
from pyfastdl import kernels
from pyfastdl.testing import gradcheck

SHAPES = [(1, 1), (3, 1), (2, 3, 17), (5, 1000), (4, 2, 3, 129), (300, 64)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("log", [False, True])
def test_softmax_kernels_match_reference(shape, dtype, log, rng):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    fwd, bwd = ((kernels.log_softmax_forward, kernels.log_softmax_backward) if log
                else (kernels.softmax_forward, kernels.softmax_backward))
    y = fwd(x)
    assert y.dtype == dtype and rel_err(y, ref.log_softmax(x) if log else ref.softmax(x)) < TOL[dtype]
    want = (ref.log_softmax_backward if log else ref.softmax_backward)(y.astype(np.float64), g)
    assert rel_err(bwd(y, g), want) < TOL[dtype] * 10


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (2, 3, 5)])
def test_softmax_gradcheck(fn, shape, rng):
    assert gradcheck(lambda a: fn(a, dim=-1), (leaf(rng.standard_normal(shape)),))


def test_extreme_logits(rng):
    x = np.array([[1e4, -1e4, 0.0], [-np.inf, 0.0, 1.0], [88.0, 89.0, 90.0]], np.float32)
    y = kernels.softmax_forward(x)
    assert np.isfinite(y).all() and rel_err(y, ref.softmax(x.astype(np.float64))) < 1e-6
    assert y[1, 0] == 0  # a masked (-inf) score gets exactly zero weight
    lp = kernels.log_softmax_forward(x[[0, 2]])
    assert rel_err(lp, ref.log_softmax(x[[0, 2]].astype(np.float64))) < 1e-6


def test_nan_stays_in_its_row(rng):
    x = rng.standard_normal((4, 9)).astype(np.float32)
    x[2, 5] = np.nan
    for fwd in (kernels.softmax_forward, kernels.log_softmax_forward):
        y = fwd(x)
        assert np.isnan(y[2]).all() and np.isfinite(np.delete(y, 2, axis=0)).all()
    loss, _ = kernels.cross_entropy_forward(x, np.zeros(4, np.int64))
    assert np.isnan(loss[2]) and np.isfinite(np.delete(loss, 2)).all()


CE_CASES = [  # (rows, classes, weighted, ignore some, label_smoothing)
    (7, 5, False, False, 0.0), (6, 11, True, True, 0.0), (9, 4, False, True, 0.2), (5, 13, True, True, 0.1),
    (1, 1, False, False, 0.0), (64, 1000, False, False, 0.1),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows,c,weighted,ignore,eps", CE_CASES)
def test_cross_entropy_kernels_match_reference(rows, c, weighted, ignore, eps, dtype, rng):
    x = (rng.standard_normal((rows, c)) * 3).astype(dtype)
    t = rng.integers(0, c, rows)
    if ignore:
        t[::3] = -1
    w = rng.uniform(0.5, 2, c).astype(dtype) if weighted else None
    loss, lse = kernels.cross_entropy_forward(x, t, w, -1, eps)
    want = nn_ref.cross_entropy(x.astype(np.float64), t, w, -1, "none", eps)
    assert rel_err(loss, want) < TOL[dtype]
    gr = rng.standard_normal(rows).astype(dtype)
    gx = kernels.cross_entropy_backward(x, t, lse, w, -1, eps, gr, 0.5)
    assert rel_err(gx, 0.5 * gr[:, None] * ref.cross_entropy_grad(x, t, w, -1, eps)) < TOL[dtype] * 10


SPATIAL_CASES = [  # logits (N, C, d1, ...) read in place: positions in vector lanes, a partial last vector
    ((2, 21, 5, 7), True, True, 0.0), ((3, 4, 17), False, True, 0.1), ((1, 3, 1, 1), False, False, 0.0),
    ((2, 5, 4, 4), True, False, 0.2), ((4, 1, 9), False, True, 0.0),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,weighted,ignore,eps", SPATIAL_CASES)
def test_cross_entropy_kernels_on_maps(shape, weighted, ignore, eps, dtype, rng):
    """Classes in dim 1 of a segmentation map: the same losses and gradients as its rows."""
    c = shape[1]
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    t = rng.integers(0, c, (shape[0],) + shape[2:])
    if ignore:
        t.reshape(-1)[::3] = -1
    w = rng.uniform(0.5, 2, c).astype(dtype) if weighted else None
    rows = np.moveaxis(x, 1, -1).reshape(-1, c).astype(np.float64)
    loss, lse = kernels.cross_entropy_forward(x, t.reshape(-1), w, -1, eps, out=(np.full(t.size, np.nan, dtype),
                                                                              np.full(t.size, np.nan, dtype)))
    assert rel_err(loss, nn_ref.cross_entropy(rows, t.reshape(-1), w, -1, "none", eps)) < TOL[dtype]
    gr = rng.standard_normal(t.size).astype(dtype)
    gx = kernels.cross_entropy_backward(x, t.reshape(-1), lse, w, -1, eps, gr, 0.5)
    want = 0.5 * gr[:, None] * ref.cross_entropy_grad(rows, t.reshape(-1), w, -1, eps)
    want = np.moveaxis(want.reshape((shape[0],) + shape[2:] + (c,)), -1, 1)
    assert gx.shape == shape and rel_err(gx, want) < TOL[dtype] * 10


def test_cross_entropy_map_bad_target():
    x = np.zeros((2, 4, 3, 3), np.float32)
    t = np.zeros(18, np.int64)
    t[13] = 4
    with pytest.raises(IndexError, match="cross_entropy_forward: target 4 of row 13 is out of bounds for 4 classes"):
        kernels.cross_entropy_forward(x, t)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4, 3), (6,)])
def test_cross_entropy_gradcheck(shape, reduction, rng):
    x = rng.standard_normal(shape)
    c = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = rng.integers(0, c, tshape)
    if t.ndim:
        t.reshape(-1)[0] = 7  # ignored
    w = pf.tensor(rng.uniform(0.5, 2, c))
    fn = lambda a: F.cross_entropy(a, pf.tensor(t), w, ignore_index=7, reduction=reduction,  # noqa: E731
                                   label_smoothing=0.15)
    assert gradcheck(fn, (leaf(x),))
    want = nn_ref.cross_entropy(x, t, w.data, 7, reduction, 0.15)
    assert rel_err(fn(pf.tensor(x)).data, want) < 1e-10


def test_bad_input():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(IndexError, match="cross_entropy_forward: target 4 of row 1 is out of bounds for 4 classes"):
        kernels.cross_entropy_forward(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="cross_entropy_forward: target has shape \\(2,\\), expected \\(3,\\)"):
        kernels.cross_entropy_forward(x, np.array([0, 1]))
    with pytest.raises(TypeError, match="cross_entropy_forward: weight has dtype float64, expected float32"):
        kernels.cross_entropy_forward(x, np.array([0, 1, 2]), np.ones(4))
    with pytest.raises(ValueError, match="label_smoothing must be in \\[0, 1\\]"):
        kernels.cross_entropy_forward(x, np.array([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="cross_entropy: input must have at least 2 dimensions"):
        kernels.cross_entropy_forward(np.zeros(4, np.float32), np.array([0]))
    with pytest.raises(TypeError, match="softmax_forward: input has dtype int32"):
        kernels.softmax_forward(np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError, match="softmax_forward: input must have at least one dimension"):
        kernels.softmax_forward(np.zeros((), np.float32))
    with pytest.raises(ValueError, match=r"log_softmax_forward: the softmax dimension has size 0, shape \(3, 0\)"):
        kernels.log_softmax_forward(np.zeros((3, 0), np.float32))
    with pytest.raises(ValueError, match="softmax_backward: grad_output has shape"):
        kernels.softmax_backward(x, np.zeros((3, 5), np.float32))


def test_fused_cross_entropy_saves_no_probabilities(rng):
    x = leaf(rng.standard_normal((8, 50)).astype(np.float32))
    loss = F.cross_entropy(x, pf.tensor(rng.integers(0, 50, 8)))
    big = [a for a in loss._node.ctx.saved_tensors if a is not None and a.size >= 400]
    assert len(big) == 1 and big[0] is x.data


@requires_torch
@pytest.mark.parametrize("shape,smoothing", [((16, 1000), 0.1), ((4, 21, 6, 5), 0.0)])
def test_cross_entropy_matches_torch(shape, smoothing, rng):
    import torch

    x = rng.standard_normal(shape).astype(np.float32)
    t = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    t.reshape(-1)[::5] = 255
    ours, theirs = leaf(x), torch.tensor(x, requires_grad=True)
    loss = F.cross_entropy(ours, pf.tensor(t), ignore_index=255, label_smoothing=smoothing)
    tloss = torch.nn.functional.cross_entropy(theirs, torch.tensor(t), ignore_index=255, label_smoothing=smoothing)
    loss.backward()
    tloss.backward()
    assert abs(float(loss.data) - tloss.item()) < 1e-5 * abs(tloss.item())
    assert rel_err(ours.grad.data, theirs.grad.numpy()) < 1e-5


@requires_torch
@pytest.mark.parametrize("fn,tfn", [("softmax", "softmax"), ("log_softmax", "log_softmax")])
def test_softmax_matches_torch(fn, tfn, rng):
    import torch

    x = rng.standard_normal((2, 4, 128, 128)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    ours, theirs = leaf(x), torch.tensor(x, requires_grad=True)
    y = getattr(F, fn)(ours, dim=-1)
    ty = getattr(torch.nn.functional, tfn)(theirs, dim=-1)
    y.backward(pf.tensor(g))
    ty.backward(torch.tensor(g))
    assert rel_err(y.data, ty.detach().numpy()) < 1e-5 and rel_err(ours.grad.data, theirs.grad.numpy()) < 1e-5
