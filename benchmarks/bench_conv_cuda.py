"""Convolution benchmarks on the GPU: pyfastdl's CUDA kernels against torch (cuDNN) on the same card
in the same run, over the convolution shapes of the models (LeNet, NIN's 5x5 and 1x1 layers, ResNet's
3x3/1x1/7x7 layers at batch 32, FCN's learned upsampling). Each pass is timed on its own: forward,
input gradient, weight gradient; torch's gradients are its aten kernel (convolution_backward with
one output selected), without autograd bookkeeping. float32 runs with TF32 off on both sides (ours
has no TF32 path); bfloat16 accumulates in float32 on both.

    PYTHONPATH=$PWD python3 -m pytest benchmarks/bench_conv_cuda.py -m gpu --benchmark-disable -q

Timing: CUDA events on the current stream, warm-up, median of 20 repeats, L2 overwritten between
repeats (pyfastdl.bench.time_cuda). Recorded per case: TFLOP/s of both (2 flops per multiply-add),
ratio = torch time / our time (> 1: pyfastdl faster; the issue's target is >= 0.5 on H100 for the
float32 and bfloat16 forward), and the fraction of the card's matrix-product rate measured in the
same run (cuBLAS float32 without TF32, cuBLAS bfloat16). The "reference" variant (one thread per
output) runs on the LeNet layer only, to show what the tiled implicit GEMM bought.
"""

import pytest

from pyfastdl import backend, kernels
from pyfastdl.bfloat16 import BFloat16View
from pyfastdl.bench import time_cuda

pytestmark = pytest.mark.gpu

if backend.cuda_unavailable_reason() is not None:
    pytest.skip(f"no CUDA device: {backend.cuda_unavailable_reason()}", allow_module_level=True)
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("torch sees no GPU", allow_module_level=True)
cp = backend.array_module("cuda")

# name: (transposed, N, C_in, H, W, C_out, kernel, stride, padding)
SHAPES = {
    "lenet_c1": (False, 32, 1, 32, 32, 6, 5, 1, 0),
    "lenet_c2": (False, 32, 6, 14, 14, 16, 5, 1, 0),
    "nin_5x5": (False, 32, 96, 16, 16, 192, 5, 1, 2),
    "nin_1x1": (False, 32, 192, 32, 32, 160, 1, 1, 0),
    "resnet_stem_7x7": (False, 32, 3, 224, 224, 64, 7, 2, 3),
    "resnet_64x56": (False, 32, 64, 56, 56, 64, 3, 1, 1),
    "resnet_1x1_64to256x56": (False, 32, 64, 56, 56, 256, 1, 1, 0),
    "resnet_down_64to128": (False, 32, 64, 56, 56, 128, 3, 2, 1),
    "resnet_128x28": (False, 32, 128, 28, 28, 128, 3, 1, 1),
    "resnet_256x14": (False, 32, 256, 14, 14, 256, 3, 1, 1),
    "resnet_512x7": (False, 32, 512, 7, 7, 512, 3, 1, 1),
    "fcn_up_k4s2": (True, 32, 21, 16, 16, 21, 4, 2, 1),
    "fcn_up_k16s8": (True, 32, 21, 8, 8, 21, 16, 8, 4),
}
PASSES = ("forward", "backward_input", "backward_weight")
DTYPES = ("float32", "bfloat16")
CASES = [(name, "fast") for name in SHAPES] + [("lenet_c2", "reference")]


def ours_view(t):
    """The cupy array (or bfloat16 view) sharing torch tensor t's memory."""
    if t.dtype == torch.bfloat16:
        return BFloat16View(cp.from_dlpack(t.view(torch.int16)).view(cp.uint16))
    return cp.from_dlpack(t)


@pytest.fixture(scope="module")
def ceilings():
    """cuBLAS matrix-product rates of this card (TFLOP/s), measured once per run."""
    n = 8192
    rates = {}
    allow = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a, b = (torch.randn(n, n, device="cuda", dtype=dt) for _ in range(2))
        rates[name] = 2 * n**3 / time_cuda(lambda: a @ b, repeats=10, flush_l2=False) / 1e12  # noqa: B023
    torch.backends.cuda.matmul.allow_tf32 = allow
    return rates


