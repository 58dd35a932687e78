"""nn.Module and the layers: registration, walking, state_dict, modes, devices/dtypes, printing,
parameter names and shapes as torch's, each layer's forward and backward against torch (weights
copied through load_state_dict) and by gradcheck in float64."""

import math

import numpy as np
import pytest
from conftest import HAVE_TORCH, requires_torch
from reference.nn import rel_err

import pyfastdl as pf
from pyfastdl import nn
from pyfastdl.nn import init
from pyfastdl.random import Generator
from pyfastdl.testing import gradcheck

if HAVE_TORCH:
    import torch


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 5 * 5, 6))
        self.scale = nn.Parameter(pf.tensor(np.ones(1, np.float32)))
        self.register_buffer("steps", pf.tensor(np.zeros(1, np.float32)))
        self.register_buffer("scratch", pf.tensor(np.zeros(2, np.float32)), persistent=False)

    def forward(self, x):
        return self.head(nn.functional.relu(self.bn(self.conv(x)))) * self.scale


def test_registration_and_walking():
    m = Block()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["scale", "conv.weight", "conv.bias", "bn.weight", "bn.bias", "head.1.weight", "head.1.bias"]
    assert [n for n, _ in m.named_buffers()] == ["steps", "scratch", "bn.running_mean", "bn.running_var",
                                                 "bn.num_batches_tracked"]
    assert [n for n, _ in m.named_children()] == ["conv", "bn", "head"]
    assert [n for n, _ in m.named_modules()] == ["", "conv", "bn", "head", "head.0", "head.1"]
    assert len(list(m.modules())) == 6 and len(list(m.parameters(recurse=False))) == 1
    assert list(m.state_dict()) == ["scale", "steps", "conv.weight", "conv.bias", "bn.weight", "bn.bias",
                                    "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
                                    "head.1.weight", "head.1.bias"]
    assert m.get_submodule("head.1") is m.head[1]
    shared = nn.Linear(2, 2)
    twice = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(twice.parameters())) == 2  # shared parameters once
    with pytest.raises(TypeError, match="cannot assign 'int' as parameter 'scale'"):
        m.scale = 3
    del m.scale
    assert "scale" not in dict(m.named_parameters())


