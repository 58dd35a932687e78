"""The model zoo: one file per model family; importing it registers each model's training recipe."""

from .fcn import FCN  # noqa: F401  (registers fcn32s, fcn16s, fcn8s)
from .lenet import LeNet5  # noqa: F401  (registers the "lenet" recipe)
from .yolo import YOLOv1  # noqa: F401  (registers "yolov1", "yolov1-paper", "fast-yolo")
from .transformer import Transformer  # noqa: F401,E402  (registers "transformer", "transformer-base")
from .convs2s import ConvS2S  # noqa: F401,E402  (registers "convs2s")
from .lstm import AddingLSTM, CharLSTM, ReberLSTM  # noqa: F401,E402  (registers "lstm-adding", "lstm-reber", "char-lm")
from .seq2seq import Seq2Seq  # noqa: F401,E402  (registers "seq2seq")
from .bahdanau import BahdanauAttention  # noqa: F401,E402  (registers "bahdanau")
from .nin import NIN  # noqa: F401  (registers "nin")
from .resnet import CifarResNet, ResNet  # noqa: F401  (registers resnet18..152 and resnet20..110)
from .gpt import GPT  # noqa: F401,E402  (registers "gpt")
from .bert import BertModel  # noqa: F401,E402  (registers "bert", "bert-finetune")

# ---- the zoo's front door, with torchvision's names: get_model, list_models, one constructor per architecture


def list_models() -> list[str]:
    """The names of every model ``pyfastdl train`` lists, sorted; :func:`get_model` builds each."""
    from ..train.recipe import list_recipes

    return list(list_recipes())


def _recipe_args(name: str, overrides: dict):
    """The recipe ``name`` and the arguments ``pyfastdl train NAME`` would run with, ``overrides``
    (option names as in the command line, with ``_`` for ``-``) replacing the defaults."""
    from ..cli import build_parser
    from ..train.recipe import get_recipe

    recipe = get_recipe(name)
    args = build_parser().parse_args(["train", name])
    options = {k for k in vars(args) if k not in ("func", "model", "command")}
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


def _add_constructors() -> list[str]:
    names = [n for n in ARCHITECTURES if n in list_models()]
    for n in names:
        globals()[n.replace("-", "_")] = _constructor(n)
    return [n.replace("-", "_") for n in names]


__all__ = ["get_model", "list_models", *_add_constructors(), "AddingLSTM", "BahdanauAttention", "CharLSTM",
           "BertModel", "CifarResNet", "ConvS2S", "FCN", "GPT", "LeNet5", "NIN", "ReberLSTM", "ResNet", "Seq2Seq", "Transformer", "YOLOv1"]
