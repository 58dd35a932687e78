"""The functional ops this family adds (activations, linear, normalisation, dropout, embedding,
pad): forward against float64 references and torch, every backward by gradcheck."""

import numpy as np
import pytest
from conftest import HAVE_TORCH, requires_torch
from reference import nn as ref
from reference.nn import rel_err

import pyfastdl as pf
from pyfastdl.nn import functional as F
from pyfastdl.random import Generator
from pyfastdl.testing import gradcheck

if HAVE_TORCH:
    import torch
    import torch.nn.functional as TF


def leaf(a):
    return pf.tensor(a, requires_grad=True)


def _softmax_ref(x, axis):
    return np.exp(ref.log_softmax(x, axis))


ACTIVATIONS = {  # name: (ours, numpy reference, torch)
    "relu": (F.relu, lambda x: np.maximum(x, 0), lambda t: TF.relu(t)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda x: np.where(x > 0, x, 0.2 * x),
                   lambda t: TF.leaky_relu(t, 0.2)),
    "sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x)), lambda t: torch.sigmoid(t)),
    "tanh": (F.tanh, np.tanh, lambda t: torch.tanh(t)),
    "gelu": (F.gelu, ref.gelu, lambda t: TF.gelu(t)),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"),
                  lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
                  lambda t: TF.gelu(t, approximate="tanh")),
    "glu": (lambda x: F.glu(x, 1), lambda x: x[:, :2] / (1 + np.exp(-x[:, 2:])), lambda t: TF.glu(t, 1)),
    "softmax": (lambda x: F.softmax(x, dim=1), lambda x: _softmax_ref(x, 1), lambda t: TF.softmax(t, dim=1)),
    "softmax_last": (lambda x: F.softmax(x, dim=-1), lambda x: _softmax_ref(x, 2), lambda t: TF.softmax(t, dim=-1)),
    "log_softmax": (lambda x: F.log_softmax(x, dim=1), lambda x: ref.log_softmax(x, 1),
                    lambda t: TF.log_softmax(t, dim=1)),
    "log_softmax_0": (lambda x: F.log_softmax(x, dim=0), lambda x: ref.log_softmax(x, 0),
                      lambda t: TF.log_softmax(t, dim=0)),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_reference_and_gradcheck(name, rng):
    ours, reference, _ = ACTIVATIONS[name]
    x = rng.standard_normal((3, 4, 5)) * 2
    assert rel_err(ours(pf.tensor(x)).data, reference(x)) < 1e-10
    assert gradcheck(ours, (leaf(x),))


@requires_torch
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_matches_torch_float32(name, rng):
    ours, _, theirs = ACTIVATIONS[name]
    x = (rng.standard_normal((3, 4, 5)) * 2).astype(np.float32)
    xt, tx = leaf(x), torch.tensor(x, requires_grad=True)
    y, ty = ours(xt), theirs(tx)
    assert y.dtype == np.float32 and rel_err(y.data, ty.detach().numpy()) < 1e-5
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(pf.tensor(g))
    ty.backward(torch.tensor(g))
    assert rel_err(xt.grad.data, tx.grad.numpy()) < 1e-5


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
def test_softmax_large_logits_finite(fn, rng):
    x = (rng.standard_normal((4, 7)) * 1e4).astype(np.float32)
    xt = leaf(x)
    y = fn(xt, dim=1)
    y.backward(pf.tensor(np.ones(y.shape, np.float32)))
    assert np.isfinite(y.data).all() and np.isfinite(xt.grad.data).all()
    if fn is F.log_softmax:
        assert rel_err(y.data, ref.log_softmax(x.astype(np.float64), 1)) < 1e-6


def test_bad_activation_arguments(rng):
    with pytest.raises(ValueError, match="even-sized"):
        F.glu(pf.tensor(rng.standard_normal((2, 3))), dim=1)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(pf.tensor(rng.standard_normal(3)), approximate="fast")
    with pytest.raises(IndexError, match="dim 3 is out of range"):
        F.softmax(pf.tensor(rng.standard_normal((2, 3))), dim=3)
    with pytest.raises(TypeError, match="input must be a Tensor"):
        F.relu(np.ones(3))