def test_containers():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.ReLU())
    layers.insert(0, nn.Tanh())
    assert len(layers) == 5 and isinstance(layers[0], nn.Tanh) and isinstance(layers[-1], nn.ReLU)
    assert [n for n, _ in layers.named_parameters()][:2] == ["1.weight", "1.bias"]
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert isinstance(seq[1], nn.ReLU) and len(seq[1:]) == 2
    x = pf.tensor(np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(seq(x).data, seq[2](seq[1](seq[0](x))).data)
    d = nn.ModuleDict({"a": nn.Linear(1, 1)})
    assert "a" in d and [n for n, _ in d.named_parameters()] == ["a.weight", "a.bias"]


def test_train_eval_and_zero_grad(rng):
    m = Block()
    assert all(mod.training for mod in m.modules())
    m.eval()
    assert not any(mod.training for mod in m.modules())
    m.train()
    x = pf.tensor(rng.standard_normal((2, 3, 5, 5)).astype(np.float32))
    m(x).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(not p.grad.data.any() for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    drop = nn.Dropout(0.5).eval()
    assert drop(x) is x


def test_to_dtype_keeps_parameter_objects(rng):
    m = Block()
    params = list(m.parameters())
    assert m.double() is m
    assert all(a is b for a, b in zip(params, m.parameters()))
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert m.bn.num_batches_tracked.dtype == np.int64  # integer buffers keep their dtype
    out = m(pf.tensor(rng.standard_normal((2, 3, 5, 5))))
    assert out.dtype == np.float64
    m.to("cpu", dtype="float32")
    assert all(p.dtype == np.float32 for p in m.parameters())
    with pytest.raises(ValueError, match="unknown device"):
        m.to("tpu")


def test_state_dict_round_trip_and_errors(rng):
    pf.manual_seed(1)
    a = Block()
    pf.manual_seed(2)
    b = Block()
    x = pf.tensor(rng.standard_normal((2, 3, 5, 5)).astype(np.float32))
    a.train()(x)  # moves the running statistics
    a.eval()
    b.eval()
    assert not np.allclose(a(x).data, b(x).data)
    result = b.load_state_dict({k: v.numpy() for k, v in a.state_dict().items()})
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(a(x).data, b(x).data)
    assert b.bn.num_batches_tracked.item() == 1
    sd = a.state_dict()
    sd["extra.weight"] = sd.pop("conv.bias")
    with pytest.raises(ValueError, match=r'Unexpected key\(s\) in state_dict: "extra.weight"'):
        b.load_state_dict(sd)
    with pytest.raises(ValueError, match=r'Missing key\(s\) in state_dict: "conv.bias"'):
        b.load_state_dict(sd)
    missing, unexpected = b.load_state_dict(sd, strict=False)
    assert missing == ["conv.bias"] and unexpected == ["extra.weight"]
    sd = a.state_dict()
    sd["head.1.weight"] = pf.tensor(np.zeros((6, 99), np.float32))
    with pytest.raises(ValueError, match=r"size mismatch for head.1.weight: copying a param with shape \(6, 99\) "
                                         r"from checkpoint, the shape in current model is \(6, 100\)"):
        b.load_state_dict(sd, strict=False)


def test_state_dict_shares_memory():
    m = nn.Linear(2, 3)
    sd = m.state_dict()
    sd["weight"].data[...] = 7
    assert (m.weight.data == 7).all()
    assert not sd["weight"].requires_grad


# ---- initialisation ---------------------------------------------------------------------------


def test_manual_seed_makes_init_deterministic():
    pf.manual_seed(123)
    a = nn.Sequential(nn.Linear(5, 4), nn.Conv2d(2, 3, 3), nn.Embedding(7, 3), nn.MultiheadAttention(4, 2))
    pf.manual_seed(123)
    b = nn.Sequential(nn.Linear(5, 4), nn.Conv2d(2, 3, 3), nn.Embedding(7, 3), nn.MultiheadAttention(4, 2))
    pf.manual_seed(124)
    c = nn.Linear(5, 4)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=n)
    assert not np.array_equal(a[0].weight.data, c.weight.data)
    assert pf.random.initial_seed() == 124


def test_default_init_ranges():
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    for p in (lin.weight, lin.bias):
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.95 * bound
    conv = nn.Conv2d(8, 16, 3)
    assert np.abs(conv.weight.data).max() <= 1 / math.sqrt(8 * 9)
    convt = nn.ConvTranspose2d(8, 6, 2, groups=2)  # fan_in from weight (8, 3, 2, 2): 3 * 4
    assert convt.weight.shape == (8, 3, 2, 2) and np.abs(convt.weight.data).max() <= 1 / math.sqrt(12)
    emb = nn.Embedding(1000, 50, padding_idx=2)
    assert abs(emb.weight.data.std() - 1) < 0.02 and not emb.weight.data[2].any()
    bn = nn.BatchNorm2d(5)
    assert (bn.weight.data == 1).all() and not bn.bias.data.any() and (bn.running_var.data == 1).all()
    mha = nn.MultiheadAttention(16, 4)
    a = math.sqrt(6 / (16 + 48))
    assert np.abs(mha.in_proj_weight.data).max() <= a and not mha.in_proj_bias.data.any()
    assert not mha.out_proj.bias.data.any()


@pytest.mark.parametrize("fn,std", [
    (lambda t, g: init.xavier_normal_(t, gain=2.0, generator=g), 2.0 * math.sqrt(2 / (300 + 200))),
    (lambda t, g: init.xavier_uniform_(t, generator=g), math.sqrt(2 / (300 + 200))),
    (lambda t, g: init.kaiming_normal_(t, nonlinearity="relu", generator=g), math.sqrt(2 / 300)),
    (lambda t, g: init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu", generator=g), math.sqrt(2 / 200)),
    (lambda t, g: init.normal_(t, 0.0, 0.3, generator=g), 0.3),
    (lambda t, g: init.uniform_(t, -1.0, 1.0, generator=g), 1 / math.sqrt(3)),
])
def test_init_statistics_and_generator(fn, std):
    t = pf.tensor(np.zeros((200, 300)))
    fn(t, Generator(5))
    assert abs(t.data.std() / std - 1) < 0.02 and abs(t.data.mean()) < 0.02 * std * 10
    again = pf.tensor(np.zeros((200, 300)))
    fn(again, Generator(5))
    np.testing.assert_array_equal(t.data, again.data)
    raw = np.zeros((200, 300))  # raw arrays work too
    fn(raw, Generator(5))
    np.testing.assert_array_equal(raw, t.data)


def test_init_constants_and_errors():
    t = pf.tensor(np.zeros((2, 3)))
    assert (init.ones_(t).data == 1).all() and (init.constant_(t, 0.5).data == 0.5).all()
    assert not init.zeros_(t).data.any()
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(pf.tensor(np.zeros(3)))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(t, mode="fan_avg")
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")


@requires_torch
@pytest.mark.parametrize("args", [("linear",), ("conv2d",), ("sigmoid",), ("tanh",), ("relu",), ("leaky_relu",),
                                  ("leaky_relu", 0.2), ("selu",)])
def test_calculate_gain_matches_torch(args):
    assert init.calculate_gain(*args) == torch.nn.init.calculate_gain(*args)


# ---- layers against torch ---------------------------------------------------------------------

LAYERS = {  # name: (constructor taking the nn namespace, input shape)
    "Linear": (lambda m: m.Linear(6, 5), (4, 6)),
    "Linear3d": (lambda m: m.Linear(6, 5, bias=False), (2, 3, 6)),
    "Conv1d": (lambda m: m.Conv1d(4, 6, 3, stride=2, padding=1), (2, 4, 9)),
    "Conv2d": (lambda m: m.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2), (2, 4, 7, 6)),
    "Conv2d_same": (lambda m: m.Conv2d(3, 5, (3, 5), padding="same", dilation=(2, 1), bias=False), (1, 3, 6, 7)),
    "ConvTranspose2d": (lambda m: m.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1), (2, 4, 5, 4)),
    "MaxPool2d": (lambda m: m.MaxPool2d(3, stride=2, padding=1), (2, 3, 7, 6)),
    "MaxPool2d_ceil": (lambda m: m.MaxPool2d(2, ceil_mode=True), (2, 3, 7, 5)),
    "AvgPool2d": (lambda m: m.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 3, 7, 6)),
    "AdaptiveAvgPool2d": (lambda m: m.AdaptiveAvgPool2d((3, 2)), (2, 3, 7, 5)),
    "Flatten": (lambda m: m.Flatten(), (2, 3, 4)),
    "BatchNorm1d": (lambda m: m.BatchNorm1d(5), (6, 5)),
    "BatchNorm1d_3d": (lambda m: m.BatchNorm1d(5, momentum=None), (3, 5, 4)),
    "BatchNorm2d": (lambda m: m.BatchNorm2d(3, eps=1e-3, momentum=0.3), (4, 3, 5, 2)),
    "BatchNorm2d_untracked": (lambda m: m.BatchNorm2d(3, affine=False, track_running_stats=False), (4, 3, 2, 2)),
    "LayerNorm": (lambda m: m.LayerNorm((4, 5)), (3, 4, 5)),
    "ReLU": (lambda m: m.ReLU(), (3, 4)),
    "LeakyReLU": (lambda m: m.LeakyReLU(0.1), (3, 4)),
    "Sigmoid": (lambda m: m.Sigmoid(), (3, 4)),
    "Tanh": (lambda m: m.Tanh(), (3, 4)),
    "GELU": (lambda m: m.GELU(), (3, 4)),
    "GLU": (lambda m: m.GLU(), (3, 4)),
    "Softmax": (lambda m: m.Softmax(dim=1), (3, 4)),
    "LogSoftmax": (lambda m: m.LogSoftmax(dim=1), (3, 4)),
}


