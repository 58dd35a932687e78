"""Recipes: what a model brings to the shared training loop, and the registry of them.

A recipe names a model and gives the loop everything model-specific -- how to build the network,
which datasets, the loss, the metrics, default hyper-parameters -- so that every model trains with
the one loop in :mod:`pyfastdl.train.loop`. ``pyfastdl train <name>`` looks the recipe up here.

A batch is what the DataLoader yields (the recipe may give a ``collate_fn``); ``split_batch``
divides it into the model's inputs and the target the loss and metrics compare against. That is
the whole contract, so image classification (inputs ``(x,)``, target labels), segmentation
(target masks), detection (ragged box lists via ``collate_fn``) and sequence-to-sequence (inputs
``(source, target_in)``, target ``target_out``) all fit it.
"""

from __future__ import annotations

import argparse

import numpy as np

from .metrics import Accuracy, Metric

__all__ = ["Recipe", "ClassificationRecipe", "register_recipe", "get_recipe", "list_recipes", "HPARAMS"]

#: The hyper-parameters every recipe gives defaults for (the shared command-line flags).
HPARAMS = ("epochs", "batch_size", "lr", "optimizer", "weight_decay", "momentum", "schedule", "threads")


class Recipe:
    """Base class. Subclasses set ``name`` and implement the methods marked below."""

    #: registry key, e.g. ``"lenet"`` (``pyfastdl train lenet``)
    name: str = ""
    #: one line for ``pyfastdl train --help``
    description: str = ""
    #: the metric that summarises a run (plotted beside the loss; reported for the test set)
    main_metric: str = "accuracy"
    #: turns a list of samples into a batch; ``None`` means :func:`pyfastdl.data.default_collate`
    collate_fn = None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the recipe's own flags (dataset, architecture switches) to ``parser``."""

    def default_hparams(self, args: argparse.Namespace) -> dict:
        """Defaults for every name in :data:`HPARAMS`, possibly depending on ``args`` (e.g. the
        dataset); the command line overrides them. ``threads``: CPU threads for the kernels during
        the run (``None``: the library's setting)."""
        raise NotImplementedError

    def build_model(self, args: argparse.Namespace):
        """A fresh :class:`pyfastdl.nn.Module` (parameters initialised from pyfastdl's seed)."""
        raise NotImplementedError

    def datasets(self, args: argparse.Namespace) -> dict:
        """``{"train": Dataset, "val": Dataset, "test": Dataset}``. Training-time augmentation is
        part of the train dataset, seeded from ``args.seed``."""
        raise NotImplementedError

    def split_batch(self, batch) -> tuple[tuple, object]:
        """``(inputs, target)``: the arrays passed to the model (as a tuple) and the target. The
        default treats the last field of the batch as the target and the others as inputs."""
        return tuple(batch[:-1]), batch[-1]

    def loss_fn(self, output, target):
        """Scalar loss Tensor from the model's output and the target Tensor."""
        raise NotImplementedError

    def metrics(self) -> dict[str, Metric]:
        """Fresh metric objects, by name; the loop updates them with numpy arrays."""
        raise NotImplementedError

    def evaluate_model(self, model, dataset, device: str, batch_size: int, args) -> dict:
        """Metrics that need the model itself rather than its batch outputs (e.g. the accuracy of
        decoding whole sentences), by name; merged into every validation and test result. ``args``
        may be ``None`` (a caller without a command line). None by default."""
        return {}

    def checkpoint_metadata(self, args: argparse.Namespace) -> dict:
        """Extra JSON-serialisable entries for the checkpoint's metadata (e.g. vocabularies), stored
        beside ``recipe``/``args``/``test``. None by default."""
        return {}

    def restore_metadata(self, args: argparse.Namespace, metadata: dict) -> None:
        """Put what :meth:`checkpoint_metadata` saved back onto ``args`` before the model is rebuilt."""

    def predict(self, output: np.ndarray) -> np.ndarray:
        """Turn raw model outputs (numpy) into predictions, for ``pyfastdl predict``."""
        raise NotImplementedError

    def predictions(self, model, args: argparse.Namespace, inputs: list[str], count: int, out_dir: str) -> list[dict]:
        """What ``pyfastdl predict`` reports, one JSON-serialisable dict per input with keys ``input``
        and ``prediction`` (and ``target`` where known): for the ``inputs`` the user names (read by
        :meth:`load_inputs`), or else for the first ``count`` test samples. By default the model's
        output for them, turned into rows by :meth:`prediction_rows`; a recipe whose prediction is
        not one forward pass (decoding a translation, continuing a text) replaces this method."""
        from .loop import first_test_samples, predict_batch

        if inputs:
            x = self.load_inputs(inputs, args)
            n = len(x[0] if isinstance(x, tuple) else x)
            names = list(inputs) if n == len(inputs) else [f"input[{i}]" for i in range(n)]
            targets = [None] * n
        else:
            x, target = first_test_samples(self, args, count)
            n = len(x[0] if isinstance(x, tuple) else x)
            names, targets = [f"test[{i}]" for i in range(n)], list(target)
        output = predict_batch(model, x, args.device)
        return self.prediction_rows(x, output, names, targets, args, out_dir)

    def load_inputs(self, paths: list[str], args: argparse.Namespace):
        """Read what the user names (files, or text) into one batch of model inputs (an array, or a
        tuple of arrays for a model of several inputs), for ``pyfastdl predict``."""
        raise ValueError(f"predict: {self.name} predicts its test samples only (give no inputs)")

    def prediction_rows(self, inputs, output: np.ndarray, names: list, targets: list,
                        args: argparse.Namespace, out_dir: str) -> list[dict]:
        """The rows of :meth:`predictions` from the batch given to the model (``inputs``) and its numpy
        ``output``: by default the class id from :meth:`predict` with its name (``label``) and the
        ``target`` where known. A recipe may also write pictures into ``out_dir``."""
        labels = self.class_names(args) if hasattr(self, "class_names") else ()
        predictions = self.predict(output)
        if len(predictions) != len(names):
            raise ValueError(f"predict: {self.name} gives {len(predictions)} predictions for {len(names)} inputs; "
                             "its recipe must say how to report them (prediction_rows)")
        rows = []
        for name, p, t in zip(names, predictions, targets):
            row = {"input": name, "prediction": int(p)}
            if labels:
                row["label"] = labels[int(p)]
            if t is not None:
                row["target"] = int(t)
            rows.append(row)
        return rows

    def after_fit(self, model, datasets: dict, args: argparse.Namespace, device: str) -> None:
        """Called by :func:`pyfastdl.train.fit` after the run's record is written, with the trained
        model, the datasets by split and the device: a recipe may write extra pictures into
        ``args.out`` (e.g. predicted masks). Nothing by default."""


