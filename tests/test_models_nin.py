"""Network in Network: the paper's CIFAR-10 configuration, widths, shapes, one training step."""

import json

import numpy as np
import pytest

import pyfastdl
from pyfastdl import nn
from pyfastdl.models.nin import NIN, MlpConv


def n_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


def test_paper_configuration(rng):
    model = NIN()
    # 5x5 192 / 1x1 160 / 1x1 96 ; 5x5 192 / 1x1 192 / 1x1 192 ; 3x3 192 / 1x1 192 / 1x1 10
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in convs] == [
        (3, 192, (5, 5)), (192, 160, (1, 1)), (160, 96, (1, 1)),
        (96, 192, (5, 5)), (192, 192, (1, 1)), (192, 192, (1, 1)),
        (192, 192, (3, 3)), (192, 192, (1, 1)), (192, 10, (1, 1))]
    assert n_params(model) == 966_986
    assert not any(isinstance(m, nn.Linear) for m in model.modules())  # global average pooling instead
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2
    with pyfastdl.no_grad():
        out = model.eval()(pyfastdl.tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32)))
    assert out.shape == (2, 10) and np.isfinite(out.detach().numpy()).all()


def test_width_and_batch_norm_options(rng):
    model = NIN(6, width=0.25, batch_norm=True)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [48, 40, 24, 48, 48, 48, 48, 48, 6]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 8  # none on the score layer
    assert model(pyfastdl.tensor(rng.standard_normal((3, 3, 24, 24)).astype(np.float32))).shape == (3, 6)


def test_mlpconv_block(rng):
    block = MlpConv(4, (8, 6, 5), 3)
    x = pyfastdl.tensor(rng.standard_normal((2, 4, 7, 9)).astype(np.float32))
    y = block(x).detach().numpy()
    assert y.shape == (2, 5, 7, 9) and (y >= 0).all()  # same padding; ends in a ReLU


def test_bad_width():
    with pytest.raises(ValueError, match="width"):
        NIN(width=0)


def test_one_step_lowers_the_loss(rng):
    from pyfastdl import optim
    from pyfastdl.nn import functional as F

    pyfastdl.manual_seed(0)
    model = NIN(6, width=0.25, dropout=0.0)
    x = pyfastdl.tensor(rng.standard_normal((8, 3, 24, 24)).astype(np.float32))
    y = pyfastdl.tensor(rng.integers(0, 6, 8))
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    with pyfastdl.no_grad():
        assert F.cross_entropy(model(x), y).item() < loss.item()


@pytest.mark.slow
def test_nin_reaches_95_percent_on_shapes(tmp_path):
    from pyfastdl.cli import main

    assert main(["train", "nin", "--out", str(tmp_path), "--quiet"]) == 0
    assert json.load(open(tmp_path / "metrics.json"))["test_accuracy"] >= 0.95