def _copy_from_torch(ours, theirs):
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def _compare_step(ours, theirs, x, rng, tol=1e-5):
    """One forward and backward of both on the same input; outputs, input and parameter grads agree."""
    xt, tx = pf.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = ours(xt), theirs(tx)
    assert y.shape == tuple(ty.shape) and rel_err(y.data, ty.detach().numpy()) < tol
    g = rng.standard_normal(y.shape).astype(x.dtype)
    y.backward(pf.tensor(g))
    ty.backward(torch.tensor(g))
    assert rel_err(xt.grad.data, tx.grad.numpy()) < tol
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert rel_err(p.grad.data, tparams[name].grad.numpy()) < tol, name


@requires_torch
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_matches_torch(name, rng):
    make, shape = LAYERS[name]
    ours, theirs = make(nn), make(torch.nn)
    assert repr(ours) == repr(theirs)
    sd, tsd = ours.state_dict(), theirs.state_dict()
    assert list(sd) == list(tsd)
    assert [v.shape for v in sd.values()] == [tuple(v.shape) for v in tsd.values()]
    assert [str(v.dtype) for v in sd.values()] == [str(v.dtype).replace("torch.", "") for v in tsd.values()]
    _copy_from_torch(ours, theirs)
    for _ in range(2):  # two training steps: running statistics move
        x = rng.standard_normal(shape).astype(np.float32)
        _compare_step(ours, theirs, x, rng)
        theirs.zero_grad()
        ours.zero_grad()
    for k, v in theirs.state_dict().items():
        assert rel_err(ours.state_dict()[k].data, v.numpy()) < 1e-6, k
    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    _compare_step(ours, theirs, x, rng)


