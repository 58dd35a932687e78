"""Convolution benchmarks on the CPU: pyfastdl's raw kernels against torch.nn.functional (same
thread count, same run, torch's call interleaved with ours round by round), over the convolution shapes of the models
(LeNet, NIN, CIFAR ResNet-20, FCN-8s, YOLOv1 at their CPU recipes' sizes and batch sizes, a few
ImageNet ResNet layers, FCN's learned upsampling). The forward (the same kernel with or without
grad: inference), the input gradient and the weight gradient are timed separately; torch's
gradients are its aten kernel (convolution_backward with one output asked for), without autograd
bookkeeping.

    PYTHONPATH=$PWD python3 -m pytest benchmarks/bench_conv.py --benchmark-only \
        --benchmark-json=/tmp/bench_conv.json

extra_info per case: GFLOP/s (2 flops per multiply-add), torch's median time, ratio = torch time /
our time (> 1: pyfastdl faster). Besides "fast" (the default, which picks an algorithm per shape),
the ladder's rungs run on a few shapes: "reference" (direct loops) on LeNet, "im2col" and
"winograd" on ResNet-20's and YOLO's 3x3 layers, "im2col" and "direct" on LeNet's 5x5, YOLO's stem
and ResNet-20's stride-2 layers, to show what each bought. (The direct variant's input gradient needs
stride 1: strided shapes skip that case.)
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
    "lenet_c3": (False, 64, 16, 5, 5, 120, 5, 1, 0, 1),
    "nin_5x5a": (False, 64, 3, 24, 24, 48, 5, 1, 2, 1),  # NIN recipe (width 0.25, 24x24 scenes)
    "nin_5x5": (False, 64, 24, 12, 12, 48, 5, 1, 2, 1),
    "nin_1x1": (False, 64, 48, 24, 24, 40, 1, 1, 0, 1),
    "nin_3x3": (False, 64, 48, 6, 6, 48, 3, 1, 1, 1),
    "nin_1x1_6": (False, 64, 48, 6, 6, 48, 1, 1, 0, 1),
    "resnet20_stem": (False, 32, 3, 32, 32, 16, 3, 1, 1, 1),  # CIFAR ResNet-20, batch 32
    "resnet20_16x32": (False, 32, 16, 32, 32, 16, 3, 1, 1, 1),
    "resnet20_32x16": (False, 32, 32, 16, 16, 32, 3, 1, 1, 1),
    "resnet20_64x8": (False, 32, 64, 8, 8, 64, 3, 1, 1, 1),
    "resnet20_down32": (False, 32, 16, 32, 32, 32, 3, 2, 1, 1),
    "resnet20_down64": (False, 32, 32, 16, 16, 64, 3, 2, 1, 1),
    "fcn_3x48": (False, 16, 3, 48, 48, 8, 3, 1, 1, 1),  # FCN-8s recipe (VGG width 0.125, 48x48)
    "fcn_8x48": (False, 16, 8, 48, 48, 8, 3, 1, 1, 1),
    "fcn_16x24": (False, 16, 16, 24, 24, 16, 3, 1, 1, 1),
    "fcn_32x12": (False, 16, 32, 12, 12, 32, 3, 1, 1, 1),
    "fcn_64x6": (False, 16, 64, 6, 6, 64, 3, 1, 1, 1),
    "fcn_64x3": (False, 16, 64, 3, 3, 64, 3, 1, 1, 1),
    "fcn_fc6": (False, 16, 64, 2, 2, 128, 7, 1, 3, 1),
    "yolo_c1": (False, 32, 3, 56, 56, 16, 5, 2, 2, 1),  # YOLOv1 recipe (small layers, 56x56)
    "yolo_16x28": (False, 32, 16, 28, 28, 32, 3, 1, 1, 1),
    "yolo_32x14": (False, 32, 32, 14, 14, 64, 3, 1, 1, 1),
    "yolo_1x1": (False, 32, 64, 7, 7, 64, 1, 1, 0, 1),
    "yolo_64x7": (False, 32, 64, 7, 7, 128, 3, 1, 1, 1),
    "yolo_128x7": (False, 32, 128, 7, 7, 128, 3, 1, 1, 1),
    "resnet_64x56": (False, 8, 64, 56, 56, 64, 3, 1, 1, 1),
    "resnet_256x14": (False, 8, 256, 14, 14, 256, 3, 1, 1, 1),
    "resnet18_256x4": (False, 32, 256, 4, 4, 256, 3, 1, 1, 1),  # ResNet-18 at 64x64 (bench models), batch 32
    "resnet18_512x2": (False, 32, 512, 2, 2, 512, 3, 1, 1, 1),
    "fcn_up_k4s2": (True, 4, 21, 16, 16, 21, 4, 2, 1, 1),
    "fcn_up_k16s8": (True, 4, 21, 8, 8, 21, 16, 8, 4, 1),
}
# The ladder's rungs: the algorithms "fast" picks from, on shapes where each is the pick.
LADDER = {"resnet20_16x32": ("im2col", "winograd"), "resnet20_64x8": ("im2col", "winograd"),
          "yolo_128x7": ("im2col", "winograd"), "lenet_c2": ("im2col", "direct"), "yolo_c1": ("im2col", "direct"),
          "resnet20_down32": ("im2col", "direct"), "resnet18_256x4": ("im2col", "winograd"),
          "resnet18_512x2": ("im2col", "winograd")}
CASES = ([(name, "fast") for name in SHAPES] + [("lenet_c2", "reference")]
         + [(name, v) for name, variants in LADDER.items() for v in variants])
DIRECTIONS = ["forward", "backward_input", "backward_weight"]


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
    """{direction: closure} over pyfastdl's raw kernels (the bias gradient, a numpy sum, goes with the
    weight gradient)."""
    if transposed:
        y = K.conv_transpose2d_forward(x, w, b, **conf, variant=variant)
        return {
            "forward": lambda: K.conv_transpose2d_forward(x, w, b, **conf, variant=variant),
            "backward_input": lambda: K.conv_transpose2d_backward_input(y, w, x.shape, **conf, variant=variant),
            "backward_weight": lambda: (K.conv_transpose2d_backward_weight(x, y, w.shape, **conf, variant=variant),
                                        K.conv2d_backward_bias(y)),
        }
    y = K.conv2d_forward(x, w, b, **conf, variant=variant)
    return {
        "forward": lambda: K.conv2d_forward(x, w, b, **conf, variant=variant),
        "backward_input": lambda: K.conv2d_backward_input(y, w, x.shape, **conf, variant=variant),
        "backward_weight": lambda: (K.conv2d_backward_weight(x, y, w.shape, **conf, variant=variant),
                                    K.conv2d_backward_bias(y)),
    }


def _torch(transposed, x, w, b, conf):
    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
    s, p, g = conf["stride"], conf["padding"], conf["groups"]
    fn = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d
    ty = fn(tx, tw, tb, stride=s, padding=p, groups=g)

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(ty, tx, tw, [tb.shape[0]], [s, s], [p, p], [1, 1],
                                                           transposed, [0, 0], g, mask)

    return {
        "forward": lambda: fn(tx, tw, tb, stride=s, padding=p, groups=g),
        "backward_input": backward([True, False, False]),
        "backward_weight": backward([False, True, True]),
    }


def _rounds(fn, budget_s=0.5):
    return int(np.clip(budget_s / max(time_cpu(fn, warmup=1, repeats=1), 1e-6), 5, 30))


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("name,variant", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_conv(benchmark, record, name, variant, direction):
    torch.set_num_threads(pf.get_num_threads())
    transposed, x, w, b, conf, args = _setup(name)
    if variant == "direct" and direction == "backward_input" and conf["stride"] != 1:
        pytest.skip("the direct variant's input gradient needs stride 1")
    ours = _ours(transposed, x, w, b, conf, variant)[direction]
    ref = _torch(transposed, x, w, b, conf)[direction]
    flop = 2 * args.macs
    ours_s, ref_s = time_cpu_against(benchmark, ours, ref, _rounds(ours))
    row = record("conv", f"{name}-{variant}-{direction}", ours_s, ref_s, flop=flop, threads=pf.get_num_threads())
    benchmark.extra_info.update(GFLOPs=row["ours_GFLOPs"], torch_GFLOPs=flop / ref_s / 1e9, torch_ms=ref_s * 1e3,
                                ratio=row["ratio"])