@pytest.mark.parametrize("x_shape,bias", [((5, 4), True), ((2, 3, 4), True), ((5, 4), False), ((4,), True)])
def test_linear(x_shape, bias, rng):
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal((3, 4)), rng.standard_normal(3)
    expected = x @ w.T + (b if bias else 0)
    out = F.linear(pf.tensor(x), pf.tensor(w), pf.tensor(b) if bias else None)
    assert out.shape == x_shape[:-1] + (3,) and rel_err(out.data, expected) < 1e-12
    inputs = (leaf(x), leaf(w)) + ((leaf(b),) if bias else ())
    assert gradcheck(lambda *a: F.linear(*a), inputs)


def test_linear_bad_shapes(rng):
    with pytest.raises(ValueError, match=r"input of shape \(2, 5\) does not match weight of shape \(3, 4\)"):
        F.linear(pf.tensor(rng.standard_normal((2, 5))), pf.tensor(rng.standard_normal((3, 4))))
    with pytest.raises(ValueError, match="bias has shape"):
        F.linear(pf.tensor(rng.standard_normal((2, 4))), pf.tensor(rng.standard_normal((3, 4))),
                 pf.tensor(rng.standard_normal(4)))


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5), (2, 3, 4, 5)])
def test_batch_norm_training(shape, rng):
    x, w, b = rng.standard_normal(shape) * 3 + 1, rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    rm, rv = pf.tensor(rng.standard_normal(3)), pf.tensor(rng.uniform(0.5, 2, 3))
    rm0, rv0 = rm.data.copy(), rv.data.copy()
    y = F.batch_norm(pf.tensor(x), rm, rv, pf.tensor(w), pf.tensor(b), training=True, momentum=0.2, eps=1e-3)
    y_ref, mean, var = ref.batch_norm_train(x, w, b, 1e-3)
    n = x.size // 3
    assert rel_err(y.data, y_ref) < 1e-12
    assert rel_err(rm.data, 0.8 * rm0 + 0.2 * mean) < 1e-12
    assert rel_err(rv.data, 0.8 * rv0 + 0.2 * var * n / (n - 1)) < 1e-12
    assert gradcheck(lambda a, c, d: F.batch_norm(a, None, None, c, d, training=True), (leaf(x), leaf(w), leaf(b)))


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 5)])
def test_batch_norm_eval_uses_running_stats(shape, rng):
    x, w, b = rng.standard_normal(shape), rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    s = (1, 3) + (1,) * (len(shape) - 2)
    expected = (x - rm.reshape(s)) / np.sqrt(rv.reshape(s) + 1e-5) * w.reshape(s) + b.reshape(s)
    rmt, rvt = pf.tensor(rm), pf.tensor(rv)
    y = F.batch_norm(pf.tensor(x), rmt, rvt, pf.tensor(w), pf.tensor(b), training=False)
    assert rel_err(y.data, expected) < 1e-12
    np.testing.assert_array_equal(rmt.data, rm)  # not updated in eval
    assert gradcheck(lambda a, c, d: F.batch_norm(a, rmt, rvt, c, d), (leaf(x), leaf(w), leaf(b)))


def test_batch_norm_errors(rng):
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(pf.tensor(rng.standard_normal((1, 3))), None, None, training=True)
    with pytest.raises(ValueError, match=r"weight has shape \(4,\), expected \(3,\)"):
        F.batch_norm(pf.tensor(rng.standard_normal((2, 3))), None, None, pf.tensor(np.ones(4)), training=True)
    with pytest.raises(ValueError, match="running_mean and running_var are required"):
        F.batch_norm(pf.tensor(rng.standard_normal((2, 3))), None, None)


