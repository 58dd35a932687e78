"""Losses: values and gradients against float64 references and torch (large logits included),
gradchecks, modules, and the errors bad targets raise."""

import numpy as np
import pytest
from conftest import HAVE_TORCH, requires_torch
from reference.nn import cross_entropy as ref_cross_entropy
from reference.nn import rel_err

import pyfastdl as pf
from pyfastdl import nn
from pyfastdl.nn import functional as F
from pyfastdl.testing import gradcheck

if HAVE_TORCH:
    import torch
    import torch.nn.functional as TF


def leaf(a):
    return pf.tensor(a, requires_grad=True)


CE_CASES = [  # (input shape, kwargs)
    ((6, 5), {}),
    ((6, 5), dict(reduction="sum")),
    ((6, 5), dict(reduction="none")),
    ((6, 5), dict(ignore_index=2)),
    ((6, 5), dict(label_smoothing=0.2)),
    ((6, 5), dict(weight=True, ignore_index=1, label_smoothing=0.1)),
    ((6, 5), dict(weight=True, reduction="none", label_smoothing=0.3)),
    ((3, 4, 5, 2), dict(ignore_index=0)),  # segmentation-style: classes in dim 1
    ((3, 4, 5, 2), dict(weight=True, label_smoothing=0.15, reduction="sum")),
    ((2, 3, 7), dict(weight=True, ignore_index=1, reduction="none")),
    ((5,), dict(label_smoothing=0.1)),  # unbatched
]


def _ce_inputs(rng, shape, kwargs, dtype=np.float64):
    x = rng.standard_normal(shape).astype(dtype)
    c = shape[0] if len(shape) == 1 else shape[1]
    target_shape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = rng.integers(0, c, target_shape)
    kwargs = dict(kwargs)
    w = rng.uniform(0.5, 2.0, c).astype(dtype) if kwargs.pop("weight", False) else None
    if "ignore_index" in kwargs and t.ndim:
        t.reshape(-1)[0] = kwargs["ignore_index"]  # at least one ignored element
    return x, t, w, kwargs


@pytest.mark.parametrize("shape,kwargs", CE_CASES, ids=[str(i) for i in range(len(CE_CASES))])
def test_cross_entropy_reference_and_gradcheck(shape, kwargs, rng):
    x, t, w, kw = _ce_inputs(rng, shape, kwargs)
    wt = None if w is None else pf.tensor(w)
    out = F.cross_entropy(pf.tensor(x), pf.tensor(t), wt, **kw)
    assert rel_err(out.data, ref_cross_entropy(x, t, w, **kw)) < 1e-10
    assert gradcheck(lambda a: F.cross_entropy(a, pf.tensor(t), wt, **kw), (leaf(x),))


@requires_torch
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("shape,kwargs", CE_CASES, ids=[str(i) for i in range(len(CE_CASES))])
def test_cross_entropy_matches_torch(shape, kwargs, dtype, tol, rng):
    x, t, w, kw = _ce_inputs(rng, shape, kwargs, dtype)
    ours_x = leaf(x)
    out = F.cross_entropy(ours_x, pf.tensor(t), None if w is None else pf.tensor(w), **kw)
    tx = torch.tensor(x, requires_grad=True)
    tout = TF.cross_entropy(tx, torch.tensor(t), None if w is None else torch.tensor(w), **kw)
    assert rel_err(out.data, tout.detach().numpy()) < tol
    g = rng.standard_normal(out.shape).astype(dtype)
    out.backward(pf.tensor(g))
    tout.backward(torch.tensor(g))
    assert rel_err(ours_x.grad.data, tx.grad.numpy()) < tol


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_large_logits_stay_finite(label_smoothing, rng):
    x = (rng.standard_normal((4, 6)) * 1e4).astype(np.float32)
    t = rng.integers(0, 6, 4)
    xt = leaf(x)
    out = F.cross_entropy(xt, pf.tensor(t), label_smoothing=label_smoothing)
    out.backward()
    assert np.isfinite(out.item()) and np.isfinite(xt.grad.data).all()
    ref = ref_cross_entropy(x.astype(np.float64), t, label_smoothing=label_smoothing)
    assert rel_err(out.item(), ref) < 1e-5
    if HAVE_TORCH:
        tx = torch.tensor(x, requires_grad=True)
        tout = TF.cross_entropy(tx, torch.tensor(t), label_smoothing=label_smoothing)
        tout.backward()
        assert rel_err(out.item(), tout.item()) < 1e-5
        assert rel_err(xt.grad.data, tx.grad.numpy()) < 1e-5


