"""Scaled dot-product attention on the GPU: pyfastdl's CUDA kernels against
torch.nn.functional.scaled_dot_product_attention on the same card, in the same run.

Shapes follow FlashAttention's benchmark: 16384 tokens (batch = 16384 / seq), 2048 model width
(heads = 2048 / dim), seq 1024..8192, dim 64 and 128, bfloat16, forward and backward, no mask,
plus causal at seq 4096, float32 at seq 1024 (dim 64) and 4096 (dim 128) (our float32 kernels are
FFMA, torch's may use TF32 tensor cores), and the bfloat16 reference variant at seq 1024 to show what the tiled tensor-core kernels bought.

Timing: pyfastdl.bench.time_cuda (CUDA events on the current stream, warm-up, median). Torch runs
its default SDPA dispatch; the backend it picked (flash / efficient / math / cudnn, read through
torch._fused_sdp_choice, the function its dispatcher calls) is logged with each case. Forward:
one SDPA call. Backward: torch.autograd.grad of a saved forward (torch's backward kernels only)
against our sdpa_backward from the saved out and lse. FLOPs: forward 4 B H L S E, backward 2.5x
that, halved with the causal mask. ratio = torch time / our time (> 1: pyfastdl faster); the
targets on an H100 are bf16 forward >= 0.5 and backward >= 0.4.

    PYTHONPATH=$PWD python3 -m pytest benchmarks/bench_attention_cuda.py --benchmark-disable -s
"""

import pytest

from pyfastdl import _C, backend
from pyfastdl.bfloat16 import BFloat16View
from pyfastdl.bench import time_cuda

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

TOKENS, WIDTH = 16384, 2048
CASES = (
    [("bfloat16", L, E, False, "fast") for E in (64, 128) for L in (1024, 2048, 4096, 8192)]
    + [("bfloat16", 4096, E, True, "fast") for E in (64, 128)]
    + [("float32", 1024, 64, False, "fast"), ("float32", 4096, 128, False, "fast")]
    + [("bfloat16", 1024, 64, False, "reference")]
)


def as_kernel_array(t):
    """The cupy array (or bfloat16 view) sharing torch tensor t's memory."""
    cp = backend.array_module("cuda")
    if t.dtype == torch.bfloat16:
        return BFloat16View(cp.from_dlpack(t.view(torch.int16)).view(cp.uint16))
    return cp.from_dlpack(t)


def torch_backend_name(q, k, v, causal):
    try:
        choice = torch._fused_sdp_choice(q, k, v, None, 0.0, causal)
        return torch.nn.attention.SDPBackend(choice).name.lower()
    except Exception as exc:  # a private function: say so rather than guess
        return f"unknown ({type(exc).__name__})"


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize(
    "dtype,L,E,causal,variant", CASES,
    ids=[f"{d}-seq{L}-d{E}-{'causal' if c else 'full'}-{v}" for d, L, E, c, v in CASES],
)
def test_attention_cuda(record, dtype, L, E, causal, variant, direction):
    B, H = TOKENS // L, WIDTH // E
    tdtype = getattr(torch, dtype)
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, g = (torch.randn(B, H, L, E, device="cuda", dtype=tdtype, generator=gen) for _ in range(4))
    suffix = "" if variant == "fast" else "_reference"

    # ours, from the same inputs; outputs allocated once (the kernels overwrite them)
    a = _C.AttentionArgs(q.shape, k.shape, v.shape, None, "none", causal, None)
    out = torch.empty_like(q)
    lse = torch.empty(B, H, L, device="cuda", dtype=torch.float32)
    grads = [torch.empty_like(x) for x in (q, k, v)]
    Q, K, V, G, O, LSE = (as_kernel_array(x) for x in (q, k, v, g, out, lse))
    dQ, dK, dV = (as_kernel_array(x) for x in grads)

    def ours_forward():
        backend.launch("sdpa_forward" + suffix, "cuda", a, Q, K, V, None, O, LSE)

    def ours_backward():
        backend.launch("sdpa_backward" + suffix, "cuda", a, Q, K, V, None, O, LSE, G, dQ, dK, dV)

    ours_forward()
    # torch
    tq, tk, tv = (x.detach().clone().requires_grad_(direction == "backward") for x in (q, k, v))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    tout = sdpa(tq, tk, tv, is_causal=causal)

    def torch_forward():
        sdpa(tq, tk, tv, is_causal=causal)

    def torch_backward():
        torch.autograd.grad(tout, (tq, tk, tv), g, retain_graph=True)

    slow = variant == "reference"
    reps = 3 if slow else 10
    fns = {"forward": (ours_forward, torch_forward), "backward": (ours_backward, torch_backward)}[direction]
    ours_s = time_cuda(fns[0], warmup=1 if slow else 2, repeats=reps, flush_l2=False)
    torch_s = time_cuda(fns[1], warmup=2, repeats=reps, flush_l2=False)
    flop = 4 * B * H * L * L * E * (2.5 if direction == "backward" else 1) / (2 if causal else 1)
    case = f"{dtype}-B{B}xH{H}-seq{L}-d{E}-{'causal' if causal else 'full'}-{variant}-{direction}"
    row = record("attention", case, ours_s, torch_s, flop=flop, device="cuda",
                 torch_backend=torch_backend_name(q, k, v, causal),
                 tensor_cores=bool(_C.cuda.sdpa_uses_tensor_cores(a, dtype)) and variant == "fast",
                 ours_TFLOPs=flop / ours_s / 1e12, torch_TFLOPs=flop / torch_s / 1e12)
    print(f"\n{case}: ours {ours_s * 1e3:.3f} ms ({row['ours_TFLOPs']:.1f} TFLOP/s), torch[{row['torch_backend']}] "
          f"{torch_s * 1e3:.3f} ms ({row['torch_TFLOPs']:.1f} TFLOP/s), ours/torch speed {row['ratio']:.2f}")
