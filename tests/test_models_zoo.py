"""The model zoo's front door, with torchvision's conventions: list_models() is exactly what
`pyfastdl train` lists, get_model(name) builds each of them, pyfastdl.models.<name>() exists for every
architecture, and options are the command line's."""

import numpy as np
import pytest

import pyfastdl
from pyfastdl.cli import build_parser

CHEAP = ["lenet", "nin", "resnet20", "fcn8s", "char-lm", "lstm-adding", "lstm-reber", "yolov1"]


def n_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


def train_choices():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    return sorted(train._subparsers._group_actions[0].choices)


def test_list_models_is_what_train_lists():
    assert pyfastdl.models.list_models() == train_choices()


def test_models_after_a_plain_import():
    import subprocess
    import sys

    code = "import pyfastdl; print(type(pyfastdl.models.resnet20()).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "CifarResNet"


def test_a_constructor_for_every_architecture():
    models = pyfastdl.models
    for name in models.ARCHITECTURES:
        if name in models.list_models():
            fn = getattr(models, name.replace("-", "_"))
            assert callable(fn) and fn.__name__ == name.replace("-", "_") and name in fn.__doc__
    for name in ("lenet", "nin", "resnet18", "resnet110", "fcn8s", "yolov1", "seq2seq", "bahdanau", "convs2s",
                 "transformer"):
        assert name in models.__all__


def test_family_modules_do_not_hide_the_constructors():
    import importlib
    import sys

    models = pyfastdl.models
    module = importlib.import_module("pyfastdl.models.lenet")  # as get_recipe("lenet") imports it
    assert models.lenet is not module and callable(models.lenet) and models.lenet.__name__ == "lenet"
    assert models.LeNet5 is module.LeNet5 and sys.modules["pyfastdl.models.lenet"] is module
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        models.nope


@pytest.mark.parametrize("name", CHEAP)
def test_get_model_builds_the_trained_network(name):
    from pyfastdl.models import _recipe_args

    pyfastdl.manual_seed(0)
    model = pyfastdl.models.get_model(name)
    recipe, args = _recipe_args(name, {})
    pyfastdl.manual_seed(0)
    same = recipe.build_model(args)
    assert type(model) is type(same) and n_params(model) == n_params(same) > 0
    for p, q in zip(model.parameters(), same.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_options_are_the_command_lines():
    models = pyfastdl.models
    assert n_params(models.lenet()) == 61_706
    assert n_params(models.lenet(norm="batch")) == 61_706 + 6 + 16 + 120 + 84
    assert type(models.get_model("resnet20")).__name__ == "CifarResNet"
    assert type(models.resnet18()).__name__ == "ResNet"
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['nrom'\].*'norm'"):
        models.get_model("lenet", nrom="batch")
    with pytest.raises(ValueError, match="unknown model 'lenett'"):
        models.get_model("lenett")


@pytest.mark.slow
def test_get_model_builds_every_listed_model():
    for name in pyfastdl.models.list_models():
        assert n_params(pyfastdl.models.get_model(name)) > 0, name