def test_cross_entropy_all_ignored_is_nan_like_torch():
    with np.errstate(all="ignore"):
        out = F.cross_entropy(pf.tensor(np.ones((2, 3))), pf.tensor(np.array([-100, -100])))
    assert np.isnan(out.item())


@pytest.mark.parametrize("target,exc,match", [
    (np.array([0.0, 1.0, 2.0]), TypeError, "integer dtype"),
    (np.array([[0], [1], [2]]), ValueError, r"target has shape \(3, 1\), expected \(3,\)"),
    (np.array([0, 1]), ValueError, "target has shape"),
    (np.array([0, 4, 1]), IndexError, "target 4 is out of bounds for 4 classes"),
    (np.array([0, -1, 1]), IndexError, "out of bounds"),
])
def test_cross_entropy_bad_target(target, exc, match, rng):
    x = pf.tensor(rng.standard_normal((3, 4)))
    with pytest.raises(exc, match=match):
        F.cross_entropy(x, pf.tensor(target))


def test_cross_entropy_bad_arguments(rng):
    x, t = pf.tensor(rng.standard_normal((3, 4))), pf.tensor(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"weight must be a Tensor of shape \(4,\)"):
        F.cross_entropy(x, t, weight=pf.tensor(np.ones(3)))
    with pytest.raises(TypeError, match="target must be a Tensor"):
        F.cross_entropy(x, np.array([0, 1, 2]))


@pytest.mark.parametrize("shape,kwargs", [((6, 5), {}), ((6, 5), dict(weight=True, ignore_index=3)),
                                          ((3, 4, 5), dict(reduction="none")), ((3, 4, 2, 2), dict(reduction="sum"))])
def test_nll_loss(shape, kwargs, rng):
    x, t, w, kw = _ce_inputs(rng, shape, kwargs)
    lp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    wt = None if w is None else pf.tensor(w)
    out = F.nll_loss(pf.tensor(lp), pf.tensor(t), wt, **kw)
    # cross_entropy of logits == nll_loss of their log-softmax
    assert rel_err(out.data, ref_cross_entropy(x, t, w, **kw)) < 1e-10
    assert gradcheck(lambda a: F.nll_loss(a, pf.tensor(t), wt, **kw), (leaf(lp),))
    if HAVE_TORCH:
        tout = TF.nll_loss(torch.tensor(lp), torch.tensor(t), None if w is None else torch.tensor(w), **kw)
        assert rel_err(out.data, tout.numpy()) < 1e-10


def _bce_ref(x, y, w=None, pw=None):
    p = 1 / (1 + np.exp(-x))
    pw = 1.0 if pw is None else pw
    loss = -(pw * y * np.log(p) + (1 - y) * np.log(1 - p))
    return loss if w is None else loss * w