GRADCHECK_LAYERS = ["Linear3d", "Conv1d", "Conv2d", "ConvTranspose2d", "BatchNorm1d_3d", "BatchNorm2d", "LayerNorm",
                    "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "GLU"]


@pytest.mark.parametrize("name", GRADCHECK_LAYERS)
def test_layer_gradcheck(name, rng):
    make, shape = LAYERS[name]
    m = make(nn).double()
    x = pf.tensor(rng.standard_normal(shape), requires_grad=True)
    params = [p for _, p in m.named_parameters()]

    def fn(x, *ps):
        return m(x)

    assert gradcheck(fn, (x, *params))


def test_batch_norm_modes(rng):
    bn = nn.BatchNorm1d(3, momentum=None)
    xs = [rng.standard_normal((8, 3)) * (i + 1) for i in range(3)]
    for x in xs:
        bn(pf.tensor(x.astype(np.float32)))
    # momentum=None: the running mean is the plain average of the batch means
    assert rel_err(bn.running_mean.data, np.mean([x.mean(0) for x in xs], axis=0)) < 1e-6
    assert bn.num_batches_tracked.item() == 3
    bn.eval()
    before = bn.running_mean.data.copy()
    y = bn(pf.tensor(xs[0].astype(np.float32)))
    np.testing.assert_array_equal(before, bn.running_mean.data)
    expected = (xs[0] - bn.running_mean.data) / np.sqrt(bn.running_var.data + 1e-5)
    assert rel_err(y.data, expected) < 1e-6
    with pytest.raises(ValueError, match=r"expected 4D input \(got 2D input"):
        nn.BatchNorm2d(3)(pf.tensor(xs[0]))


@pytest.mark.parametrize("layer,x_shape", [(nn.BatchNorm1d, (6, 4)), (nn.BatchNorm2d, (2, 3, 4, 4))])
def test_batch_norm_module_errors_name_the_module(layer, x_shape):
    """A module built for other channels or another dtype than its input: the error names the module
    and the argument (not the functional batch_norm's running_mean)."""
    name, x = layer.__name__, pf.tensor(np.ones(x_shape, np.float32))
    for wrong in (0, x_shape[1] + 1):
        with pytest.raises(ValueError, match=rf"^{name}: input has {x_shape[1]} channels .* num_features is {wrong}$"):
            layer(wrong)(x)
    for dtype in ("float16", "float64"):
        with pytest.raises(TypeError, match=rf"^{name}: input is float32 but the module's dtype is {dtype}"):
            layer(x_shape[1], dtype=dtype)(x)
    with pytest.raises(TypeError, match=rf"^{name}: input is float32 but the module's dtype is float64"):
        layer(x_shape[1], dtype="float64", affine=False)(x)  # the running statistics hold the dtype


def test_embedding_module(rng):
    emb = nn.Embedding(10, 3, padding_idx=-1)
    assert emb.padding_idx == 9 and not emb.weight.data[9].any()
    idx = pf.tensor(np.array([[9, 1], [1, 2]]))
    emb(idx).sum().backward()
    assert not emb.weight.grad.data[9].any() and (emb.weight.grad.data[1] == 2).all()
    if HAVE_TORCH:
        t = torch.nn.Embedding(10, 3, padding_idx=-1)
        assert repr(emb) == repr(t)
        _copy_from_torch(emb, t)
        np.testing.assert_array_equal(emb(idx).data, t(torch.tensor(idx.data)).detach().numpy())


@requires_torch
@pytest.mark.parametrize("make", [
    lambda m: m.Sequential(m.Conv2d(3, 16, 3, padding=1), m.BatchNorm2d(16), m.ReLU(), m.MaxPool2d(2),
                           m.Dropout(0.25), m.Flatten(), m.Linear(64, 10), m.LogSoftmax(dim=1)),
    lambda m: m.Sequential(m.ConvTranspose2d(4, 2, 2, stride=2), m.AvgPool2d(2), m.AdaptiveAvgPool2d((1, 1)),
                           m.Conv1d(2, 3, 5, bias=False, groups=1), m.LeakyReLU(), m.GELU(), m.Tanh(), m.Sigmoid()),
    lambda m: m.ModuleList([m.Embedding(10, 4, padding_idx=0), m.LayerNorm(8), m.GLU(), m.Softmax(dim=-1),
                            m.Identity()]),
])
def test_repr_matches_torch(make):
    assert repr(make(nn)) == repr(make(torch.nn))


# ---- multi-head attention ---------------------------------------------------------------------


def _mha_inputs(rng, batch_first, n=2, lq=3, ls=4, e=8, dtype=np.float32):
    def shape(length):
        return (n, length, e) if batch_first else (length, n, e)

    return tuple(rng.standard_normal(shape(s)).astype(dtype) for s in (lq, ls, ls))


MHA_CASES = [
    dict(batch_first=False),
    dict(batch_first=True, key_padding_mask=True),
    dict(batch_first=True, attn_mask="bool"),
    dict(batch_first=False, attn_mask="float", key_padding_mask=True, average_attn_weights=False),
    dict(batch_first=False, self_attention=True, attn_mask="3d"),
    dict(batch_first=True, bias=False),
    dict(batch_first=True, need_weights=False),  # the fused scaled_dot_product_attention path
    dict(batch_first=False, need_weights=False, attn_mask="bool", key_padding_mask=True),
    dict(batch_first=True, need_weights=False, self_attention=True, attn_mask="3d"),
]


def _mha_masks(rng, case, n=2, h=2, lq=3, ls=4):
    kw = {}
    if case.get("key_padding_mask"):
        kpm = np.zeros((n, ls), bool)
        kpm[0, -1] = kpm[1, 0] = True
        kw["key_padding_mask"] = kpm
    if case.get("attn_mask") == "bool":
        am = np.zeros((lq, ls), bool)
        am[0, 1] = True
        kw["attn_mask"] = am
    elif case.get("attn_mask") == "float":
        kw["attn_mask"] = rng.standard_normal((lq, ls)).astype(np.float32)
    elif case.get("attn_mask") == "3d":
        kw["attn_mask"] = rng.standard_normal((n * h, lq, lq)).astype(np.float32)
    for key in ("average_attn_weights", "need_weights"):
        if key in case:
            kw[key] = case[key]
    return kw


@requires_torch
@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
@pytest.mark.parametrize("case", MHA_CASES, ids=[str(i) for i in range(len(MHA_CASES))])
def test_multihead_attention_matches_torch(case, rng):
    bf = case["batch_first"]
    ours = nn.MultiheadAttention(8, 2, bias=case.get("bias", True), batch_first=bf)
    theirs = torch.nn.MultiheadAttention(8, 2, bias=case.get("bias", True), batch_first=bf)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, tuple(p.shape)) for n, p in
                                                                  theirs.named_parameters()]
    _copy_from_torch(ours, theirs)
    q, k, v = _mha_inputs(rng, bf)
    if case.get("self_attention"):
        k = v = q
    kw = _mha_masks(rng, case)
    qt, kt, vt = (pf.tensor(a, requires_grad=True) for a in (q, k, v))
    if case.get("self_attention"):
        kt = vt = qt
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    if case.get("self_attention"):
        tk = tv = tq
    out, w = ours(qt, kt, vt, **{a: pf.tensor(b) if isinstance(b, np.ndarray) else b for a, b in kw.items()})
    tout, tw = theirs(tq, tk, tv, **{a: torch.tensor(b) if isinstance(b, np.ndarray) else b for a, b in kw.items()})
    assert rel_err(out.data, tout.detach().numpy()) < 1e-5
    g = pf.tensor(rng.standard_normal(out.shape).astype(np.float32))
    loss, tloss = (out * g).sum(), (tout * torch.tensor(g.data)).sum()
    if case.get("need_weights", True):
        assert rel_err(w.data, tw.detach().numpy()) < 1e-5
        loss, tloss = loss + w.sum(), tloss + tw.sum()
    else:
        assert w is None and tw is None
    loss.backward()
    tloss.backward()
    assert rel_err(qt.grad.data, tq.grad.numpy()) < 1e-5
    if not case.get("self_attention"):
        assert rel_err(kt.grad.data, tk.grad.numpy()) < 1e-5 and rel_err(vt.grad.data, tv.grad.numpy()) < 1e-5
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert rel_err(p.grad.data, tparams[name].grad.numpy()) < 1e-5, name


