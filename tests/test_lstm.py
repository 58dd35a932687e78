"""LSTM family: the fused cell and the whole-sequence layer, CPU (float32/float64) and CUDA (float32).

Checked against the float64 numpy reference (tests/reference/lstm.py: PyTorch's equations, one
sequence and one step at a time), by gradcheck, against torch.nn.LSTM / LSTMCell (packed sequences
for variable lengths), and on the GPU against the CPU with NaN-poisoned outputs."""

import numpy as np
import pytest
from conftest import HAVE_TORCH, requires_torch
from reference import lstm as ref

import pyfastdl
from pyfastdl import backend
from pyfastdl._core import _C
from pyfastdl.kernels import lstm as K
from pyfastdl.nn import functional as F
from pyfastdl.testing import gradcheck

if HAVE_TORCH:
    import torch

TOL = {np.float64: 1e-10, np.float32: 1e-5}
CUDA_TOL = 1e-4


def rel_err(out, want):
    out = backend.to_device(out, "cpu") if not isinstance(out, np.ndarray) else out
    assert np.isfinite(out).all(), "output has NaN/inf (unwritten or overflowed elements)"
    return float(np.linalg.norm(np.asarray(out, np.float64) - want) / max(np.linalg.norm(want), 1e-300))


def weights(rng, I, H, dtype=np.float64, bias=True):
    s = 1 / np.sqrt(H)
    w = [rng.uniform(-s, s, (4 * H, I)), rng.uniform(-s, s, (4 * H, H))]
    if bias:
        w += [rng.uniform(-s, s, 4 * H), rng.uniform(-s, s, 4 * H)]
    return [a.astype(dtype) for a in w]


def lstm_params(rng, I, H, num_layers, D, dtype=np.float64, bias=True):
    """A flat list in torch.nn.LSTM's order."""
    out = []
    for layer in range(num_layers):
        for _ in range(D):
            out += weights(rng, I if layer == 0 else D * H, H, dtype, bias)
    return out


def tensors(arrays, requires_grad=False):
    return [pyfastdl.tensor(a, requires_grad=requires_grad) for a in arrays]