@pytest.fixture
def no_tf32():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _setup(name, dtype, variant):
    """(ours, torch, flop): closures running one pass each way on the same tensors."""
    transposed, N, Cin, H, W, Cout, k, stride, padding = SHAPES[name]
    dt = getattr(torch, dtype)
    x = torch.randn(N, Cin, H, W, device="cuda", dtype=dt)
    if transposed:  # conv_transpose2d(x, w) is the input gradient of the conv2d with args a
        w = torch.randn(Cin, Cout, k, k, device="cuda", dtype=dt)
        b = None
        a = kernels.conv_transpose2d_args(tuple(x.shape), tuple(w.shape), stride, padding)
        y = torch.nn.functional.conv_transpose2d(x, w, stride=stride, padding=padding)
    else:
        w = torch.randn(Cout, Cin, k, k, device="cuda", dtype=dt)
        b = torch.randn(Cout, device="cuda", dtype=dt)
        a = kernels.conv2d_args(tuple(x.shape), tuple(w.shape), stride, padding)
        y = torch.nn.functional.conv2d(x, w, b, stride=stride, padding=padding)
    gy, gx, gw = torch.randn_like(y), torch.empty_like(x), torch.empty_like(w)
    suffix = "" if variant == "fast" else f"_{variant}"
    run = lambda op, *arrays: backend.launch(op + suffix, "cuda", a, *(None if t is None else ours_view(t)  # noqa: E731
                                                                      for t in arrays))
    # The conv2d pass each conv_transpose2d pass is (its input and output swap roles).
    ours = {
        "forward": (lambda: run("conv2d_backward_input", x, w, y)) if transposed
        else (lambda: run("conv2d_forward", x, w, b, y)),
        "backward_input": (lambda: run("conv2d_forward", gy, w, None, gx)) if transposed
        else (lambda: run("conv2d_backward_input", gy, w, gx)),
        "backward_weight": (lambda: run("conv2d_backward_weight", gy, x, gw)) if transposed
        else (lambda: run("conv2d_backward_weight", x, gy, gw)),
    }

    def grad(mask):
        return lambda: torch.ops.aten.convolution_backward(gy, x, w, None, [stride] * 2, [padding] * 2, [1, 1],
                                                           transposed, [0, 0], 1, mask)

    theirs = {
        "forward": (lambda: torch.nn.functional.conv_transpose2d(x, w, stride=stride, padding=padding)) if transposed
        else (lambda: torch.nn.functional.conv2d(x, w, b, stride=stride, padding=padding)),
        "backward_input": grad([True, False, False]),
        "backward_weight": grad([False, True, False]),
    }
    return ours, theirs, 2 * a.macs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("direction", PASSES)
@pytest.mark.parametrize("name,variant", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_conv_cuda(benchmark, record, ceilings, no_tf32, name, variant, direction, dtype):
    ours, theirs, flop = _setup(name, dtype, variant)
    ours, theirs = ours[direction], theirs[direction]
    repeats = 5 if variant == "reference" else 20
    ours_s = time_cuda(ours, repeats=repeats)
    ref_s = time_cuda(theirs, repeats=repeats)
    stream = cp.cuda.get_current_stream()
    benchmark.pedantic(lambda: (ours(), stream.synchronize()), rounds=3, warmup_rounds=1)
    tflops = flop / ours_s / 1e12
    row = record("conv", f"{name}-{variant}-{direction}-{dtype}", ours_s, ref_s, flop=flop, device="cuda",
                 TFLOPs=tflops, torch_TFLOPs=flop / ref_s / 1e12, of_matmul_peak=tflops / ceilings[dtype])
    benchmark.extra_info.update(TFLOPs=tflops, torch_TFLOPs=row["torch_TFLOPs"], torch_ms=ref_s * 1e3,
                                ratio=row["ratio"], of_matmul_peak=row["of_matmul_peak"])
