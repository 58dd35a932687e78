"""LeNet-5: the paper's layer sizes, 61,706 parameters, output shape, the selectable variants."""

import numpy as np
import pytest

import pyfastdl
from pyfastdl.models import LeNet5
from pyfastdl.models.lenet import ScaledTanh


def n_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


@pytest.mark.parametrize("activation", ["relu", "tanh", "scaled_tanh"])
@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_parameters_and_output_shape(rng, activation, pooling):
    model = LeNet5(activation=activation, pooling=pooling)
    assert n_params(model) == 61_706
    out = model(pyfastdl.tensor(rng.standard_normal((3, 1, 32, 32)).astype(np.float32))).detach()
    assert out.shape == (3, 10) and out.dtype == np.float32
    assert np.isfinite(out.numpy()).all()


def test_layer_shapes():
    shapes = {name: tuple(p.shape) for name, p in LeNet5().state_dict().items()}
    assert shapes == {
        "c1.weight": (6, 1, 5, 5), "c1.bias": (6,), "c3.weight": (16, 6, 5, 5), "c3.bias": (16,),
        "c5.weight": (120, 16, 5, 5), "c5.bias": (120,), "f6.weight": (84, 120), "f6.bias": (84,),
        "output.weight": (10, 84), "output.bias": (10,),
    }


def test_backward_reaches_every_parameter(rng):
    model = LeNet5(activation="scaled_tanh", pooling="avg")
    x = pyfastdl.tensor(rng.standard_normal((2, 1, 32, 32)).astype(np.float32))
    model(x).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and np.abs(p.grad.numpy()).sum() > 0, name


def test_scaled_tanh(rng):
    a = rng.standard_normal(7)
    out = ScaledTanh()(pyfastdl.tensor(a)).detach().numpy()
    np.testing.assert_allclose(out, 1.7159 * np.tanh(2 * a / 3), rtol=1e-12)
    np.testing.assert_allclose(ScaledTanh()(pyfastdl.tensor(np.array([1.0, -1.0]))).numpy(), [1, -1], atol=2e-4)


def test_bad_options():
    with pytest.raises(ValueError, match="activation must be one of"):
        LeNet5(activation="sigmoid")
    with pytest.raises(ValueError, match="pooling must be one of"):
        LeNet5(pooling="lp")


# ---- the part-two options: normalisation and dropout ----


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_norm_placement_and_parameters(rng, norm):
    """A norm after C1, C3, C5 and F6; batch norm replaces those layers' biases with its shift."""
    model = LeNet5(norm=norm)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    if norm == "batch":
        assert "c1.bias" not in shapes and "f6.bias" not in shapes
        assert shapes["n1.weight"] == (6,) and shapes["n3.weight"] == (16,) and shapes["n5.weight"] == (120,)
        assert n_params(model) == 61_706 - (6 + 16 + 120 + 84) + 2 * (6 + 16 + 120 + 84)
        assert set(dict(model.named_buffers())) >= {"n1.running_mean", "n6.running_var"}
    else:
        assert shapes["n1.weight"] == (6, 28, 28) and shapes["n3.weight"] == (16, 10, 10)
        assert shapes["n5.weight"] == (120, 1, 1) and shapes["n6.weight"] == (84,)
        assert n_params(model) == 61_706 + 2 * (6 * 28 * 28 + 16 * 10 * 10 + 120 + 84)
    x = pyfastdl.tensor(rng.standard_normal((4, 1, 32, 32)).astype(np.float32))
    model(x).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and np.abs(p.grad.numpy()).sum() > 0, name
    model.eval()
    a = model(x[:1]).detach().numpy()
    b = model(x).detach().numpy()[:1]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # eval: each sample on its own


def test_layer_norm_normalises_each_sample(rng):
    model = LeNet5(norm="layer")
    x = pyfastdl.tensor(rng.standard_normal((3, 1, 32, 32)).astype(np.float32))
    h = model.n1(model.c1(x)).detach().numpy().reshape(3, -1)  # weight 1, bias 0 at initialisation
    np.testing.assert_allclose(h.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(h.std(axis=1), 1, atol=1e-3)


def test_dropout_only_in_training(rng):
    model = LeNet5(dropout=0.5)
    x = pyfastdl.tensor(rng.standard_normal((8, 1, 32, 32)).astype(np.float32))
    pyfastdl.manual_seed(0)
    first, second = model(x).detach().numpy(), model(x).detach().numpy()
    assert not np.allclose(first, second)  # a new mask each call
    model.eval()
    np.testing.assert_array_equal(model(x).detach().numpy(), model(x).detach().numpy())
    plain = LeNet5()
    plain.load_state_dict(model.state_dict())  # dropout adds no parameter
    plain.eval()
    np.testing.assert_allclose(plain(x).detach().numpy(), model(x).detach().numpy(), rtol=1e-6)


def test_bad_norm_and_dropout():
    with pytest.raises(ValueError, match="norm must be one of"):
        LeNet5(norm="group")
    with pytest.raises(ValueError, match="dropout"):
        LeNet5(dropout=1.5)
    with pytest.raises(ValueError, match="dropout"):
        LeNet5(dropout=float("nan"))


@pytest.mark.slow
@pytest.mark.parametrize("option", [["--dropout", "0.5"], ["--norm", "batch"], ["--norm", "layer"]],
                         ids=["dropout", "batch-norm", "layer-norm"])
def test_each_part_two_option_reaches_98_percent(tmp_path, option):
    """`pyfastdl train lenet` with one part-two option and the recipe's other defaults: >= 98% test accuracy."""
    import json

    from pyfastdl.cli import main

    assert main(["train", "lenet", "--device", "cpu", "--quiet", "--out", str(tmp_path), *option]) == 0
    with open(tmp_path / "metrics.json") as f:
        metrics = json.load(f)
    print(f"{option}: test accuracy {metrics['test_accuracy']:.4f}, wall time {metrics['wall_time_s']:.1f}s")
    assert metrics["test_accuracy"] >= 0.98
