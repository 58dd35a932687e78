"""Scaled dot-product attention benchmarks on the CPU: pyfastdl's raw kernels against torch (same
thread count, same run) at 16 batch*heads x seq {512, 2048} x dim 64, float32, with and without
the causal mask. Forward: torch.nn.functional.scaled_dot_product_attention. Backward: torch's CPU
flash-attention backward (aten._scaled_dot_product_flash_attention_for_cpu_backward), without
autograd bookkeeping, against our sdpa_backward from the same saved out and lse.

    PYTHONPATH=$PWD python3 -m pytest benchmarks/bench_attention.py --benchmark-only \
        --benchmark-json=/tmp/bench_attention.json

extra_info per case: GFLOP/s (forward 4 L S E flops per head, backward 10 L S E, halved with the
causal mask: the work the blocked kernels do up to the diagonal blocks), torch's median time,
ratio = torch time / our time (> 1: pyfastdl faster). The "reference" variant (one query row at a
time, two-pass softmax) runs on seq 512 only, to show what blocking bought.
"""

import numpy as np
import pytest

import pyfastdl as pf
from pyfastdl import kernels as K
from pyfastdl.bench import time_cpu, time_cpu_against

torch = pytest.importorskip("torch")

BH, E = 16, 64
CASES = [(L, causal, "fast") for L in (512, 2048) for causal in (False, True)] + [
    (512, False, "reference"),
    (512, True, "reference"),
]


def _setup(L):
    rng = np.random.default_rng(0)
    return [rng.standard_normal((1, BH, L, E), dtype=np.float32) for _ in range(4)]  # q, k, v, grad_out


def _ours(q, k, v, g, causal, variant):
    out, lse = K.sdpa_forward(q, k, v, is_causal=causal, variant=variant)

    def forward():
        return K.sdpa_forward(q, k, v, is_causal=causal, variant=variant)

    def backward():
        return K.sdpa_backward(q, k, v, out, lse, g, is_causal=causal, variant=variant)

    return forward, backward


def _torch(q, k, v, g, causal):
    tq, tk, tv, tg = (torch.from_numpy(a) for a in (q, k, v, g))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(tq, tk, tv, 0.0, causal)

    def forward():
        return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)

    def backward():
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(tg, tq, tk, tv, out, lse, 0.0,
                                                                                   causal)

    return forward, backward


def _rounds(fn, budget_s=1.5):
    return int(np.clip(budget_s / max(time_cpu(fn, warmup=1, repeats=1), 1e-6), 3, 20))


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("L,causal,variant", CASES, ids=[f"seq{L}-{'causal' if c else 'full'}-{v}" for L, c, v in CASES])
def test_attention(benchmark, record, L, causal, variant, direction):
    torch.set_num_threads(pf.get_num_threads())
    q, k, v, g = _setup(L)
    ours = dict(zip(("forward", "backward"), _ours(q, k, v, g, causal, variant)))[direction]
    ref = dict(zip(("forward", "backward"), _torch(q, k, v, g, causal)))[direction]
    flop = (4 if direction == "forward" else 10) * BH * L * L * E / (2 if causal else 1)
    ours_s, ref_s = time_cpu_against(benchmark, ours, ref, _rounds(ours))
    case = f"{BH}x{L}x{E}-{'causal' if causal else 'full'}-{variant}-{direction}"
    row = record("attention", case, ours_s, ref_s, flop=flop, threads=pf.get_num_threads())
    benchmark.extra_info.update(GFLOPs=row["ours_GFLOPs"], torch_GFLOPs=flop / ref_s / 1e9, torch_ms=ref_s * 1e3,
                                ratio=row["ratio"])
