"""LSTM benchmarks: pyfastdl's raw kernels against torch in the same run, float32.

CPU (same thread count as pyfastdl): the fused cell at batch 64, input 512, hidden 512, and one
layer over a 128-step sequence at (batch 16, input 256, hidden 512) and (batch 64, input 512,
hidden 512); forward (inference: torch under no_grad, torch.nn.LSTMCell / torch.nn.LSTM, which use
oneDNN on the CPU where available; ours with save=False) and backward (torch.autograd.grad through a
saved forward, against our backward from the saved gates). Ours and torch's calls alternate
(time_cpu_against), so both meet the same machine conditions. Target: ratio >= 1.0.

GPU (skipped without one): the layer forward, our "reference" variant (the step loop: cuBLAS +
fused pointwise kernel per step) and "fast" variant (W_hh in shared memory, one cooperative launch,
where it fits; else the step loop) against
torch.nn.LSTM (cuDNN) on the same card; the cell forward against torch.nn.LSTMCell.

FLOPs counted: forward 8 B H (I + H) per step (two products), backward twice that.
ratio = torch time / our time (> 1: pyfastdl faster).

    PYTHONPATH=$PWD python3 -m pytest benchmarks/bench_lstm.py --benchmark-only \
        --benchmark-json=/tmp/bench_lstm.json
"""

import numpy as np
import pytest

import pyfastdl as pf
from pyfastdl import _C, backend
from pyfastdl import kernels as K
from pyfastdl.bench import time_cpu, time_cpu_against, time_cuda

torch = pytest.importorskip("torch")

CELL = (64, 512, 512)  # B, I, H
SEQUENCES = [(128, 16, 256, 512), (128, 64, 512, 512)]  # T, B, I, H


def _weights(rng, I, H):
    s = 1 / np.sqrt(H)
    return [rng.uniform(-s, s, shape).astype(np.float32) for shape in ((4 * H, I), (4 * H, H), (4 * H,), (4 * H,))]


def _rounds(fn, budget_s=2.0):
    return int(np.clip(budget_s / max(time_cpu(fn, warmup=1, repeats=1), 1e-6), 5, 25))


def _bench(benchmark, record, case, ours, ref, flop):
    ours_s, ref_s = time_cpu_against(benchmark, ours, ref, _rounds(ours))
    row = record("lstm", case, ours_s, ref_s, flop=flop, threads=pf.get_num_threads())
    benchmark.extra_info.update(GFLOPs=row["ours_GFLOPs"], torch_GFLOPs=flop / ref_s / 1e9, torch_ms=ref_s * 1e3,
                                ratio=row["ratio"])


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_lstm_cell(benchmark, record, direction):
    torch.set_num_threads(pf.get_num_threads())
    B, I, H = CELL
    rng = np.random.default_rng(0)
    x, h, c, ghy, gcy = (rng.standard_normal(s, dtype=np.float32) for s in ((B, I), (B, H), (B, H), (B, H), (B, H)))
    w = _weights(rng, I, H)
    cell = torch.nn.LSTMCell(I, H)
    with torch.no_grad():
        for p, a in zip((cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), w):
            p.copy_(torch.from_numpy(a))
    tx, th, tc = (torch.from_numpy(a).requires_grad_(direction == "backward") for a in (x, h, c))
    flop = 8 * B * H * (I + H)
    if direction == "forward":
        def ours():
            return K.lstm_cell_forward(x, h, c, *w)

        def ref():
            with torch.no_grad():
                return cell(tx, (th, tc))
    else:
        flop *= 2
        _, _, gates = K.lstm_cell_forward(x, h, c, *w)
        thy, tcy = cell(tx, (th, tc))
        inputs = (tx, th, tc, *cell.parameters())

        def ours():
            return K.lstm_cell_backward(ghy, gcy, gates, x, h, c, w[0], w[1])

        def ref():
            return torch.autograd.grad((thy, tcy), inputs, (torch.from_numpy(ghy), torch.from_numpy(gcy)),
                                       retain_graph=True)

    _bench(benchmark, record, f"cell-B{B}-I{I}-H{H}-{direction}", ours, ref, flop)


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("T,B,I,H", SEQUENCES, ids=[f"T{T}-B{B}-I{I}-H{H}" for T, B, I, H in SEQUENCES])
def test_lstm_sequence(benchmark, record, T, B, I, H, direction):
    torch.set_num_threads(pf.get_num_threads())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    h0, c0 = (rng.standard_normal((B, H), dtype=np.float32) for _ in range(2))
    w = _weights(rng, I, H)
    mod = torch.nn.LSTM(I, H)
    with torch.no_grad():
        for p, a in zip(mod._flat_weights, w):
            p.copy_(torch.from_numpy(a))
    tx, th, tc = (torch.from_numpy(a).requires_grad_(direction == "backward") for a in (x, h0, c0))
    flop = T * 8 * B * H * (I + H)
    if direction == "forward":
        def ours():  # inference, as torch under no_grad
            return K.lstm_layer_forward(x, h0, c0, *w, save=False)

        def ref():
            with torch.no_grad():
                return mod(tx, (th[None], tc[None]))
    else:
        flop *= 2
        out, hn, cn, saved = K.lstm_layer_forward(x, h0, c0, *w)
        g = [rng.standard_normal(a.shape, dtype=np.float32) for a in (out, hn, cn)]
        tout, (thn, tcn) = mod(tx, (th[None], tc[None]))
        inputs = (tx, th, tc, *mod._flat_weights)
        tg = (torch.from_numpy(g[0]), torch.from_numpy(g[1])[None], torch.from_numpy(g[2])[None])

        def ours():
            return K.lstm_layer_backward(*g, x, w[0], w[1], saved)

        def ref():
            return torch.autograd.grad((tout, thn, tcn), inputs, tg, retain_graph=True)

    _bench(benchmark, record, f"seq-T{T}-B{B}-I{I}-H{H}-{direction}", ours, ref, flop)


