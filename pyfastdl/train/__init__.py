"""The shared training loop, the recipe registry, metrics and plots.

Every model trains through :func:`fit`; a model contributes a :class:`Recipe` (model, datasets,
loss, metrics, default hyper-parameters) registered under its name.
"""

from .loop import evaluate, evaluate_checkpoint, fit, predict_checkpoint, run_epoch
from .metrics import Accuracy, Mean, Metric
from .plots import plot_history
from .recipe import HPARAMS, ClassificationRecipe, Recipe, get_recipe, list_recipes, register_recipe

__all__ = [
    "evaluate", "evaluate_checkpoint", "fit", "predict_checkpoint", "run_epoch", "Accuracy", "Mean", "Metric",
    "plot_history", "HPARAMS", "ClassificationRecipe", "Recipe", "get_recipe", "list_recipes", "register_recipe",
]
