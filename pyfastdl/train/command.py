"""The parser of ``pyfastdl train MODEL``: the training options every recipe shares, then the recipe's own.

:func:`add_train_parser` adds one recipe's sub-command to the command line (:mod:`pyfastdl.cli`);
:func:`train_parser` is the same parser alone, for code that needs the options ``pyfastdl train
MODEL`` would run with (:func:`pyfastdl.models.get_model`, the sweep's check of its commands).
"""

from __future__ import annotations

import argparse

from .loop import OPTIMIZERS, SCHEDULES
from .options import HelpFormatter, add_device
from .registry import get_recipe

__all__ = ["add_train_parser", "train_parser", "TRAIN_DEFAULTS"]

#: Each train sub-command's option defaults, by model: on --resume, an option still at its default
#: was not given, so the run's own value stands.
TRAIN_DEFAULTS: dict[str, dict] = {}


def add_train_parser(sub, recipe) -> argparse.ArgumentParser:
    """Add ``recipe``'s sub-command to ``sub`` (an argparse sub-parsers object) and return it; the
    parsed arguments carry ``model`` (the recipe's name)."""
    p = sub.add_parser(recipe.name, help=recipe.description, description=recipe.description,
                       formatter_class=HelpFormatter)
    g = p.add_argument_group("training (the recipe's defaults; some depend on --dataset)")
    add_device(g)
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float, help="(peak) learning rate")
    g.add_argument("--optimizer", choices=OPTIMIZERS)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--momentum", type=float, help="SGD momentum (Nesterov)")
    g.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule, stepped every batch")
    g.add_argument("--seed", type=int, default=0, help="fixes initialisation, shuffling and augmentation")
    g.add_argument("--out", help="output directory (default runs/<model>)")
    g.add_argument("--limit", type=int, help="use at most this many samples of each split (smoke tests)")
    g.add_argument("--threads", type=int, help="CPU threads for the kernels during the run")
    g.add_argument("--quiet", action="store_true", help="no progress bar (one line per epoch)")
    g.add_argument("--distributed", action="store_true",
                   help="data parallel over the ranks of an MPI launcher (found by itself under mpiexec -n N; "
                        "--batch-size stays the global batch)")
    g.add_argument("--resume", metavar="DIR",
                   help="continue the run saved in DIR (its folder or checkpoint) with its own options, to the "
                        "weights it would have reached uninterrupted (Ctrl-C or SIGTERM during a run saves a "
                        "checkpoint at the next step)")
    recipe.add_arguments(p.add_argument_group(f"{recipe.name}"))
    p.set_defaults(model=recipe.name)
    parsed_defaults = p.parse_args([])
    TRAIN_DEFAULTS[recipe.name] = vars(parsed_defaults)
    defaults = recipe.default_hparams(parsed_defaults)
    for action in g._group_actions:  # the recipe's default of each training option, in its help
        if defaults.get(action.dest) is not None:
            action.help = f"{action.help + ' ' if action.help else ''}(default {defaults[action.dest]})"
    return p


def train_parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``pyfastdl train NAME ...`` for the one recipe ``name``: it parses
    ``[name, *options]``."""
    parser = argparse.ArgumentParser(prog="pyfastdl train", formatter_class=HelpFormatter)
    add_train_parser(parser.add_subparsers(dest="model", required=True, metavar="MODEL"), get_recipe(name))
    return parser