class ClassificationRecipe(Recipe):
    """A model that maps inputs to class scores: cross-entropy loss, accuracy, argmax prediction."""

    main_metric = "accuracy"

    def class_names(self, args: argparse.Namespace) -> tuple:
        """Names of the classes, index -> name, printed by ``pyfastdl predict`` (none by default)."""
        return ()

    def loss_fn(self, output, target):
        from ..nn import functional as F

        return F.cross_entropy(output, target)

    def metrics(self) -> dict[str, Metric]:
        return {"accuracy": Accuracy()}

    def predict(self, output: np.ndarray) -> np.ndarray:
        return output.argmax(axis=1)


_RECIPES: dict[str, Recipe] = {}


def register_recipe(recipe: Recipe) -> Recipe:
    """Add ``recipe`` to the registry under ``recipe.name`` (a second recipe of that name is an error)."""
    if not recipe.name:
        raise ValueError("register_recipe: the recipe has no name")
    if recipe.name in _RECIPES and type(_RECIPES[recipe.name]) is not type(recipe):
        raise ValueError(f"register_recipe: a recipe named {recipe.name!r} is already registered")
    _RECIPES[recipe.name] = recipe
    return recipe


def list_recipes() -> dict[str, Recipe]:
    """All registered recipes by name (importing :mod:`pyfastdl.models` registers the built-in ones)."""
    from .. import models  # noqa: F401  (registers the models' recipes)

    return dict(sorted(_RECIPES.items()))


def get_recipe(name: str) -> Recipe:
    recipes = list_recipes()
    if name not in recipes:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(recipes) or 'none'}")
    return recipes[name]