# ---- cell -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["fast", "reference"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B,I,H", [(1, 1, 1), (3, 5, 4), (7, 13, 9), (64, 32, 33)])
def test_cell_matches_reference(rng, dtype, B, I, H, variant):
    x, h, c = rng.standard_normal((B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w = weights(rng, I, H)
    want_h, want_c = ref.lstm_cell(x, h, c, *w)
    hy, cy, _ = K.lstm_cell_forward(*(a.astype(dtype) for a in (x, h, c, *w)), variant=variant)
    assert rel_err(hy, want_h) < TOL[dtype]
    assert rel_err(cy, want_c) < TOL[dtype]


@pytest.mark.parametrize("bias", [True, False])
def test_cell_gradcheck(rng, bias):
    B, I, H = 3, 4, 3
    args = tensors([rng.standard_normal((B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H)),
                    *weights(rng, I, H, bias=bias)], requires_grad=True)
    x, h, c, *w = args
    assert gradcheck(lambda x, h, c, *w: F.lstm_cell(x, (h, c), *w), (x, h, c, *w))


def test_cell_unbatched_and_no_state(rng):
    I, H = 5, 3
    w = weights(rng, I, H)
    x = rng.standard_normal(I)
    hy, cy = F.lstm_cell(pyfastdl.tensor(x), None, *tensors(w))
    want_h, want_c = ref.lstm_cell(x[None], np.zeros((1, H)), np.zeros((1, H)), *w)
    assert hy.shape == (H,) and cy.shape == (H,)
    assert rel_err(hy.numpy(), want_h[0]) < 1e-10 and rel_err(cy.numpy(), want_c[0]) < 1e-10


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cell_matches_torch(rng, dtype):
    B, I, H = 5, 7, 6
    cell = torch.nn.LSTMCell(I, H).to(torch.float64 if dtype == np.float64 else torch.float32)
    x, h, c = (rng.standard_normal(s).astype(dtype) for s in ((B, I), (B, H), (B, H)))
    params = tensors([p.detach().numpy().copy() for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih,
                                                          cell.bias_hh)], requires_grad=True)
    X, Hx, Cx = tensors([x, h, c], requires_grad=True)
    hy, cy = F.lstm_cell(X, (Hx, Cx), *params)
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    thy, tcy = cell(tx, (th, tc))
    gh, gc = rng.standard_normal((B, H)).astype(dtype), rng.standard_normal((B, H)).astype(dtype)
    ((hy * pyfastdl.tensor(gh)).sum() + (cy * pyfastdl.tensor(gc)).sum()).backward()
    ((thy * torch.tensor(gh)).sum() + (tcy * torch.tensor(gc)).sum()).backward()
    tol = TOL[dtype]
    assert rel_err(hy.detach().numpy(), thy.detach().double().numpy()) < tol
    assert rel_err(cy.detach().numpy(), tcy.detach().double().numpy()) < tol
    for ours, theirs in zip([X, Hx, Cx, *params], [tx, th, tc, cell.weight_ih, cell.weight_hh, cell.bias_ih,
                                                    cell.bias_hh]):
        assert rel_err(ours.grad.numpy(), theirs.grad.double().numpy()) < 10 * tol


# ---- one layer, whole sequence --------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["fast", "reference"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
# (6, 4, 10, 65): large enough for the CPU kernels to split the units over threads (uneven slices)
@pytest.mark.parametrize("T,B,I,H", [(1, 1, 1, 1), (5, 3, 4, 6), (9, 7, 3, 11), (200, 2, 3, 5), (6, 4, 10, 65)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_layer_matches_reference(rng, dtype, T, B, I, H, reverse, with_lengths, variant):
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w = weights(rng, I, H)
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    if with_lengths:
        lengths[0] = T  # the longest sequence fills the input
    want = ref.lstm_layer(x, h0, c0, *w, reverse=reverse, lengths=lengths)
    got = K.lstm_layer_forward(*(a.astype(dtype) for a in (x, h0, c0, *w)), reverse=reverse, lengths=lengths,
                               variant=variant)
    for g, r in zip(got[:3], want):
        assert rel_err(g, r) < TOL[dtype]


@pytest.mark.parametrize("T,B,I,H", [(1, 1, 1, 1), (7, 3, 4, 6), (6, 4, 10, 65)])
@pytest.mark.parametrize("reverse,with_lengths", [(False, False), (True, False), (True, True), (False, True)])
def test_reference_variant_gradients(rng, T, B, I, H, reverse, with_lengths):
    """The reference kernels' backward (cell and layer), float64, against the fast kernels' (which
    gradcheck and torch vouch for); the saved values of their forwards too."""
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w = weights(rng, I, H)
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    g = [rng.standard_normal(s) for s in ((T, B, H), (B, H), (B, H))]
    runs = {}
    for variant in ("fast", "reference"):
        _, _, _, saved = K.lstm_layer_forward(x, h0, c0, *w, reverse, lengths, variant=variant)
        grads = K.lstm_layer_backward(*g, x, w[0], w[1], saved, reverse, lengths, variant=variant)
        hy, cy, gates = K.lstm_cell_forward(x[0], h0, c0, *w, variant=variant)
        cell = K.lstm_cell_backward(g[1], g[2], gates, x[0], h0, c0, w[0], w[1], variant=variant)
        runs[variant] = (*saved, *grads, gates, *cell)
    for got, want in zip(runs["reference"], runs["fast"]):
        assert rel_err(got, want) < 1e-10


@pytest.mark.parametrize("reverse", [False, True])
def test_layer_padded_positions_are_never_read(rng, reverse):
    """The fast kernels skip the padded positions (as packed sequences do): NaN there in the input,
    the output gradient and the saved values changes nothing, and their input gradient is zero."""
    T, B, I, H = 6, 9, 5, 19
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w = weights(rng, I, H)
    g = [rng.standard_normal(s) for s in ((T, B, H), (B, H), (B, H))]
    lengths = np.array([3, 6, 1, 6, 2, 5, 3, 1, 4])
    padded = np.arange(T)[:, None] >= lengths[None, :]  # (T, B)
    out, hn, cn, saved = K.lstm_layer_forward(x, h0, c0, *w, reverse, lengths)
    grads = K.lstm_layer_backward(*g, x, w[0], w[1], saved, reverse, lengths)
    x_nan, g_nan = x.copy(), [a.copy() for a in g]
    x_nan[padded], g_nan[0][padded] = np.nan, np.nan
    out1, hn1, cn1, saved1 = K.lstm_layer_forward(x_nan, h0, c0, *w, reverse, lengths)
    for a in saved1:
        a[padded] = np.nan
    grads1 = K.lstm_layer_backward(*g_nan, x_nan, w[0], w[1], saved1, reverse, lengths)
    for got, want in zip((out1, hn1, cn1, *grads1), (out, hn, cn, *grads)):
        np.testing.assert_array_equal(got, want)
    assert not np.any(grads1[0][padded]) and not np.any(out1[padded])


def test_layer_backward_same_after_other_sizes():
    """The backward's scratch memory is kept between calls: a call after larger and smaller ones,
    with and without lengths, gives the same gradients as the first."""
    def grads(T, B, I, H, lengths):
        r = np.random.default_rng(T * 1000 + B)
        x, h0, c0 = r.standard_normal((T, B, I)), r.standard_normal((B, H)), r.standard_normal((B, H))
        w = weights(r, I, H)
        g = [r.standard_normal(s) for s in ((T, B, H), (B, H), (B, H))]
        saved = K.lstm_layer_forward(x, h0, c0, *w, False, lengths)[3]
        return K.lstm_layer_backward(*g, x, w[0], w[1], saved, False, lengths)

    first = grads(5, 4, 3, 7, [5, 2, 4, 1])
    grads(9, 6, 8, 11, None)
    grads(2, 3, 2, 5, [1, 2, 1])
    for got, want in zip(grads(5, 4, 3, 7, [5, 2, 4, 1]), first):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("threads", [1, 3])
def test_layer_any_thread_count(rng, threads):
    """Forward and backward are the same whatever the number of unit slices (threads)."""
    T, B, I, H = 5, 4, 6, 67
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w = weights(rng, I, H)
    g = [rng.standard_normal(s) for s in ((T, B, H), (B, H), (B, H))]
    lengths = [5, 2, 4, 1]
    before = pyfastdl.get_num_threads()
    try:
        pyfastdl.set_num_threads(threads)
        out, hn, cn, saved = K.lstm_layer_forward(x, h0, c0, *w, reverse=True, lengths=lengths)
        grads = K.lstm_layer_backward(*g, x, w[0], w[1], saved, reverse=True, lengths=lengths)
    finally:
        pyfastdl.set_num_threads(before)
    out1, hn1, cn1, saved1 = K.lstm_layer_forward(x, h0, c0, *w, reverse=True, lengths=lengths)
    grads1 = K.lstm_layer_backward(*g, x, w[0], w[1], saved1, reverse=True, lengths=lengths)
    want = ref.lstm_layer(x, h0, c0, *w, reverse=True, lengths=lengths)
    for got, r in zip((out, hn, cn), want):
        assert rel_err(got, r) < 1e-10
    for got, r in zip(grads, grads1):
        assert rel_err(got, r) < 1e-12


# ---- the copies compiled per instruction set, over every tile shape ----------------------------------

ISAS = _C.cpu.available_isas()  # those built and supported here, narrowest first


@pytest.fixture(params=ISAS)
def isa(request):
    _C.cpu.set_isa(request.param)
    yield request.param
    _C.cpu.set_isa(_C.cpu.best_isa())


def directional_check(loss, params, grads, rng, eps=1e-6):
    """<grad, v> against the central difference of loss along a random v, for each parameter."""
    for i, (p, g) in enumerate(zip(params, grads)):
        v = rng.standard_normal(p.shape)
        plus, minus = list(params), list(params)
        plus[i], minus[i] = p + eps * v, p - eps * v
        want = (loss(plus) - loss(minus)) / (2 * eps)
        assert abs(float(np.sum(g * v)) - want) <= 1e-6 * max(1.0, abs(want)), f"parameter {i}"


# Batch sizes giving every tile (1 to 4 vectors of batch columns, then two column groups), with an
# odd hidden size so that the weight rows end in a partial tile.
@pytest.mark.parametrize("B", [1, 17, 40, 64, 70])
def test_layer_every_isa_and_tile(rng, isa, B):
    T, I, H = 3, 5, 61
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w = weights(rng, I, H)
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    g = [rng.standard_normal(s) for s in ((T, B, H), (B, H), (B, H))]
    want = ref.lstm_layer(x, h0, c0, *w, reverse=True, lengths=lengths)
    for dtype in (np.float64, np.float32):
        got = K.lstm_layer_forward(*(a.astype(dtype) for a in (x, h0, c0, *w)), reverse=True, lengths=lengths)
        for o, r in zip(got[:3], want):
            assert rel_err(o, r) < TOL[dtype]
    out, hn, cn, saved = K.lstm_layer_forward(x, h0, c0, *w, reverse=True, lengths=lengths)
    gx, gh0, gc0, gwi, gwh, gb = K.lstm_layer_backward(*g, x, w[0], w[1], saved, reverse=True, lengths=lengths)

    def loss(p):
        o = ref.lstm_layer(*p[:5], p[5], np.zeros(4 * H), reverse=True, lengths=lengths)
        return sum(float(np.sum(a * b)) for a, b in zip(o, g))

    directional_check(loss, [x, h0, c0, w[0], w[1], w[2] + w[3]], [gx, gh0, gc0, gwi, gwh, gb], rng)


@pytest.mark.parametrize("B", [1, 17, 40, 64, 70])
def test_cell_every_isa_and_tile(rng, isa, B):
    I, H = 7, 13
    x, h, c = rng.standard_normal((B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w = weights(rng, I, H)
    ghy, gcy = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    want = ref.lstm_cell(x, h, c, *w)
    for dtype in (np.float64, np.float32):
        hy, cy, _ = K.lstm_cell_forward(*(a.astype(dtype) for a in (x, h, c, *w)))
        assert rel_err(hy, want[0]) < TOL[dtype] and rel_err(cy, want[1]) < TOL[dtype]
    _, _, gates = K.lstm_cell_forward(x, h, c, *w)
    grads = K.lstm_cell_backward(ghy, gcy, gates, x, h, c, w[0], w[1])

    def loss(p):
        hy, cy = ref.lstm_cell(*p[:5], p[5], np.zeros(4 * H))
        return float(np.sum(hy * ghy) + np.sum(cy * gcy))

    directional_check(loss, [x, h, c, w[0], w[1], w[2] + w[3]], grads, rng)


def test_set_isa_refuses_unknown_and_unsupported():
    with pytest.raises(ValueError, match="must be 'base', 'avx2' or 'avx512'"):
        _C.cpu.set_isa("sse9")
    if _C.cpu.best_isa() != "avx512":
        with pytest.raises(ValueError, match="not supported here"):
            _C.cpu.set_isa("avx512")
    assert _C.cpu.get_isa() == _C.cpu.best_isa()


@pytest.mark.parametrize("reverse,with_lengths", [(False, False), (True, True)])
def test_layer_inference_mode_saves_nothing_and_agrees(rng, reverse, with_lengths):
    T, B, I, H = 6, 5, 4, 9
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0, c0 = (rng.standard_normal((B, H)).astype(np.float32) for _ in range(2))
    w = weights(rng, I, H, np.float32)
    lengths = [6, 2, 5, 1, 3] if with_lengths else None
    train = K.lstm_layer_forward(x, h0, c0, *w, reverse=reverse, lengths=lengths)
    infer = K.lstm_layer_forward(x, h0, c0, *w, reverse=reverse, lengths=lengths, save=False)
    assert infer[3] is None
    for a, b in zip(train[:3], infer[:3]):
        np.testing.assert_array_equal(a, b)
    # F.lstm under no_grad, or with nothing requiring grad, runs the inference kernel
    with pyfastdl.no_grad():
        out, _ = F.lstm(pyfastdl.tensor(x), None, tensors(w), num_layers=1)
    np.testing.assert_array_equal(out.numpy(), K.lstm_layer_forward(x, np.zeros_like(h0), np.zeros_like(c0), *w,
                                                                     save=False)[0])


def test_layer_inference_state_arguments_together():
    a = _C.LstmLayerArgs((2, 1, 3), (8, 3), (8, 2), False, None)
    arrays = [np.zeros(s, np.float32) for s in ((2, 1, 3), (1, 2), (1, 2), (8, 3), (8, 2))]
    outs = [np.zeros(s, np.float32) for s in ((2, 1, 2), (1, 2), (1, 2), (2, 1, 8))]
    with pytest.raises(ValueError, match="gates, c_prev and h_prev must all"):
        _C.cpu.lstm_layer_forward(a, *arrays, None, None, *outs, np.zeros((2, 1, 2), np.float32), None)
    with pytest.raises(ValueError, match="gates, c_prev and h_prev must all"):
        _C.cpu.lstm_layer_forward(a, *arrays, None, None, *outs, None, None)


@pytest.mark.parametrize("reverse", [False, True])
def test_layer_backward_matches_finite_differences(rng, reverse):
    """Kernel-level BPTT against central differences of the reference, lengths included."""
    T, B, I, H = 4, 3, 2, 3
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w_ih, w_hh, b_ih, b_hh = weights(rng, I, H)
    lengths = [4, 1, 3]
    go, ghn, gcn = rng.standard_normal((T, B, H)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    _, _, _, saved = K.lstm_layer_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, lengths)
    grads = K.lstm_layer_backward(go, ghn, gcn, x, w_ih, w_hh, saved, reverse, lengths)

    def loss(x, h0, c0, w_ih, w_hh, b_ih):
        out, hn, cn = ref.lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, lengths)
        return (out * go).sum() + (hn * ghn).sum() + (cn * gcn).sum()

    args = [x, h0, c0, w_ih, w_hh, b_ih]
    for k, g in enumerate(grads):
        num = np.zeros_like(args[k])
        for idx in np.ndindex(args[k].shape):
            plus = [a.copy() for a in args]
            minus = [a.copy() for a in args]
            plus[k][idx] += 1e-6
            minus[k][idx] -= 1e-6
            num[idx] = (loss(*plus) - loss(*minus)) / 2e-6
        assert rel_err(g, num) < 1e-7, f"gradient {k}"


# ---- the multi-layer op ---------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers,bidirectional,batch_first,given_state,bias",
                         [(1, False, False, True, True), (2, True, False, False, True), (3, False, True, True, False),
                          (2, True, True, True, True)])
def test_lstm_matches_reference(rng, num_layers, bidirectional, batch_first, given_state, bias):
    T, B, I, H = 6, 4, 5, 3
    D = 2 if bidirectional else 1
    params = lstm_params(rng, I, H, num_layers, D, bias=bias)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    h0, c0 = rng.standard_normal((num_layers * D, B, H)), rng.standard_normal((num_layers * D, B, H))
    hx = tuple(tensors([h0, c0])) if given_state else None
    if not given_state:
        h0, c0 = np.zeros_like(h0), np.zeros_like(c0)
    per = 4 if bias else 2
    ref_params = [tuple(params[k * per:(k + 1) * per]) + (() if bias else (None, None))
                  for k in range(num_layers * D)]
    want = ref.lstm(x, h0, c0, ref_params, num_layers, bidirectional, batch_first)
    out, (hn, cn) = F.lstm(pyfastdl.tensor(x), hx, tensors(params), num_layers, bidirectional, batch_first)
    for g, r in zip((out, hn, cn), want):
        assert rel_err(g.numpy(), r) < 1e-10


def test_lstm_unbatched(rng):
    T, I, H = 5, 3, 4
    params = lstm_params(rng, I, H, 1, 1)
    x = rng.standard_normal((T, I))
    out, (hn, cn) = F.lstm(pyfastdl.tensor(x), None, tensors(params))
    want, want_h, want_c = ref.lstm_layer(x[:, None], np.zeros((1, H)), np.zeros((1, H)), *params)
    assert out.shape == (T, H) and hn.shape == (1, H)
    assert rel_err(out.numpy(), want[:, 0]) < 1e-10 and rel_err(cn.numpy(), want_c) < 1e-10


def test_lstm_lengths_equal_each_sequence_alone(rng):
    """A padded batch with lengths gives, per sequence, what that sequence gives run alone."""
    T, B, I, H, L = 7, 4, 3, 5, 2
    params = tensors(lstm_params(rng, I, H, L, 2))
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((2 * L, B, H)), rng.standard_normal((2 * L, B, H))
    lengths = [7, 3, 1, 5]
    out, (hn, cn) = F.lstm(pyfastdl.tensor(x), tuple(tensors([h0, c0])), params, L, True, lengths=lengths)
    for b, n in enumerate(lengths):
        o, (h, c) = F.lstm(pyfastdl.tensor(x[:n, b:b + 1].copy()),
                           tuple(tensors([h0[:, b:b + 1].copy(), c0[:, b:b + 1].copy()])), params, L, True)
        assert rel_err(out.numpy()[:n, b], o.numpy()[:, 0]) < 1e-12
        assert np.all(out.numpy()[n:, b] == 0)
        assert rel_err(hn.numpy()[:, b], h.numpy()[:, 0]) < 1e-12
        assert rel_err(cn.numpy()[:, b], c.numpy()[:, 0]) < 1e-12


def test_lstm_gradcheck(rng):
    T, B, I, H, L = 4, 3, 3, 2, 2
    params = tensors(lstm_params(rng, I, H, L, 2), requires_grad=True)
    x, h0, c0 = tensors([rng.standard_normal((B, T, I)), rng.standard_normal((2 * L, B, H)),
                         rng.standard_normal((2 * L, B, H))], requires_grad=True)

    def fn(x, h0, c0, *params):
        out, (hn, cn) = F.lstm(x, (h0, c0), params, L, True, True, lengths=[4, 2, 3])
        return out, hn, cn

    assert gradcheck(fn, (x, h0, c0, *params))


def test_lstm_dropout_between_layers(rng):
    T, B, I, H = 3, 2, 3, 4
    params = tensors(lstm_params(rng, I, H, 2, 1))
    x = pyfastdl.tensor(rng.standard_normal((T, B, I)))
    eval_out, _ = F.lstm(x, None, params, 2, dropout=0.5, training=False)
    want, _ = F.lstm(x, None, params, 2)
    assert rel_err(eval_out.numpy(), want.numpy()) == 0
    pyfastdl.manual_seed(0)
    train_out, _ = F.lstm(x, None, params, 2, dropout=0.5, training=True)
    assert rel_err(train_out.numpy(), want.numpy()) > 1e-3  # the masks changed layer 2's input
    pyfastdl.manual_seed(0)
    again, _ = F.lstm(x, None, params, 2, dropout=0.5, training=True)
    assert rel_err(again.numpy(), train_out.numpy()) == 0  # reproducible per seed


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("H", [7, 65])  # 65: the CPU kernels split the units over threads
def test_lstm_matches_torch_packed(rng, dtype, H):
    T, B, I, L = 8, 5, 6, 2
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    mod = torch.nn.LSTM(I, H, num_layers=L, bidirectional=True, batch_first=True).to(tdt)
    params = tensors([p.detach().numpy().copy() for p in mod._flat_weights], requires_grad=True)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    h0, c0 = (rng.standard_normal((2 * L, B, H)).astype(dtype) for _ in range(2))
    lengths = [8, 3, 1, 8, 5]
    X, H0, C0 = tensors([x, h0, c0], requires_grad=True)
    out, (hn, cn) = F.lstm(X, (H0, C0), params, L, True, True, lengths=lengths)

    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths), batch_first=True,
                                                     enforce_sorted=False)
    tout, (thn, tcn) = mod(packed, (th, tc))
    tout, _ = torch.nn.utils.rnn.pad_packed_sequence(tout, batch_first=True, total_length=T)

    g = [rng.standard_normal(s).astype(dtype) for s in (out.shape, hn.shape, cn.shape)]
    sum((o * pyfastdl.tensor(w)).sum() for o, w in zip((out, hn, cn), g)).backward()
    sum((o * torch.tensor(w)).sum() for o, w in zip((tout, thn, tcn), g)).backward()
    tol = TOL[dtype]
    for ours, theirs in zip((out, hn, cn), (tout, thn, tcn)):
        assert rel_err(ours.detach().numpy(), theirs.detach().double().numpy()) < tol
    for ours, theirs in zip((X, H0, C0, *params), (tx, th, tc, *mod._flat_weights)):
        assert rel_err(ours.grad.numpy(), theirs.grad.double().numpy()) < 10 * tol


@pytest.mark.gpu
@pytest.mark.parametrize("B,H", [(16, 512), (5, 65)])
def test_cuda_layer_matches_torch_on_the_gpu(rng, B, H):
    """The CUDA LSTM (persistent kernel where it fits) against torch's cuDNN LSTM on the same card,
    float32: a 2-layer unidirectional layer stack, forward and backward."""
    if not HAVE_TORCH or not torch.cuda.is_available():
        pytest.skip("torch with CUDA is not installed here")
    T, I, L = 32, 64, 2
    mod = torch.nn.LSTM(I, H, num_layers=L).cuda()
    params = [pyfastdl.tensor(p.detach().cpu().numpy().copy(), device="cuda", requires_grad=True)
              for p in mod._flat_weights]
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0, c0 = (rng.standard_normal((L, B, H)).astype(np.float32) for _ in range(2))
    X, H0, C0 = (pyfastdl.tensor(a, device="cuda", requires_grad=True) for a in (x, h0, c0))
    out, (hn, cn) = F.lstm(X, (H0, C0), params, L)
    tx, th, tc = (torch.tensor(a, device="cuda", requires_grad=True) for a in (x, h0, c0))
    tout, (thn, tcn) = mod(tx, (th, tc))
    g = [rng.standard_normal(s).astype(np.float32) for s in (out.shape, hn.shape, cn.shape)]
    sum((o * pyfastdl.tensor(w, device="cuda")).sum() for o, w in zip((out, hn, cn), g)).backward()
    sum((o * torch.tensor(w, device="cuda")).sum() for o, w in zip((tout, thn, tcn), g)).backward()
    for ours, theirs in zip((out, hn, cn), (tout, thn, tcn)):
        assert rel_err(ours.detach().cpu().numpy(), theirs.detach().double().cpu().numpy()) < CUDA_TOL
    for ours, theirs in zip((X, H0, C0, *params), (tx, th, tc, *mod._flat_weights)):
        assert rel_err(ours.grad.cpu().numpy(), theirs.grad.double().cpu().numpy()) < 10 * CUDA_TOL


# ---- bad input ------------------------------------------------------------------------------------


def _lstm_call(rng, x_shape=(5, 3, 4), h_shape=(1, 3, 6), lengths=None, dtype=np.float64, I=4):
    params = tensors(lstm_params(rng, I, 6, 1, 1))
    x = pyfastdl.tensor(rng.standard_normal(x_shape).astype(dtype))
    hx = tuple(tensors([rng.standard_normal(h_shape), rng.standard_normal(h_shape)]))
    return F.lstm(x, hx, params, lengths=lengths)


def test_bad_rank(rng):
    with pytest.raises(ValueError, match="input must have 3 dimensions"):
        _lstm_call(rng, x_shape=(2, 5, 3, 4))
    with pytest.raises(ValueError, match="lstm_cell: input"):
        F.lstm_cell(pyfastdl.tensor(rng.standard_normal((2, 3, 4))), None, *tensors(weights(rng, 4, 2)))


def test_input_size_mismatch(rng):
    with pytest.raises(ValueError, match="weight_ih"):
        _lstm_call(rng, x_shape=(5, 3, 7))
    with pytest.raises(ValueError, match="weight_ih"):
        F.lstm_cell(pyfastdl.tensor(rng.standard_normal((2, 3))), None, *tensors(weights(rng, 4, 2)))


def test_bad_weight_hh_shape():
    with pytest.raises(ValueError, match="weight_hh must have shape"):
        _C.LstmLayerArgs((5, 3, 4), (24, 4), (24, 5))


def test_state_batch_mismatch(rng):
    with pytest.raises(ValueError, match=r"hx\[0\] \(h_0\) has shape"):
        _lstm_call(rng, h_shape=(1, 2, 6))
    with pytest.raises(ValueError, match=r"hx\[0\] \(h\) has shape"):
        h = pyfastdl.tensor(rng.standard_normal((3, 2)))
        F.lstm_cell(pyfastdl.tensor(rng.standard_normal((2, 4))), (h, h), *tensors(weights(rng, 4, 2)))


def test_bad_lengths(rng):
    with pytest.raises(ValueError, match=r"lengths\[1\] = 6 is out of range \[1, 5\]"):
        _lstm_call(rng, lengths=[5, 6, 1])
    with pytest.raises(ValueError, match=r"lengths\[2\] = 0 is out of range"):
        _lstm_call(rng, lengths=[5, 2, 0])
    with pytest.raises(ValueError, match="lengths has 2 entries but the batch has 3"):
        _lstm_call(rng, lengths=[5, 2])
    with pytest.raises(ValueError, match="lengths must be a 1-D sequence of integers"):
        _lstm_call(rng, lengths=[5.0, 2.0, 1.0])


def test_wrong_dtype(rng):
    with pytest.raises(TypeError, match="input has dtype int64"):
        x = rng.integers(0, 3, (5, 3, 4))
        K.lstm_layer_forward(x, *(a.astype(np.int64) for a in (np.zeros((3, 6)), np.zeros((3, 6)))),
                             *weights(rng, 4, 6))
    with pytest.raises(TypeError, match="h0 has dtype float64, expected float32"):
        K.lstm_layer_forward(rng.standard_normal((5, 3, 4)).astype(np.float32), np.zeros((3, 6)),
                             np.zeros((3, 6), np.float32), *(w.astype(np.float32) for w in weights(rng, 4, 6)))


def test_non_contiguous_reaching_C(rng):
    x = rng.standard_normal((3, 5, 4)).transpose(1, 0, 2)  # (5, 3, 4), not contiguous
    w_ih, w_hh, b_ih, b_hh = weights(rng, 4, 6)
    a = _C.LstmLayerArgs(x.shape, w_ih.shape, w_hh.shape)
    h0 = np.zeros(a.state_shape)
    outs = [np.empty(s) for s in (a.out_shape, a.state_shape, a.state_shape, a.gates_shape, a.saved_state_shape,
                                  a.saved_state_shape)]
    with pytest.raises(ValueError, match="input must be C-contiguous"):
        backend.launch("lstm_layer_forward", "cpu", a, x, h0, h0, w_ih, w_hh, b_ih, b_hh, *outs)
    with pytest.raises(ValueError, match="weight_hh must be C-contiguous"):
        backend.launch("lstm_layer_forward", "cpu", a, np.ascontiguousarray(x), h0, h0, w_ih,
                       np.asfortranarray(w_hh), b_ih, b_hh, *outs)


# ---- GPU: against the CPU, outputs poisoned with NaN ----------------------------------------------


@pytest.fixture
def poisoned(monkeypatch):
    """Every output and workspace the raw kernels allocate starts as NaN."""
    monkeypatch.setattr(K._dispatch, "_empty",
                        lambda like, shape, dtype: backend.get_array_module(like).full(tuple(shape), np.nan, dtype))


def to_cuda(arrays):
    return [None if a is None else backend.to_device(np.ascontiguousarray(a, np.float32), "cuda") for a in arrays]


@pytest.mark.gpu
@pytest.mark.parametrize("B,I,H", [(1, 1, 1), (7, 13, 9), (64, 512, 512)])
def test_cuda_cell_matches_cpu(rng, poisoned, B, I, H):
    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((B, I), (B, H), (B, H))]
    w = weights(rng, I, H, np.float32)
    hy, cy, gates = K.lstm_cell_forward(*arrays, *w)
    ghy, gcy = rng.standard_normal((B, H)).astype(np.float32), rng.standard_normal((B, H)).astype(np.float32)
    grads = K.lstm_cell_backward(ghy, gcy, gates, *arrays, w[0], w[1])
    d = to_cuda(arrays + w)
    dhy, dcy, dgates = K.lstm_cell_forward(*d)
    dgrads = K.lstm_cell_backward(*to_cuda([ghy, gcy]), dgates, *d[:5])
    for got, want in zip((dhy, dcy, dgates, *dgrads), (hy, cy, gates, *grads)):
        assert rel_err(got, want.astype(np.float64)) < CUDA_TOL


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["fast", "reference"])
@pytest.mark.parametrize("T,B,I,H", [(1, 1, 1, 1), (9, 5, 3, 32), (130, 3, 7, 50), (16, 64, 256, 512)])
@pytest.mark.parametrize("reverse,with_lengths", [(False, False), (True, True), (False, True)])
def test_cuda_layer_matches_cpu(rng, poisoned, variant, T, B, I, H, reverse, with_lengths):
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0, c0 = (rng.standard_normal((B, H)).astype(np.float32) for _ in range(2))
    w = weights(rng, I, H, np.float32)
    lengths = None
    if with_lengths:
        lengths = rng.integers(1, T + 1, B)
        lengths[0] = T
    a = _C.LstmLayerArgs(x.shape, w[0].shape, w[1].shape, reverse, lengths)
    out, hn, cn, saved = K.lstm_layer_forward(x, h0, c0, *w, reverse=reverse, lengths=lengths)
    g = [rng.standard_normal(s).astype(np.float32) for s in (out.shape, hn.shape, cn.shape)]
    grads = K.lstm_layer_backward(*g, x, w[0], w[1], saved, reverse, lengths)

    dx, dh0, dc0, *dw = to_cuda([x, h0, c0, *w])
    dout, dhn, dcn, dsaved = K.lstm_layer_forward(dx, dh0, dc0, *dw, reverse=reverse, lengths=lengths,
                                                  variant=variant)
    dgrads = K.lstm_layer_backward(*to_cuda(g), dx, dw[0], dw[1], dsaved, reverse, lengths)
    for got, want in zip((dout, dhn, dcn, *dsaved, *dgrads), (out, hn, cn, *saved, *grads)):
        assert rel_err(got, want.astype(np.float64)) < CUDA_TOL