@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_gradcheck(need_weights, rng):
    m = nn.MultiheadAttention(4, 2, batch_first=True).double()
    q, k, v = _mha_inputs(rng, True, n=2, lq=2, ls=3, e=4, dtype=np.float64)
    kpm = pf.tensor(np.array([[False, False, True], [False, False, False]]))
    inputs = [pf.tensor(a, requires_grad=True) for a in (q, k, v)] + [p for p in m.parameters()]

    def fn(q, k, v, *params):
        out, w = m(q, k, v, key_padding_mask=kpm, need_weights=need_weights)
        return out if w is None else (out, w)

    assert gradcheck(fn, inputs)


def test_multihead_attention_errors(rng):
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nn.MultiheadAttention(6, 4)
    with pytest.raises(NotImplementedError, match="kdim"):
        nn.MultiheadAttention(8, 2, kdim=4)
    m = nn.MultiheadAttention(8, 2)
    q = pf.tensor(rng.standard_normal((3, 2, 8)).astype(np.float32))
    with pytest.raises(ValueError, match="attn_mask has shape"):
        m(q, q, q, attn_mask=pf.tensor(np.zeros((2, 2), bool)))
    with pytest.raises(ValueError, match="key_padding_mask has shape"):
        m(q, q, q, key_padding_mask=pf.tensor(np.zeros((3, 3), bool)))


