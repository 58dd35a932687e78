"""The shared training loop, the recipe list, metrics and plots.

Every model trains through :func:`fit`; a model contributes a :class:`Recipe` (model, datasets,
loss, metrics, default hyper-parameters), listed under its name in :mod:`pyfastdl.train.registry`.
The recipe bases of the tasks (classification, ...) are in :mod:`pyfastdl.tasks`.
"""

from .loop import evaluate, evaluate_checkpoint, fit, predict_checkpoint, run_epoch
from .metrics import Mean, Metric
from .plots import plot_history
from .recipe import HPARAMS, Recipe
from .registry import get_recipe, list_recipes, register_recipe

__all__ = [
    "evaluate", "evaluate_checkpoint", "fit", "predict_checkpoint", "run_epoch", "Mean", "Metric",
    "plot_history", "HPARAMS", "Recipe", "get_recipe", "list_recipes", "register_recipe",
]
