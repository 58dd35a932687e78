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