def test_multihead_attention_unbatched_and_causal(rng):
    m = nn.MultiheadAttention(8, 2)
    x = pf.tensor(rng.standard_normal((5, 8)).astype(np.float32))
    out, w = m(x, x, x, is_causal=True, attn_mask=pf.tensor(np.triu(np.ones((5, 5), bool), 1)))
    assert out.shape == (5, 8) and w.shape == (5, 5)
    assert not np.triu(w.data, 1).any()  # nothing attends to the future
    out_b, _ = m(x.unsqueeze(1), x.unsqueeze(1), x.unsqueeze(1), attn_mask=pf.tensor(np.triu(np.ones((5, 5), bool), 1)))
    assert rel_err(out_b.data[:, 0], out.data) < 1e-6
    out_fused, none = m(x, x, x, is_causal=True, need_weights=False)  # causal kernel, no mask array
    assert none is None and rel_err(out_fused.data, out.data) < 1e-5


@pytest.mark.gpu
def test_gpu_module_matches_cpu(rng):
    pf.manual_seed(4)
    cpu = Block()
    pf.manual_seed(4)
    gpu = Block().to("cuda")
    assert all(p.device == "cuda" for p in gpu.parameters()) and gpu.bn.running_mean.device == "cuda"
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    y, yg = cpu(pf.tensor(x)), gpu(pf.tensor(x, device="cuda"))
    assert rel_err(yg.data.get(), y.data) < 1e-4
    y.sum().backward()
    yg.sum().backward()
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        assert rel_err(q.grad.data.get(), p.grad.data) < 1e-4, name
    assert rel_err(gpu.bn.running_var.data.get(), cpu.bn.running_var.data) < 1e-5
    gpu.load_state_dict({k: v.numpy() for k, v in cpu.state_dict().items()})  # host arrays onto the GPU
    assert gpu.conv.weight.device == "cuda"
    mha = nn.MultiheadAttention(8, 2, batch_first=True).to("cuda")
    q = pf.tensor(rng.standard_normal((2, 3, 8)).astype(np.float32), device="cuda")
    out, w = mha(q, q, q, key_padding_mask=pf.tensor(np.array([[0, 0, 1], [0, 0, 0]], bool), device="cuda"))
    assert out.device == "cuda" and w.shape == (2, 3, 3)
    pf.manual_seed(5)
    lstm = nn.LSTM(4, 3, num_layers=2, bidirectional=True)
    pf.manual_seed(5)
    lstm_gpu = nn.LSTM(4, 3, num_layers=2, bidirectional=True).to("cuda")
    xs = rng.standard_normal((5, 2, 4)).astype(np.float32)
    out, (h, _) = lstm(pf.tensor(xs))
    out_gpu, (h_gpu, _) = lstm_gpu(pf.tensor(xs, device="cuda"))
    assert rel_err(out_gpu.data.get(), out.data) < 1e-4 and rel_err(h_gpu.data.get(), h.data) < 1e-4


