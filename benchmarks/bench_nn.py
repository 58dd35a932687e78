"""Training-library benchmarks on the CPU: pyfastdl's fused functional ops (forward + backward through
autograd) and optimizer steps against torch's (same thread count, same run), at shapes the models use.

    PYTHONPATH=$PWD python3 -m pytest benchmarks/bench_nn.py --benchmark-only \
        --benchmark-json=/tmp/bench_nn.json

On the CPU batch norm, layer norm, softmax, cross-entropy, the optimizer steps and (leaky) ReLU run as
the C++ kernels of the norm, softmax, optim and activation families; linear is OpenBLAS on the
kernels' thread pool. The ``*_resnet20_*``,
``*_transformer_*`` and ``*_lstm_lm_*`` cases use the shapes of those models' training steps (CIFAR
ResNet-20 at batch 32; a d=256 Transformer LM over 16 x 128 tokens; an LSTM LM's 16 x 64 tokens
over a 10k-word vocabulary). Ours and torch's calls alternate (``time_cpu_against``).
extra_info: torch's median time and ratio = torch time / our time (> 1: pyfastdl faster).
"""

import numpy as np
import pytest

import pyfastdl as pf
from pyfastdl import nn, optim
from pyfastdl.bench import time_cpu_against
from pyfastdl.nn import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional
RNG = np.random.default_rng(0)


def _pair(shape):
    x = RNG.standard_normal(shape).astype(np.float32)
    return pf.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)


def cross_entropy_256x1000():
    (x, tx), t = _pair((256, 1000)), RNG.integers(0, 1000, 256)
    return (lambda: F.cross_entropy(x, pf.tensor(t), label_smoothing=0.1).backward(),
            lambda: TF.cross_entropy(tx, torch.tensor(t), label_smoothing=0.1).backward())


def cross_entropy_seg_8x21x64x64():
    (x, tx), t = _pair((8, 21, 64, 64)), RNG.integers(0, 21, (8, 64, 64))
    t[:, :4] = 255  # FCN's "void" label
    return (lambda: F.cross_entropy(x, pf.tensor(t), ignore_index=255).backward(),
            lambda: TF.cross_entropy(tx, torch.tensor(t), ignore_index=255).backward())


def batch_norm2d_32x64x32x32():
    (x, tx), bn, tbn = _pair((32, 64, 32, 32)), nn.BatchNorm2d(64), torch.nn.BatchNorm2d(64)
    return lambda: bn(x).sum().backward(), lambda: tbn(tx).sum().backward()


def _batch_norm(shape):
    (x, tx), bn, tbn = _pair(shape), nn.BatchNorm2d(shape[1]), torch.nn.BatchNorm2d(shape[1])
    return lambda: bn(x).sum().backward(), lambda: tbn(tx).sum().backward()


def batch_norm_resnet20_32x16x32x32():
    return _batch_norm((32, 16, 32, 32))


def batch_norm_resnet20_32x32x16x16():
    return _batch_norm((32, 32, 16, 16))


def batch_norm_resnet20_32x64x8x8():
    return _batch_norm((32, 64, 8, 8))


def layer_norm_transformer_16x128x256():
    (x, tx), ln, tln = _pair((16, 128, 256)), nn.LayerNorm(256), torch.nn.LayerNorm(256)
    return lambda: ln(x).sum().backward(), lambda: tln(tx).sum().backward()


def softmax_transformer_16x4x128x128():
    x, tx = _pair((16, 4, 128, 128))
    return lambda: F.softmax(x, dim=-1).sum().backward(), lambda: TF.softmax(tx, dim=-1).sum().backward()


def cross_entropy_lstm_lm_1024x10000():
    (x, tx), t = _pair((1024, 10000)), RNG.integers(0, 10000, 1024)
    return (lambda: F.cross_entropy(x, pf.tensor(t)).backward(),
            lambda: TF.cross_entropy(tx, torch.tensor(t)).backward())


def cross_entropy_resnet20_32x10():
    (x, tx), t = _pair((32, 10)), RNG.integers(0, 10, 32)
    return (lambda: F.cross_entropy(x, pf.tensor(t)).backward(),
            lambda: TF.cross_entropy(tx, torch.tensor(t)).backward())