POINTWISE = {
    "mse": (lambda a, b, **k: F.mse_loss(a, b, **k), lambda x, y: (x - y) ** 2, "mse_loss", {}),
    "smooth_l1": (lambda a, b, **k: F.smooth_l1_loss(a, b, **k, beta=0.5),
                  lambda x, y: np.where(np.abs(x - y) < 0.5, (x - y) ** 2, np.abs(x - y) - 0.25),
                  "smooth_l1_loss", dict(beta=0.5)),
    "bce": (lambda a, b, **k: F.binary_cross_entropy_with_logits(a, b, **k), _bce_ref,
            "binary_cross_entropy_with_logits", {}),
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", sorted(POINTWISE))
def test_pointwise_losses(name, reduction, rng):
    ours, ref, torch_name, torch_kw = POINTWISE[name]
    x = rng.standard_normal((4, 3)) * 2
    y = rng.uniform(0, 1, (4, 3)) if name == "bce" else rng.standard_normal((4, 3))
    out = ours(pf.tensor(x), pf.tensor(y), reduction=reduction)
    r = ref(x, y)
    r = r if reduction == "none" else (r.sum() if reduction == "sum" else r.mean())
    assert rel_err(out.data, r) < 1e-10
    assert gradcheck(lambda a, b: ours(a, b, reduction=reduction), (leaf(x), leaf(y)))
    if HAVE_TORCH:
        tx, ty = torch.tensor(x.astype(np.float32), requires_grad=True), torch.tensor(y.astype(np.float32))
        tout = getattr(TF, torch_name)(tx, ty, reduction=reduction, **torch_kw)
        xt = leaf(x.astype(np.float32))
        o32 = ours(xt, pf.tensor(y.astype(np.float32)), reduction=reduction)
        assert o32.dtype == np.float32 and rel_err(o32.data, tout.detach().numpy()) < 1e-5
        g = np.ones(o32.shape, np.float32)
        o32.backward(pf.tensor(g))
        tout.backward(torch.tensor(g))
        assert rel_err(xt.grad.data, tx.grad.numpy()) < 1e-5


def test_bce_with_logits_weights_and_large_logits(rng):
    x = rng.standard_normal((5, 3)) * 3
    x[0] = [1e4, -1e4, 50.0]
    y = rng.uniform(0, 1, (5, 3))
    w, pw = rng.uniform(0.5, 2, (5, 1)), rng.uniform(0.5, 3, 3)
    out = F.binary_cross_entropy_with_logits(pf.tensor(x), pf.tensor(y), pf.tensor(w), "none", pf.tensor(pw))
    assert np.isfinite(out.data).all()
    ok = np.abs(x) < 30  # where the naive reference itself is finite
    with np.errstate(all="ignore"):
        ref = _bce_ref(x, y, w, pw)
    assert rel_err(out.data[ok], ref[ok]) < 1e-10
    assert gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b, pf.tensor(w[1:]), "mean", pf.tensor(pw)),
                     (leaf(x[1:]), leaf(y[1:])))
    if HAVE_TORCH:
        tout = TF.binary_cross_entropy_with_logits(torch.tensor(x), torch.tensor(y), torch.tensor(w), reduction="none",
                                                   pos_weight=torch.tensor(pw))
        assert rel_err(out.data, tout.numpy()) < 1e-10


def test_smooth_l1_beta_zero_is_l1(rng):
    x, y = rng.standard_normal(6), rng.standard_normal(6)
    out = F.smooth_l1_loss(pf.tensor(x), pf.tensor(y), beta=0.0)
    assert rel_err(out.item(), np.abs(x - y).mean()) < 1e-12


def test_pointwise_losses_check_shapes(rng):
    with pytest.raises(ValueError, match=r"input has shape \(3, 1\) but target has shape \(3,\)"):
        F.mse_loss(pf.tensor(rng.standard_normal((3, 1))), pf.tensor(rng.standard_normal(3)))
    with pytest.raises(TypeError, match="target must be floating point"):
        F.mse_loss(pf.tensor(rng.standard_normal(3)), pf.tensor(np.array([1, 2, 3])))


def test_loss_modules_match_functional(rng):
    x = pf.tensor(rng.standard_normal((4, 3)))
    t = pf.tensor(rng.integers(0, 3, 4))
    y = pf.tensor(rng.uniform(0, 1, (4, 3)))
    w = pf.tensor(rng.uniform(0.5, 2, 3))
    ce = nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)
    assert ce(x, t).item() == F.cross_entropy(x, t, w, label_smoothing=0.1).item()
    assert "weight" in ce.state_dict()  # class weights are a buffer, as in torch
    assert nn.NLLLoss(reduction="sum")(x, t).item() == F.nll_loss(x, t, reduction="sum").item()
    assert nn.MSELoss()(x, y).item() == F.mse_loss(x, y).item()
    assert nn.SmoothL1Loss(beta=0.3)(x, y).item() == F.smooth_l1_loss(x, y, beta=0.3).item()
    assert (nn.BCEWithLogitsLoss(pos_weight=w)(x, y).item()
            == F.binary_cross_entropy_with_logits(x, y, pos_weight=w).item())
