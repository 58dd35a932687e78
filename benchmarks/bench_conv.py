"""Convolution benchmarks on the CPU: pyfastdl's raw kernels against torch.nn.functional (same
thread count, same run, torch's call interleaved with ours round by round), over the convolution shapes of the models (LeNet, NIN, ResNet, FCN's
learned upsampling). Forward and backward (input + weight + bias gradients) are timed separately;
torch's backward is its aten kernel (convolution_backward), without autograd bookkeeping.

    PYTHONPATH=$PWD python3 -m pytest benchmarks/bench_conv.py --benchmark-only \
        --benchmark-json=/tmp/bench_conv.json

extra_info per case: GFLOP/s (2 flops per multiply-add), torch's median time, ratio = torch time /
our time (> 1: pyfastdl faster). The "reference" variant (direct loops) runs on the small LeNet
case only, to show what im2col + GEMM bought.
"""

import numpy as np
import pytest

import pyfastdl as pf
from pyfastdl import kernels as K
from pyfastdl.bench import time_cpu, time_cpu_against

torch = pytest.importorskip("torch")

# name: (transposed, N, C_in, H, W, C_out, kernel, stride, padding, groups)
SHAPES = {
    "lenet_c1": (False, 64, 1, 32, 32, 6, 5, 1, 0, 1),
    "lenet_c2": (False, 64, 6, 14, 14, 16, 5, 1, 0, 1),
    "nin_5x5": (False, 16, 3, 32, 32, 192, 5, 1, 2, 1),
    "nin_1x1": (False, 16, 192, 32, 32, 160, 1, 1, 0, 1),
    "resnet_64x56": (False, 8, 64, 56, 56, 64, 3, 1, 1, 1),
    "resnet_128x28": (False, 8, 128, 28, 28, 128, 3, 1, 1, 1),
    "resnet_256x14": (False, 8, 256, 14, 14, 256, 3, 1, 1, 1),
    "resnet_512x7": (False, 8, 512, 7, 7, 512, 3, 1, 1, 1),
    "fcn_up_k4s2": (True, 4, 21, 16, 16, 21, 4, 2, 1, 1),
    "fcn_up_k16s8": (True, 4, 21, 8, 8, 21, 16, 8, 4, 1),
}
CASES = [(name, "fast") for name in SHAPES] + [("lenet_c2", "reference")]


def _setup(name, dtype=np.float32):
    transposed, N, Cin, H, W, Cout, k, stride, padding, groups = SHAPES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, Cin, H, W)).astype(dtype)
    if transposed:
        w = rng.standard_normal((Cin, Cout // groups, k, k)).astype(dtype)
        args = K.conv_transpose2d_args(x.shape, w.shape, stride, padding, 0, groups)
    else:
        w = rng.standard_normal((Cout, Cin // groups, k, k)).astype(dtype)
        args = K.conv2d_args(x.shape, w.shape, stride, padding, 1, groups)
    b = rng.standard_normal(Cout).astype(dtype)
    conf = dict(stride=stride, padding=padding, groups=groups)
    return transposed, x, w, b, conf, args


def _ours(transposed, x, w, b, conf, variant):
    """(forward, backward) closures over pyfastdl's raw kernels."""
    if transposed:
        y = K.conv_transpose2d_forward(x, w, b, **conf, variant=variant)

        def forward():
            return K.conv_transpose2d_forward(x, w, b, **conf, variant=variant)

        def backward():
            K.conv_transpose2d_backward_input(y, w, x.shape, **conf, variant=variant)
            K.conv_transpose2d_backward_weight(x, y, w.shape, **conf, variant=variant)
            K.conv2d_backward_bias(y)
    else:
        y = K.conv2d_forward(x, w, b, **conf, variant=variant)

        def forward():
            return K.conv2d_forward(x, w, b, **conf, variant=variant)

        def backward():
            K.conv2d_backward_input(y, w, x.shape, **conf, variant=variant)
            K.conv2d_backward_weight(x, y, w.shape, **conf, variant=variant)
            K.conv2d_backward_bias(y)

    return forward, backward


def _torch(transposed, x, w, b, conf):
    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
    s, p, g = conf["stride"], conf["padding"], conf["groups"]
    fn = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d
    ty = fn(tx, tw, tb, stride=s, padding=p, groups=g)

    def forward():
        return fn(tx, tw, tb, stride=s, padding=p, groups=g)

    def backward():
        torch.ops.aten.convolution_backward(ty, tx, tw, [tb.shape[0]], [s, s], [p, p], [1, 1], transposed, [0, 0], g,
                                            [True, True, True])

    return forward, backward


def _rounds(fn, budget_s=0.5):
    return int(np.clip(budget_s / max(time_cpu(fn, warmup=1, repeats=1), 1e-6), 5, 30))


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("name,variant", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_conv(benchmark, record, name, variant, direction):
    torch.set_num_threads(pf.get_num_threads())
    transposed, x, w, b, conf, args = _setup(name)
    ours = dict(zip(("forward", "backward"), _ours(transposed, x, w, b, conf, variant)))[direction]
    ref = dict(zip(("forward", "backward"), _torch(transposed, x, w, b, conf)))[direction]
    flop = 2 * args.macs * (1 if direction == "forward" else 2)  # backward: input + weight gradients
    ours_s, ref_s = time_cpu_against(benchmark, ours, ref, _rounds(ours))
    row = record("conv", f"{name}-{variant}-{direction}", ours_s, ref_s, flop=flop, threads=pf.get_num_threads())
    benchmark.extra_info.update(GFLOPs=row["ours_GFLOPs"], torch_GFLOPs=flop / ref_s / 1e9, torch_ms=ref_s * 1e3,
                                ratio=row["ratio"])