@pytest.mark.parametrize("shape,norm", [((4, 6), (6,)), ((2, 3, 4, 5), (4, 5)), ((3, 5), 5)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(shape, norm, affine, rng):
    k = 1 if isinstance(norm, int) else len(norm)
    ns = shape[len(shape) - k:]
    x = rng.standard_normal(shape) * 2 + 0.5
    w, b = (rng.uniform(0.5, 2, ns), rng.standard_normal(ns)) if affine else (np.ones(ns), np.zeros(ns))
    args = (pf.tensor(w), pf.tensor(b)) if affine else (None, None)
    y = F.layer_norm(pf.tensor(x), norm, *args)
    assert rel_err(y.data, ref.layer_norm(x, k, w, b, 1e-5)) < 1e-12
    if affine:
        assert gradcheck(lambda a, c, d: F.layer_norm(a, norm, c, d), (leaf(x), leaf(w), leaf(b)))
    else:
        assert gradcheck(lambda a: F.layer_norm(a, norm), (leaf(x),))


def test_layer_norm_bad_shape(rng):
    with pytest.raises(ValueError, match=r"does not end with normalized_shape \(5,\)"):
        F.layer_norm(pf.tensor(rng.standard_normal((3, 4))), 5)


@requires_torch
def test_norms_match_torch_float32(rng):
    x = rng.standard_normal((4, 3, 5, 6)).astype(np.float32)
    w, b = rng.uniform(0.5, 2, 3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    xt, wt, bt = leaf(x), leaf(w), leaf(b)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.batch_norm(xt, None, None, wt, bt, training=True)
    ty = TF.batch_norm(tx, None, None, tw, tb, training=True)
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(pf.tensor(g))
    ty.backward(torch.tensor(g))
    for a, t in ((y, ty), (xt.grad, tx.grad), (wt.grad, tw.grad), (bt.grad, tb.grad)):
        assert rel_err(a.data, t.detach().numpy()) < 1e-5
    lw, lb = rng.uniform(0.5, 2, (5, 6)).astype(np.float32), rng.standard_normal((5, 6)).astype(np.float32)
    xt, lwt, lbt = leaf(x), leaf(lw), leaf(lb)
    tx, tlw, tlb = (torch.tensor(a, requires_grad=True) for a in (x, lw, lb))
    y, ty = F.layer_norm(xt, (5, 6), lwt, lbt), TF.layer_norm(tx, (5, 6), tlw, tlb)
    y.backward(pf.tensor(g))
    ty.backward(torch.tensor(g))
    for a, t in ((y, ty), (xt.grad, tx.grad), (lwt.grad, tlw.grad), (lbt.grad, tlb.grad)):
        assert rel_err(a.data, t.detach().numpy()) < 1e-5


def test_dropout_scaling_and_eval_identity(rng):
    x = pf.tensor(rng.uniform(1, 2, (200, 500)).astype(np.float32))
    y = F.dropout(x, p=0.3, training=True)
    kept = y.data != 0
    # 100,000 draws: the kept fraction has a standard deviation of 0.0014, so 0.01 is 7 of them whatever
    # the global generator's state (tests before this one draw from it too)
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y.data[kept], x.data[kept] / 0.7, rtol=1e-6)
    assert F.dropout(x, p=0.3, training=False) is x
    assert F.dropout(x, p=0.0) is x
    assert not F.dropout(x, p=1.0).data.any()
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, p=1.5)


def test_dropout_is_seeded_and_gradient_uses_the_mask(rng):
    x = rng.standard_normal((6, 7))
    pf.manual_seed(3)
    a = F.dropout(pf.tensor(x), 0.5)
    pf.manual_seed(3)
    b = F.dropout(pf.tensor(x), 0.5)
    c = F.dropout(pf.tensor(x), 0.5)
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(b.data, c.data)
    assert gradcheck(lambda t: F.dropout(t, 0.4, generator=Generator(7)), (leaf(x),))
    xt = leaf(x)
    y = F.dropout(xt, 0.4)
    y.sum().backward()
    np.testing.assert_allclose(xt.grad.data, (y.data != 0) / 0.6)


def test_embedding(rng):
    w = rng.standard_normal((10, 4))
    idx = np.array([[1, 3, 3], [0, 9, 1]])
    out = F.embedding(pf.tensor(idx), pf.tensor(w))
    np.testing.assert_array_equal(out.data, w[idx])
    assert gradcheck(lambda t: F.embedding(pf.tensor(idx), t), (leaf(w),))
    wt = leaf(w)
    F.embedding(pf.tensor(idx), wt, padding_idx=3).sum().backward()
    expected = np.zeros_like(w)
    np.add.at(expected, idx.ravel(), 1.0)
    expected[3] = 0
    np.testing.assert_array_equal(wt.grad.data, expected)
    with pytest.raises(IndexError, match="index out of range"):
        F.embedding(pf.tensor(np.array([10])), pf.tensor(w))
    with pytest.raises(TypeError, match="integer dtype"):
        F.embedding(pf.tensor(np.array([1.0])), pf.tensor(w))


def test_scatter_add_rows_matches_add_at(rng):
    """The sorted-runs path of backend.scatter_add (1-D row indices, as the embedding's and a row
    index's backward use) against np.add.at: repeated rows, negative rows naming the same row as
    their positive twin, unused rows, an empty index."""
    from pyfastdl import backend

    for rows in (rng.integers(0, 7, 50), np.array([3, -4, 0, 3, 6, -1, -1]), np.array([], dtype=np.int64)):
        values = rng.standard_normal((rows.size, 3, 2))
        target = rng.standard_normal((7, 3, 2))
        expected = target.copy()
        np.add.at(expected, rows, values)
        backend.scatter_add(target, rows, values)
        np.testing.assert_allclose(target, expected, rtol=1e-12, atol=1e-12)
    x = leaf(rng.standard_normal((5, 3)))
    assert gradcheck(lambda t: t[pf.tensor(np.array([4, -1, 0, 2, 0]))], (x,))


def test_one_hot():
    out = F.one_hot(pf.tensor(np.array([[0, 2], [1, 2]])))
    assert out.dtype == np.int64 and out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out.data, np.eye(3, dtype=np.int64)[[[0, 2], [1, 2]]])
    assert F.one_hot(pf.tensor(np.array([1])), num_classes=5).shape == (1, 5)
    with pytest.raises(IndexError):
        F.one_hot(pf.tensor(np.array([5])), num_classes=3)