# ---- GPU --------------------------------------------------------------------------------------------

GPU_SEQUENCES = [(128, 16, 256, 512), (128, 64, 512, 512), (128, 32, 128, 128)]


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["reference", "fast"])
@pytest.mark.parametrize("T,B,I,H", GPU_SEQUENCES, ids=[f"T{T}-B{B}-I{I}-H{H}" for T, B, I, H in GPU_SEQUENCES])
def test_lstm_sequence_cuda(record, T, B, I, H, variant):
    cp = backend.array_module("cuda")
    rng = np.random.default_rng(0)
    x = cp.asarray(rng.standard_normal((T, B, I), dtype=np.float32))
    h0, c0 = (cp.asarray(rng.standard_normal((B, H), dtype=np.float32)) for _ in range(2))
    w = [cp.asarray(a) for a in _weights(rng, I, H)]
    mod = torch.nn.LSTM(I, H).cuda()
    with torch.no_grad():
        for p, a in zip(mod._flat_weights, w):
            p.copy_(torch.from_dlpack(a))
    tx, th, tc = (torch.from_dlpack(a) for a in (x, h0[None], c0[None]))

    def torch_forward():
        with torch.no_grad():
            mod(tx, (th, tc))

    a = _C.LstmLayerArgs(x.shape, w[0].shape, w[1].shape)
    if variant == "fast" and not _C.cuda.lstm_layer_persistent_fits(a):
        pytest.skip("does not fit the persistent kernel on this GPU")
    torch_s = time_cuda(torch_forward, warmup=2, repeats=10, flush_l2=False)
    ours_s = time_cuda(lambda: K.lstm_layer_forward(x, h0, c0, *w, variant=variant), warmup=2, repeats=10,
                       flush_l2=False)
    flop = T * 8 * B * H * (I + H)
    row = record("lstm", f"seq-T{T}-B{B}-I{I}-H{H}-forward-{variant}", ours_s, torch_s, flop=flop, device="cuda")
    print(f"\nT{T} B{B} I{I} H{H} {variant}: {ours_s * 1e3:.3f} ms, torch {torch_s * 1e3:.3f} ms, "
          f"ratio {row['ratio']:.2f}")
