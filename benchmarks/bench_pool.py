"""Pooling benchmarks: pyfastdl's raw kernels against torch over the pooling shapes of the models
(LeNet 2x2, NIN 3x3 stride-2 max pools and 8x8 global average pool, the ResNet stem's 3x3 stride-2
padded max pool, VGG/FCN and YOLO 2x2 pools, ResNet's 7x7 global average pool).

CPU (pytest-benchmark): same thread count, torch's call interleaved with ours round by round.
    PYTHONPATH=$PWD python3 -m pytest benchmarks/bench_pool.py --benchmark-only \
        --benchmark-json=/tmp/bench_pool.json
GPU (marked gpu, skipped without one): CUDA events, L2 flushed, both variants, torch on the same card,
and the fraction of the device-to-device copy bandwidth measured in the same run.

The forward of a max pool writes the argmax indices (what training needs; torch's max_pool2d computes
them too), and the "-noidx" GPU cases time the inference forward that skips them. Throughput is in
GB/s of compulsory traffic: x read and y (+ int64 indices) written forward; gy (+ indices) read and gx
written backward. ratio = torch time / our time (> 1: pyfastdl faster).
"""

import numpy as np
import pytest

import pyfastdl as pf
from pyfastdl import backend
from pyfastdl import kernels as K
from pyfastdl.bench import cuda_ceilings, time_cpu, time_cpu_against, time_cuda

torch = pytest.importorskip("torch")
tF = torch.nn.functional

# name: (kind, (N, C, H, W), window options)
SHAPES = {
    "lenet_max2": ("max", (64, 6, 28, 28), dict(kernel_size=2)),
    "lenet_max2b": ("max", (64, 16, 10, 10), dict(kernel_size=2)),
    "lenet_avg2": ("avg", (64, 6, 28, 28), dict(kernel_size=2)),
    "nin_max3s2": ("max", (16, 96, 32, 32), dict(kernel_size=3, stride=2, ceil_mode=True)),
    "nin_max3s2b": ("max", (16, 192, 16, 16), dict(kernel_size=3, stride=2, ceil_mode=True)),
    "nin_gap8": ("adaptive", (16, 10, 8, 8), dict(output_size=1)),
    "resnet_stem": ("max", (8, 64, 112, 112), dict(kernel_size=3, stride=2, padding=1)),
    "resnet_gap7": ("adaptive", (8, 512, 7, 7), dict(output_size=1)),
    "vgg_max2_224": ("max", (2, 64, 224, 224), dict(kernel_size=2, stride=2)),
    "vgg_max2_56": ("max", (2, 256, 56, 56), dict(kernel_size=2, stride=2)),
    "vgg_max2_14": ("max", (2, 512, 14, 14), dict(kernel_size=2, stride=2)),
    "yolo_max2_208": ("max", (2, 32, 208, 208), dict(kernel_size=2, stride=2)),
    "yolo_max2_26": ("max", (2, 256, 26, 26), dict(kernel_size=2, stride=2)),
}
GPU_BATCH = 8  # the GPU cases multiply N so each launch moves tens of MB


def _ours(kind, x, opts, variant="fast", indices=True):
    """(forward, backward, bytes forward, bytes backward) over pyfastdl's raw kernels."""
    if kind == "max":
        y, idx = K.max_pool2d_forward(x, **opts)
        gy = y.copy()

        def forward():
            return K.max_pool2d_forward(x, **opts, return_indices=indices, variant=variant)

        def backward():
            return K.max_pool2d_backward(gy, idx, x.shape, **opts, variant=variant)

        extra = idx.nbytes
    elif kind == "avg":
        gy = K.avg_pool2d_forward(x, **opts)

        def forward():
            return K.avg_pool2d_forward(x, **opts, variant=variant)

        def backward():
            return K.avg_pool2d_backward(gy, x.shape, **opts, variant=variant)

        extra = 0
    else:
        gy = K.adaptive_avg_pool2d_forward(x, **opts)

        def forward():
            return K.adaptive_avg_pool2d_forward(x, **opts, variant=variant)

        def backward():
            return K.adaptive_avg_pool2d_backward(gy, x.shape, variant=variant)

        extra = 0
    fwd_bytes = x.nbytes + gy.nbytes + (extra if indices else 0)
    return forward, backward, fwd_bytes, x.nbytes + gy.nbytes + extra


