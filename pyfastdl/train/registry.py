"""The list of every recipe ``pyfastdl train`` knows, by name, and where each one lives.

:data:`RECIPES` maps a recipe's name (``pyfastdl train NAME``; the ``recipe`` a checkpoint names) to
``"module:Class"``. A recipe is imported when it is first asked for, so ``pyfastdl train lenet``
imports LeNet-5's module alone, and the training loop never imports the model zoo. A class that
serves several names (the ResNets, the FCNs, the YOLOs) is built with the name (``Class(name)``);
the others take no argument. A recipe of your own, from your own code: :func:`register_recipe`.
"""

from __future__ import annotations

import importlib

__all__ = ["RECIPES", "get_recipe", "list_recipes", "list_recipe_names", "register_recipe"]

RECIPES = {
    "lenet": "pyfastdl.models.lenet:LeNetRecipe",
    "nin": "pyfastdl.models.nin:NINRecipe",
    **{f"resnet{depth}": "pyfastdl.models.resnet:ResNetRecipe"
       for depth in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110)},
    **{f"fcn{stride}s": "pyfastdl.models.fcn:FCNRecipe" for stride in (32, 16, 8)},
    **{name: "pyfastdl.models.yolo:YOLORecipe" for name in ("yolov1", "yolov1-paper", "fast-yolo")},
    "lstm-adding": "pyfastdl.models.lstm:AddingRecipe",
    "lstm-reber": "pyfastdl.models.lstm:ReberRecipe",
    "char-lm": "pyfastdl.models.lstm:CharLMRecipe",
    "seq2seq": "pyfastdl.models.seq2seq:Seq2SeqRecipe",
    "bahdanau": "pyfastdl.models.bahdanau:BahdanauRecipe",
    "convs2s": "pyfastdl.models.convs2s:ConvS2SRecipe",
    "transformer": "pyfastdl.models.transformer:TransformerRecipe",
    "transformer-base": "pyfastdl.models.transformer:TransformerBaseRecipe",
    "gpt": "pyfastdl.models.gpt:GPTRecipe",
    "bert": "pyfastdl.models.bert:BertRecipe",
    "bert-finetune": "pyfastdl.models.bert:BertFinetuneRecipe",
}

_loaded: dict = {}  # name -> the recipe object, built on first use (user recipes: put here by register_recipe)


def _load(name: str):
    module, _, cls_name = RECIPES[name].partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    recipe = cls() if getattr(cls, "name", "") else cls(name)
    if recipe.name != name:
        raise RuntimeError(f"recipe table: {RECIPES[name]} is named {recipe.name!r}, listed as {name!r}")
    return recipe


def get_recipe(name: str):
    """The recipe named ``name`` (importing its module on first use)."""
    if name not in _loaded:
        if name not in RECIPES:
            raise ValueError(f"unknown model {name!r}; registered: {', '.join(list_recipe_names())}")
        _loaded[name] = _load(name)
    return _loaded[name]


def list_recipe_names() -> list[str]:
    """Every recipe's name, sorted (importing nothing)."""
    return sorted({*RECIPES, *_loaded})


def list_recipes() -> dict:
    """Every recipe by name, sorted (this imports every model family)."""
    return {name: get_recipe(name) for name in list_recipe_names()}


def register_recipe(recipe):
    """Add a recipe of your own (an instance, with its ``name``) beside the built-in ones, for
    :func:`get_recipe`, :func:`pyfastdl.train.fit` and checkpoints; a built-in name is an error."""
    if not recipe.name:
        raise ValueError("register_recipe: the recipe has no name")
    if recipe.name in RECIPES or (recipe.name in _loaded and type(_loaded[recipe.name]) is not type(recipe)):
        raise ValueError(f"register_recipe: a recipe named {recipe.name!r} is already registered")
    _loaded[recipe.name] = recipe
    return recipe