@pytest.mark.gpu
def test_cuda_fast_falls_back_to_the_step_loop(rng):
    x = rng.standard_normal((2, 4096, 8)).astype(np.float32)
    a = _C.LstmLayerArgs(x.shape, (4 * 1024, 8), (4 * 1024, 1024))
    assert not _C.cuda.lstm_layer_persistent_fits(a)  # (4J + B) * H floats cannot fit one SM
    w = weights(rng, 8, 1024, np.float32)
    dx, dh, *dw = to_cuda([x, np.zeros((4096, 1024)), *w])
    fast = K.lstm_layer_forward(dx, dh, dh, *dw, save=False)
    step = K.lstm_layer_forward(dx, dh, dh, *dw, save=False, variant="reference")
    for got, want in zip(fast[:3], step[:3]):
        assert rel_err(got, backend.to_device(want, "cpu").astype(np.float64)) < CUDA_TOL


def test_lstm_op_on_device(rng, device, poisoned):
    """float32 on the device against the float64 reference (forward) and the float64 CPU run
    (gradients, which gradcheck and torch vouch for)."""
    T, B, I, H, L = 6, 4, 5, 8, 2
    params = lstm_params(rng, I, H, L, 2)
    x = rng.standard_normal((B, T, I))
    lengths = [6, 2, 5, 1]
    runs = {}
    for dev, dtype in (("cpu", np.float64), (device, np.float32)):
        P = [pyfastdl.tensor(p.astype(dtype), device=dev, requires_grad=True) for p in params]
        X = pyfastdl.tensor(x.astype(dtype), device=dev, requires_grad=True)
        out, (hn, cn) = F.lstm(X, None, P, L, True, True, lengths=lengths)
        (out.sum() + hn.sum() * 2 + cn.sum()).backward()
        runs[dtype] = [backend.to_device(t.detach().data, "cpu").astype(np.float64)
                       for t in (out, hn, cn, X.grad, *(p.grad for p in P))]
    zeros = np.zeros((2 * L, B, H))
    ref_params = [tuple(params[k * 4:(k + 1) * 4]) for k in range(2 * L)]
    want = ref.lstm(x, zeros, zeros, ref_params, L, True, True, lengths)
    tol = TOL[np.float32] if device == "cpu" else CUDA_TOL
    for got, r in zip(runs[np.float32][:3], want):
        assert rel_err(got, r) < tol
    for got, r in zip(runs[np.float32][3:], runs[np.float64][3:]):
        assert rel_err(got, r) < 10 * tol
