"""ResNet: torchvision's parameter counts and names, the CIFAR family, shapes, one training step."""

import json

import numpy as np
import pytest

import pyfastdl
from pyfastdl import nn
from pyfastdl.models import resnet
from pyfastdl.models.resnet import BasicBlock, Bottleneck, CifarResNet, PadShortcut


def n_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


@pytest.mark.parametrize("name, count", [("resnet18", 11_689_512), ("resnet34", 21_797_672),
                                         ("resnet50", 25_557_032)])
def test_imagenet_parameter_counts_equal_torchvision(name, count):
    assert n_params(getattr(resnet, name)()) == count


@pytest.mark.slow
@pytest.mark.parametrize("name, count", [("resnet101", 44_549_160), ("resnet152", 60_192_808)])
def test_deep_imagenet_parameter_counts_equal_torchvision(name, count):
    assert n_params(getattr(resnet, name)()) == count


def test_state_dict_names_follow_torchvision():
    shapes = {k: tuple(v.shape) for k, v in resnet.resnet18().state_dict().items()}
    # torchvision's resnet18 state dict: 20 convolutions, 20 batch norms (5 entries each), fc
    assert len(shapes) == 122
    assert shapes["conv1.weight"] == (64, 3, 7, 7)
    assert shapes["bn1.running_mean"] == (64,) and shapes["bn1.num_batches_tracked"] == ()
    assert shapes["layer1.0.conv1.weight"] == (64, 64, 3, 3)
    assert shapes["layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert shapes["layer2.0.downsample.1.running_var"] == (128,)
    assert shapes["layer4.1.bn2.weight"] == (512,)
    assert shapes["fc.weight"] == (1000, 512) and shapes["fc.bias"] == (1000,)
    assert "layer1.0.downsample.0.weight" not in shapes

    shapes50 = {k: tuple(v.shape) for k, v in resnet.resnet50().state_dict().items()}
    assert len(shapes50) == 320  # 53 convolutions, 53 batch norms, fc
    assert shapes50["layer1.0.conv3.weight"] == (256, 64, 1, 1)
    assert shapes50["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert shapes50["layer3.5.bn3.running_mean"] == (1024,)
    assert shapes50["layer4.0.conv2.weight"] == (512, 512, 3, 3)
    assert shapes50["fc.weight"] == (1000, 2048)


def test_converted_state_dict_loads(rng):
    """A state dict given as plain arrays under torchvision's names (what a converted torchvision
    checkpoint is) loads into a fresh model and reproduces the source model's outputs."""
    source = resnet.resnet18(num_classes=7).eval()
    converted = {k: np.array(v.detach().numpy()) for k, v in source.state_dict().items()}
    target = resnet.resnet18(num_classes=7)
    target.load_state_dict({k: pyfastdl.tensor(v) for k, v in converted.items()})
    target.eval()
    x = pyfastdl.tensor(rng.standard_normal((1, 3, 40, 40)).astype(np.float32))
    with pyfastdl.no_grad():
        np.testing.assert_array_equal(target(x).detach().numpy(), source(x).detach().numpy())


def test_resnet50_imagenet_output_shape(rng):
    model = resnet.resnet50().eval()
    x = pyfastdl.tensor(rng.standard_normal((1, 3, 224, 224)).astype(np.float32))
    with pyfastdl.no_grad():
        out = model(x)
    assert out.shape == (1, 1000) and np.isfinite(out.detach().numpy()).all()


@pytest.mark.parametrize("depth, count", [(20, 269_722), (32, 464_154), (44, 658_586), (56, 853_018),
                                          (110, 1_727_962)])
def test_cifar_parameter_counts(depth, count):
    # the paper's 0.27M, 0.46M, 0.66M, 0.85M, 1.7M (option A shortcuts have no parameters)
    assert n_params(CifarResNet(depth)) == count


def test_cifar_family_constructors_and_shortcuts(rng):
    assert resnet.resnet56().layer1[8] is not None and len(resnet.resnet110().layer3) == 18
    a, b = resnet.resnet20(), resnet.resnet20(shortcut="B")
    assert isinstance(a.layer2[0].downsample, PadShortcut) and a.layer1[0].downsample is None
    assert isinstance(b.layer2[0].downsample, nn.Sequential)
    # B adds two 1x1 projections with batch norm: 16*32 + 64 + 32*64 + 128
    assert n_params(b) - n_params(a) == 16 * 32 + 64 + 32 * 64 + 128
    x = pyfastdl.tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    for model in (a, b):
        assert model(x).shape == (2, 10)


def test_pad_shortcut_subsamples_and_zero_pads(rng):
    x = rng.standard_normal((2, 3, 5, 5))
    y = PadShortcut(4, 2)(pyfastdl.tensor(x)).detach().numpy()
    assert y.shape == (2, 7, 3, 3)
    np.testing.assert_array_equal(y[:, :3], x[:, :, ::2, ::2])
    assert not y[:, 3:].any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        CifarResNet(21)
    with pytest.raises(ValueError, match="shortcut"):
        CifarResNet(20, shortcut="C")


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck])
def test_block_shapes(rng, block):
    down = nn.Sequential(nn.Conv2d(8, 4 * block.expansion, 1, stride=2, bias=False),
                         nn.BatchNorm2d(4 * block.expansion))
    x = pyfastdl.tensor(rng.standard_normal((2, 8, 7, 9)).astype(np.float32))
    assert block(8, 4, 2, down)(x).shape == (2, 4 * block.expansion, 4, 5)


def test_zero_init_residual_makes_blocks_identity(rng):
    model = resnet.resnet18(zero_init_residual=True)
    assert all(not m.bn2.weight.detach().numpy().any() for m in model.modules() if isinstance(m, BasicBlock))


def _one_step_lowers_loss(model, x, y, lr=1e-3):
    from pyfastdl import optim
    from pyfastdl.nn import functional as F

    opt = optim.AdamW(model.parameters(), lr=lr)
    model.train()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    # the same batch again, still in training mode (batch norm normalises with its statistics)
    with pyfastdl.no_grad():
        after = F.cross_entropy(model(x), y)
    assert after.item() < loss.item()


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "resnet50"])
def test_one_step_lowers_the_loss(rng, name):
    pyfastdl.manual_seed(0)
    model = getattr(resnet, name)(num_classes=5)
    x = pyfastdl.tensor(rng.standard_normal((6, 3, 32, 32)).astype(np.float32))
    y = pyfastdl.tensor(rng.integers(0, 5, 6))
    _one_step_lowers_loss(model, x, y)


@pytest.mark.slow
def test_resnet20_reaches_95_percent_on_shapes(tmp_path):
    from pyfastdl.cli import main

    assert main(["train", "resnet20", "--out", str(tmp_path), "--quiet"]) == 0
    assert json.load(open(tmp_path / "metrics.json"))["test_accuracy"] >= 0.95


def test_cifar10_recipe_on_a_tiny_copy(tmp_path, rng):
    """--dataset cifar10 reads the binary files from --data-dir (resnet20 and nin share the recipe)."""
    from test_vision_loaders import write_cifar

    from pyfastdl.cli import main

    write_cifar(tmp_path / "cifar-10-batches-bin", rng, n=4)
    for model in ("resnet20", "nin"):
        run = tmp_path / model
        assert main(["train", model, "--dataset", "cifar10", "--data-dir", str(tmp_path), "--batch-size", "4",
                     "--epochs", "1", "--out", str(run), "--quiet"]) == 0
        assert 0.0 <= json.load(open(run / "metrics.json"))["test_accuracy"] <= 1.0