def test_pad(rng):
    x = rng.standard_normal((2, 3, 4))
    out = F.pad(pf.tensor(x), (1, 2, 0, 1), value=0.5)
    np.testing.assert_array_equal(out.data, np.pad(x, ((0, 0), (0, 1), (1, 2)), constant_values=0.5))
    assert gradcheck(lambda t: F.pad(t, (1, 2, 0, 1)), (leaf(x),))
    if HAVE_TORCH:
        np.testing.assert_array_equal(out.data, TF.pad(torch.tensor(x), (1, 2, 0, 1), value=0.5).numpy())
    with pytest.raises(ValueError, match="non-negative"):
        F.pad(pf.tensor(x), (1, -1))


GPU_CASES = {  # name: (fn of tensors, input shapes); targets and indices are made on the input's device
    "linear": (lambda x, w, b: F.linear(x, w, b), [(4, 6), (5, 6), (5,)]),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), [(3, 7)]),
    "gelu": (F.gelu, [(3, 7)]),
    "glu": (F.glu, [(3, 8)]),
    "softmax": (lambda x: F.softmax(x, dim=1), [(3, 7, 2)]),
    "log_softmax": (lambda x: F.log_softmax(x, dim=-1), [(3, 7)]),
    "batch_norm": (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [(4, 3, 5, 5), (3,), (3,)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (6,), w, b), [(4, 5, 6), (6,), (6,)]),
    "cross_entropy": (lambda x: F.cross_entropy(x, pf.tensor(np.array([[0, 2], [1, 1], [2, 0]]), device=x.device),
                                                label_smoothing=0.1), [(3, 3, 2)]),
    "bce_with_logits": (lambda x, y: F.binary_cross_entropy_with_logits(x, y), [(4, 5), (4, 5)]),
    "embedding": (lambda w: F.embedding(pf.tensor(np.array([1, 3, 1]), device=w.device), w), [(5, 4)]),
    "pad": (lambda x: F.pad(x, (1, 2)), [(2, 3)]),
}


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(GPU_CASES))
def test_gpu_matches_cpu(name, rng):
    fn, shapes = GPU_CASES[name]
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    cpu = [pf.tensor(a, requires_grad=True) for a in arrays]
    gpu = [pf.tensor(a, device="cuda", requires_grad=True) for a in arrays]
    y, yg = fn(*cpu), fn(*gpu)
    assert yg.device == "cuda" and rel_err(yg.data.get(), y.data) < 1e-4
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(pf.tensor(g))
    yg.backward(pf.tensor(g, device="cuda"))
    for a, b in zip(cpu, gpu):
        assert rel_err(b.grad.data.get(), a.grad.data) < 1e-4


@pytest.mark.gpu
def test_gpu_dropout_is_seeded_and_scaled():
    x = pf.tensor(np.ones((100, 100), np.float32), device="cuda")
    pf.manual_seed(9)
    a = F.dropout(x, 0.25)
    pf.manual_seed(9)
    b = F.dropout(x, 0.25)
    assert a.device == "cuda" and (a.data == b.data).all()
    kept = a.data.get() != 0
    assert abs(kept.mean() - 0.75) < 0.02 and np.allclose(a.data.get()[kept], 1 / 0.75)
