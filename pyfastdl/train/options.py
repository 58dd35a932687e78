"""The command line's shared vocabulary: every option that more than one recipe (or command) has is
defined here, once, so the same name means the same thing everywhere.

A recipe adds the shared options it has with :func:`add_option` (``add_option(parser, "hidden", 128,
"LSTM units per layer")``): the flag, its type, its choices and its old spellings come from
:data:`VOCABULARY`; the recipe gives the default and says what the option means in its model.
Every option's help ends with its default. The vocabulary:

* data: ``--train-size``/``--val-size``/``--test-size`` (samples generated or taken per split),
  ``--image-size`` (side of the square input images), ``--seq-len`` (steps or tokens per sequence);
* architecture: ``--embed-dim`` (embedding width), ``--hidden`` (units or channels of the hidden
  layers), ``--width-mult`` (a multiplier of the paper's widths), ``--layers``, ``--heads``,
  ``--d-model``, ``--d-ff``, ``--norm none|batch|layer``, ``--dropout``;
* commands: ``--device``, and the checkpoint as a positional argument (:func:`add_checkpoint`).

Old spellings (``--n-train``, ``--train-samples``, ``--size``, ``--embedding``, ``--width``,
``--fc-width``, ``--batch-norm on|off``, ``--[no-]batch-norm``) still parse, hidden from the help,
with a warning naming the new one; :func:`upgrade_args` renames them in the options a checkpoint
written before the change saved.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

__all__ = ["VOCABULARY", "NORMS", "add_option", "add_alias", "add_checkpoint", "add_device", "upgrade_args",
           "HelpFormatter"]

#: the normalisation layers a recipe may offer (``--norm``): none, batch norm, layer norm
NORMS = ("none", "batch", "layer")


@dataclass(frozen=True)
class Option:
    flag: str
    type: type
    help: str  # what the option is, in general; the recipe adds what it is in its model
    aliases: tuple = ()  # old spellings, hidden and deprecated
    least: int | None = None  # a whole-number option's smallest value (train's check_arguments)


VOCABULARY = {
    "train_size": Option("--train-size", int, "training samples", ("--n-train", "--train-samples"), 1),
    "val_size": Option("--val-size", int, "validation samples", ("--n-val",), 0),
    "test_size": Option("--test-size", int, "test samples", ("--n-test",), 0),
    "image_size": Option("--image-size", int, "side of the square input images, pixels", ("--size",), 1),
    "seq_len": Option("--seq-len", int, "sequence length", least=1),
    "embed_dim": Option("--embed-dim", int, "embedding width", ("--embedding",), 1),
    "hidden": Option("--hidden", int, "units of the hidden layers", least=1),
    "width_mult": Option("--width-mult", float, "multiplier of every hidden width (1: the paper's)", ("--width",)),
    "layers": Option("--layers", int, "layers", least=1),
    "heads": Option("--heads", int, "attention heads", least=1),
    "d_model": Option("--d-model", int, "model width", least=1),
    "d_ff": Option("--d-ff", int, "feed-forward width", least=1),
    "norm": Option("--norm", str, "normalisation: none, batch (Ioffe & Szegedy 2015) or layer (Ba et al. 2016)"),
    "dropout": Option("--dropout", float, "dropout probability"),
}

#: option names of checkpoints written before the shared vocabulary -> today's
_RENAMED = {"n_train": "train_size", "train_samples": "train_size", "n_val": "val_size", "n_test": "test_size",
            "size": "image_size", "embedding": "embed_dim", "width": "width_mult", "fc_width": "hidden"}


def _warn(old: str, new: str) -> None:
    print(f"pyfastdl: warning: {old} is deprecated, use {new}", file=sys.stderr)


class _Alias(argparse.Action):
    """A deprecated spelling: warns, then sets the option it stands for (through ``convert``)."""

    def __init__(self, option_strings, dest, new_flag, convert=None, **kwargs):
        self.new_flag, self.convert = new_flag, convert
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        _warn(option_string, self.new_flag)
        setattr(namespace, self.dest, self.convert(option_string, values) if self.convert else values)


def _batch_norm(option_string: str, value) -> str:
    return "batch" if option_string == "--batch-norm" and value == "on" else "none"


def add_option(parser, name: str, default, help: str | None = None, choices=None) -> None:
    """Add the shared option ``name`` (a key of :data:`VOCABULARY`) to ``parser`` with ``default``;
    ``help`` says what it is in this recipe (default: the vocabulary's general words), ``choices``
    restricts its values (``norm``: default :data:`NORMS`)."""
    option = VOCABULARY[name]
    if name == "norm":
        choices = choices or NORMS
    text = help or option.help
    shown = "none" if default is None else default
    parser.add_argument(option.flag, type=option.type, default=default, choices=choices,
                        help=f"{text} (default {shown})")
    for alias in option.aliases:
        add_alias(parser, alias, name)
    if name == "norm" and "batch" in choices:
        parser.add_argument("--batch-norm", dest=name, nargs="?", const="on", choices=("on", "off"), action=_Alias,
                            new_flag="--norm", convert=_batch_norm)
        parser.add_argument("--no-batch-norm", dest=name, nargs=0, action=_Alias, new_flag="--norm none",
                            convert=_batch_norm)


def add_alias(parser, old_flag: str, name: str) -> None:
    """A hidden, deprecated spelling ``old_flag`` of the shared option ``name`` (which warns)."""
    option = VOCABULARY[name]
    parser.add_argument(old_flag, dest=name, type=option.type, action=_Alias, new_flag=option.flag)


def add_checkpoint(parser, what: str = "") -> None:
    """The checkpoint, positional in every command (``eval``, ``predict``, ``translate``, ``sample``)."""
    parser.add_argument("checkpoint", metavar="RUN",
                        help=f"a {what + ' ' if what else ''}run directory written by `pyfastdl train`, "
                             "or its checkpoint.safetensors")


def add_device(parser) -> None:
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto",
                        help="auto (default): cuda where a GPU and the CUDA kernels are present")


def upgrade_args(saved: dict) -> dict:
    """The options a checkpoint saved, with the names of before the shared vocabulary renamed to
    today's (``n_train`` -> ``train_size``, ``batch_norm`` on/off -> ``norm`` batch/none, ...)."""
    args = dict(saved)
    if "n_test" in args and "n_val" not in args:  # the LSTM tasks' --n-test sized validation and test
        args.setdefault("val_size", args["n_test"])
    for old, new in _RENAMED.items():
        if old in args:
            args.setdefault(new, args.pop(old))
    if "batch_norm" in args:
        args.setdefault("norm", "batch" if args.pop("batch_norm") in (True, "on") else "none")
    return args


class HelpFormatter(argparse.HelpFormatter):
    """Help that ends with the default of every option that has one and does not say it already."""

    def _get_help_string(self, action):
        text = (action.help or "").replace(" (default: %(default)s)", "")  # Python 3.11's BooleanOptionalAction
        default = action.default
        if (default is None or default is argparse.SUPPRESS or isinstance(action, argparse._HelpAction)
                or "default" in text or not action.option_strings):
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                               argparse.BooleanOptionalAction)):
            default = "on" if default else "off"
        return f"{text} (default {default})"