# ---- LSTM -------------------------------------------------------------------------------------

LSTM_CASES = [
    dict(kwargs=dict(), shape=(5, 3, 4)),
    dict(kwargs=dict(num_layers=2, bidirectional=True, batch_first=True), shape=(3, 5, 4), hx=True),
    dict(kwargs=dict(num_layers=2, bias=False), shape=(4, 2, 4)),
    dict(kwargs=dict(bidirectional=True), shape=(6, 4), hx=True),  # unbatched
]


def _lstm_hx(rng, case, m, dtype=np.float32):
    if not case.get("hx"):
        return None, None
    d = 2 if m.bidirectional else 1
    batch = () if len(case["shape"]) == 2 else (case["shape"][0 if m.batch_first else 1],)
    arrays = [rng.standard_normal((m.num_layers * d,) + batch + (m.hidden_size,)).astype(dtype) for _ in range(2)]
    return tuple(pf.tensor(a, requires_grad=True) for a in arrays), tuple(torch.tensor(a, requires_grad=True)
                                                                          for a in arrays)


@requires_torch
@pytest.mark.parametrize("case", LSTM_CASES, ids=[str(i) for i in range(len(LSTM_CASES))])
def test_lstm_matches_torch(case, rng):
    ours, theirs = nn.LSTM(4, 3, **case["kwargs"]), torch.nn.LSTM(4, 3, **case["kwargs"])
    assert repr(ours) == repr(theirs)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, tuple(p.shape)) for n, p in
                                                                  theirs.named_parameters()]
    bound = 1 / math.sqrt(3)
    assert all(np.abs(p.data).max() <= bound for p in ours.parameters())
    _copy_from_torch(ours, theirs)
    x = rng.standard_normal(case["shape"]).astype(np.float32)
    hx, thx = _lstm_hx(rng, case, ours)
    xt, tx = pf.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, (h, c) = ours(xt, hx)
    tout, (th, tc) = theirs(tx, thx)
    gs = [rng.standard_normal(a.shape).astype(np.float32) for a in (out, h, c)]
    for a, t in ((out, tout), (h, th), (c, tc)):
        assert a.shape == tuple(t.shape) and rel_err(a.data, t.detach().numpy()) < 1e-5
    sum((a * pf.tensor(g)).sum() for a, g in zip((out, h, c), gs)).backward()
    sum((t * torch.tensor(g)).sum() for t, g in zip((tout, th, tc), gs)).backward()
    assert rel_err(xt.grad.data, tx.grad.numpy()) < 1e-5
    if hx is not None:
        for a, t in zip(hx, thx):
            assert rel_err(a.grad.data, t.grad.numpy()) < 1e-5
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert rel_err(p.grad.data, tparams[name].grad.numpy()) < 1e-5, name