def layer_norm_32x128x512():
    (x, tx), ln, tln = _pair((32, 128, 512)), nn.LayerNorm(512), torch.nn.LayerNorm(512)
    return lambda: ln(x).sum().backward(), lambda: tln(tx).sum().backward()


def linear_512x1024x1024():
    (x, tx), lin, tlin = _pair((512, 1024)), nn.Linear(1024, 1024), torch.nn.Linear(1024, 1024)
    return lambda: lin(x).sum().backward(), lambda: tlin(tx).sum().backward()


def softmax_8x8x128x128():
    x, tx = _pair((8, 8, 128, 128))
    return lambda: F.softmax(x, dim=-1).sum().backward(), lambda: TF.softmax(tx, dim=-1).sum().backward()


def relu_lenet_64x6x28x28():
    x, tx = _pair((64, 6, 28, 28))
    return lambda: F.relu(x).sum().backward(), lambda: TF.relu(tx).sum().backward()


def leaky_relu_yolo_32x16x28x28():
    x, tx = _pair((32, 16, 28, 28))
    return (lambda: F.leaky_relu(x, 0.1).sum().backward(),
            lambda: TF.leaky_relu(tx, 0.1).sum().backward())


def _optimizer(name, **kwargs):
    """One step over ~3.9M parameters in ResNet-like tensor sizes."""
    arrays = [RNG.standard_normal(s).astype(np.float32) for s in [(512, 256, 3, 3), (256, 256, 3, 3), (1000, 512),
                                                                  (512,), (256,)]]
    ours = [nn.Parameter(pf.tensor(a)) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    for p, tp, a in zip(ours, theirs, arrays):
        p.grad, tp.grad = pf.tensor(a * 0.01), torch.tensor(a * 0.01)
    return getattr(optim, name)(ours, **kwargs).step, getattr(torch.optim, name)(theirs, **kwargs).step


def _resnet20_optimizer(name, **kwargs):
    """One step over a CIFAR ResNet-20's parameters (0.27M values in 65 tensors, most of them small)."""
    from pyfastdl.models.resnet import resnet20  # noqa: PLC0415

    arrays = [p.data.copy() for p in resnet20().parameters()]
    ours = [nn.Parameter(pf.tensor(a)) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    for p, tp, a in zip(ours, theirs, arrays):
        p.grad, tp.grad = pf.tensor(a * 0.01), torch.tensor(a * 0.01)
    return getattr(optim, name)(ours, **kwargs).step, getattr(torch.optim, name)(theirs, **kwargs).step


def sgd_resnet20_step():
    return _resnet20_optimizer("SGD", lr=0.1, momentum=0.9, weight_decay=5e-4)


def adamw_resnet20_step():
    return _resnet20_optimizer("AdamW", lr=1e-3, weight_decay=0.05)


def sgd_momentum_step():
    return _optimizer("SGD", lr=0.1, momentum=0.9, weight_decay=5e-4)


def adam_step():
    return _optimizer("Adam", lr=1e-3)


def adamw_amsgrad_step():
    return _optimizer("AdamW", lr=1e-3, weight_decay=0.05, amsgrad=True)


CASES = [cross_entropy_256x1000, cross_entropy_seg_8x21x64x64, batch_norm2d_32x64x32x32, layer_norm_32x128x512,
         linear_512x1024x1024, softmax_8x8x128x128, sgd_momentum_step, adam_step, adamw_amsgrad_step,
         batch_norm_resnet20_32x16x32x32, batch_norm_resnet20_32x32x16x16, batch_norm_resnet20_32x64x8x8,
         layer_norm_transformer_16x128x256, softmax_transformer_16x4x128x128, cross_entropy_lstm_lm_1024x10000,
         cross_entropy_resnet20_32x10, sgd_resnet20_step, adamw_resnet20_step, relu_lenet_64x6x28x28,
         leaky_relu_yolo_32x16x28x28]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_nn(benchmark, record, case):
    torch.set_num_threads(pf.get_num_threads())
    ours, ref = case()
    ours_s, ref_s = time_cpu_against(benchmark, ours, ref, rounds=10)
    row = record("nn", case.__name__, ours_s, ref_s, threads=pf.get_num_threads())
    benchmark.extra_info.update(torch_ms=ref_s * 1e3, ratio=row["ratio"])