def _torch(kind, tx, opts, indices=True):
    """(forward, backward) closures over torch (backward: the aten kernel, no autograd bookkeeping)."""
    if kind == "max":
        k, s = opts["kernel_size"], opts.get("stride") or opts["kernel_size"]
        p, c = opts.get("padding", 0), opts.get("ceil_mode", False)
        ty, tidx = tF.max_pool2d(tx, k, s, p, ceil_mode=c, return_indices=True)

        def forward():
            return tF.max_pool2d(tx, k, s, p, ceil_mode=c, return_indices=indices)

        def backward():
            return torch.ops.aten.max_pool2d_with_indices_backward(ty, tx, [k, k], [s, s], [p, p], [1, 1], c, tidx)
    elif kind == "avg":
        k = opts["kernel_size"]
        ty = tF.avg_pool2d(tx, k)

        def forward():
            return tF.avg_pool2d(tx, k)

        def backward():
            return torch.ops.aten.avg_pool2d_backward(ty, tx, [k, k], [k, k], [0, 0], False, True, None)
    else:
        ty = tF.adaptive_avg_pool2d(tx, opts["output_size"])

        def forward():
            return tF.adaptive_avg_pool2d(tx, opts["output_size"])

        def backward():
            return torch.ops.aten._adaptive_avg_pool2d_backward(ty, tx)

    return forward, backward


def _rounds(fn, budget_s=0.4):
    return int(np.clip(budget_s / max(time_cpu(fn, warmup=1, repeats=1), 1e-6), 5, 50))


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_pool_cpu(benchmark, record, name, direction):
    torch.set_num_threads(pf.get_num_threads())
    kind, shape, opts = SHAPES[name]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    fwd, bwd, fwd_bytes, bwd_bytes = _ours(kind, x, opts)
    ours = fwd if direction == "forward" else bwd
    ref = dict(zip(("forward", "backward"), _torch(kind, torch.from_numpy(x), opts)))[direction]
    nbytes = fwd_bytes if direction == "forward" else bwd_bytes
    ours_s, ref_s = time_cpu_against(benchmark, ours, ref, _rounds(ours))
    row = record("pool", f"{name}-{direction}", ours_s, ref_s, bytes=nbytes, threads=pf.get_num_threads())
    benchmark.extra_info.update(GBps=row["ours_GBps"], torch_ms=ref_s * 1e3, ratio=row["ratio"])


# ---- GPU -------------------------------------------------------------------------------------------

_CEILING = {}


def _copy_gbps():
    if "copy" not in _CEILING:
        _CEILING["copy"] = cuda_ceilings(copy_bytes=2**30)["copy_GBps"]
    return _CEILING["copy"]


GPU_CASES = [(n, d, v, True) for n in SHAPES for d in ("forward", "backward") for v in ("fast", "reference")]
GPU_CASES += [(n, "forward", "fast", False) for n, (kind, _, _) in SHAPES.items() if kind == "max"]


@pytest.mark.gpu
@pytest.mark.parametrize("name,direction,variant,indices", GPU_CASES,
                         ids=[f"{n}-{d}-{v}{'' if i else '-noidx'}" for n, d, v, i in GPU_CASES])
def test_pool_gpu(record, name, direction, variant, indices):
    cp = backend.array_module("cuda")
    kind, (n, c, h, w), opts = SHAPES[name]
    x = cp.random.standard_normal((n * GPU_BATCH, c, h, w), dtype=cp.float32)
    fwd, bwd, fwd_bytes, bwd_bytes = _ours(kind, x, opts, variant, indices)
    tfwd, tbwd = _torch(kind, torch.as_tensor(x, device="cuda"), opts, indices)
    ours_s = time_cuda(fwd if direction == "forward" else bwd)
    ref_s = time_cuda(tfwd if direction == "forward" else tbwd)
    nbytes = fwd_bytes if direction == "forward" else bwd_bytes
    copy = _copy_gbps()
    case = f"{name}-{direction}-{variant}{'' if indices else '-noidx'}"
    row = record("pool", case, ours_s, ref_s, bytes=nbytes, device="cuda", copy_GBps=copy)
    row["pct_of_copy"] = 100 * row["ours_GBps"] / copy