@requires_torch
def test_lstm_lengths_match_packed_sequence(rng):
    ours, theirs = nn.LSTM(4, 3, bidirectional=True), torch.nn.LSTM(4, 3, bidirectional=True)
    _copy_from_torch(ours, theirs)
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    lengths = [6, 2, 4]
    out, (h, c) = ours(pf.tensor(x), lengths=lengths)
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), lengths, enforce_sorted=False)
    tpacked, (th, tc) = theirs(packed)
    tout, _ = torch.nn.utils.rnn.pad_packed_sequence(tpacked, total_length=6)
    for a, t in ((out, tout), (h, th), (c, tc)):
        assert rel_err(a.data, t.detach().numpy()) < 1e-5


@requires_torch
@pytest.mark.parametrize("bias,unbatched", [(True, False), (False, True)])
def test_lstm_cell_matches_torch(bias, unbatched, rng):
    ours, theirs = nn.LSTMCell(4, 3, bias=bias), torch.nn.LSTMCell(4, 3, bias=bias)
    assert repr(ours) == repr(theirs) and list(ours.state_dict()) == list(theirs.state_dict())
    _copy_from_torch(ours, theirs)
    batch = () if unbatched else (2,)
    x, h0, c0 = (rng.standard_normal(batch + (n,)).astype(np.float32) for n in (4, 3, 3))
    ins = [pf.tensor(a, requires_grad=True) for a in (x, h0, c0)]
    tins = [torch.tensor(a, requires_grad=True) for a in (x, h0, c0)]
    h, c = ours(ins[0], (ins[1], ins[2]))
    th, tc = theirs(tins[0], (tins[1], tins[2]))
    assert rel_err(h.data, th.detach().numpy()) < 1e-5 and rel_err(c.data, tc.detach().numpy()) < 1e-5
    g = rng.standard_normal(h.shape).astype(np.float32)
    ((h * pf.tensor(g)).sum() + c.sum()).backward()
    ((th * torch.tensor(g)).sum() + tc.sum()).backward()
    for a, t in zip(ins, tins):
        assert rel_err(a.grad.data, t.grad.numpy()) < 1e-5
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert rel_err(p.grad.data, tparams[name].grad.numpy()) < 1e-5, name
    h_zero, _ = ours(ins[0])  # no state: zeros
    assert rel_err(h_zero.data, theirs(tins[0])[0].detach().numpy()) < 1e-5


def test_lstm_gradcheck(rng):
    """Autograd through the modules (the wiring is checked against torch above; the kernels' own
    gradchecks live with the LSTM family), on a few parameters to stay fast."""
    m = nn.LSTM(3, 2, bidirectional=True, batch_first=True).double()
    cell = nn.LSTMCell(3, 2).double()
    x = pf.tensor(rng.standard_normal((2, 3, 3)), requires_grad=True)

    def fn(x, *ps):
        out, (h, c) = m(x)
        return out, h, c

    assert gradcheck(fn, (x, m.weight_ih_l0_reverse, m.bias_hh_l0))
    x1 = pf.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    assert gradcheck(lambda x, *ps: cell(x), (x1, cell.weight_hh, cell.bias_ih))


def test_lstm_training_dropout_and_errors(rng):
    m = nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    x = pf.tensor(rng.standard_normal((5, 2, 3)).astype(np.float32))
    m.eval()
    a, _ = m(x)
    b, _ = m(x)
    np.testing.assert_array_equal(a.data, b.data)  # no dropout in eval
    with pytest.raises(ValueError, match="dropout"):
        nn.LSTM(3, 4, dropout=1.0)
    with pytest.raises(NotImplementedError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="hx"):
        m(x, (pf.tensor(np.zeros((1, 2, 4), np.float32)), pf.tensor(np.zeros((1, 2, 4), np.float32))))
