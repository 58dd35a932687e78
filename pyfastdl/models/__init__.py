"""The model zoo: one file per model family, each citing its paper, with its training recipe.

Nothing is imported until it is used: ``pyfastdl.models.ResNet`` imports :mod:`pyfastdl.models.resnet`,
``pyfastdl.models.resnet18()`` that module and its recipe; the recipes are listed in
:mod:`pyfastdl.train.registry`.
"""

import importlib
import sys
import types

#: The networks' classes the package exposes, by the family module that defines them.
CLASSES = {
    "AddingLSTM": "lstm", "BahdanauAttention": "bahdanau", "BertModel": "bert", "CharLSTM": "lstm",
    "CifarResNet": "resnet", "ConvS2S": "convs2s", "FCN": "fcn", "GPT": "gpt", "LeNet5": "lenet", "NIN": "nin",
    "ReberLSTM": "lstm", "ResNet": "resnet", "Seq2Seq": "seq2seq", "Transformer": "transformer", "YOLOv1": "yolo",
}

# ---- the zoo's front door, with torchvision's names: get_model, list_models, one constructor per architecture


def list_models() -> list[str]:
    """The names of every model ``pyfastdl train`` lists, sorted; :func:`get_model` builds each."""
    from ..train.registry import list_recipe_names

    return list_recipe_names()


def _recipe_args(name: str, overrides: dict):
    """The recipe ``name`` and the arguments ``pyfastdl train NAME`` would run with, ``overrides``
    (option names as in the command line, with ``_`` for ``-``) replacing the defaults."""
    from ..train.command import train_parser
    from ..train.registry import get_recipe

    recipe = get_recipe(name)
    args = train_parser(name).parse_args([name])
    options = {k for k in vars(args) if k != "model"}
    unknown = sorted(set(overrides) - options)
    if unknown:
        raise TypeError(f"get_model({name!r}): unknown option(s) {unknown}; {name} takes {sorted(options)}")
    for key, value in overrides.items():
        setattr(args, key, value)
    for key, value in recipe.default_hparams(args).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return recipe, args


def get_model(name: str, **options):
    """The untrained model ``pyfastdl train NAME`` would train, built with that command's defaults;
    keyword ``options`` set its options (``get_model("lenet", norm="batch")`` is
    ``pyfastdl train lenet --norm batch``'s network). Weights follow ``pyfastdl.manual_seed``."""
    recipe, args = _recipe_args(name, options)
    return recipe.build_model(args)


# One constructor per architecture, as torchvision has them (``models.resnet18()``): the name that
# `pyfastdl train` lists with "-" as "_". Where a family module and its constructor share a name
# (lenet, transformer, seq2seq, ...), the constructor is what the package exposes; the module stays
# importable as ``pyfastdl.models.<name>`` through the import statement. Task recipes that are not
# architectures of their own (lstm-adding, lstm-reber, char-lm, ...) are reached with get_model only.
ARCHITECTURES = (
    "lenet", "nin", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet20", "resnet32",
    "resnet44", "resnet56", "resnet110", "fcn8s", "fcn16s", "fcn32s", "yolov1", "yolov1-paper", "fast-yolo",
    "seq2seq", "bahdanau", "convs2s", "transformer", "transformer-base", "gpt", "bert",
)


def _constructor(name: str):
    def build(**options):
        return get_model(name, **options)

    build.__name__ = build.__qualname__ = name.replace("-", "_")
    build.__doc__ = (f"The untrained {name} of `pyfastdl train {name}` (its defaults; keyword options as in "
                     f"the command line): ``get_model({name!r}, **options)``.")
    return build


for _name in ARCHITECTURES:
    globals()[_name.replace("-", "_")] = _constructor(_name)


class _Zoo(types.ModuleType):
    """This package's type: importing a family module (``pyfastdl.models.lenet``, on first use) makes
    Python set it as the package's attribute of that name, which would hide the constructor
    ``lenet()``; the constructor stays (the module is in ``sys.modules``, for ``from ... import``)."""

    def __setattr__(self, name, value):
        if not (isinstance(value, types.ModuleType) and isinstance(self.__dict__.get(name), types.FunctionType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Zoo


def __getattr__(name):
    """A network's class (``pyfastdl.models.ResNet``), or a family module not imported yet
    (``pyfastdl.models.resnet``... where no constructor has that name), on first use."""
    if name in CLASSES:
        return getattr(importlib.import_module(f".{CLASSES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["get_model", "list_models", *(n.replace("-", "_") for n in ARCHITECTURES), *sorted(CLASSES)]
