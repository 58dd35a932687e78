"""Language modelling: the recipe base and its metric.

* :class:`LanguageModelRecipe` -- a model that reads a window of tokens and scores the next token
  at every position (char-lm; GPT): output (N, T, V) scores, target (N, T) the window shifted by
  one; the loss is the mean next-token cross-entropy, the metric :class:`Perplexity`, the
  prediction the likeliest next token. A model's recipe adds its data (windows of its text), its
  network and how ``pyfastdl predict`` continues a text.
* :class:`Perplexity` -- exp of the mean next-token cross-entropy over an epoch.

Sampling continuations is decoding, shared with the translators: :mod:`pyfastdl.text.sampling`.
"""

from __future__ import annotations

import math

import numpy as np

from ..nn import functional as F
from ..train.metrics import Metric
from ..train.recipe import Recipe

__all__ = ["LanguageModelRecipe", "Perplexity"]


class Perplexity(Metric):
    """exp(mean next-token cross-entropy): output (N, T, V) scores, target (N, T) ids."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.nll, self.count = 0.0, 0

    def update(self, output, target):
        z = np.asarray(output, np.float64)
        z = z - z.max(-1, keepdims=True)
        log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
        self.nll -= float(np.take_along_axis(log_probs, target[..., None], -1).sum())
        self.count += target.size

    def compute(self):
        return math.exp(self.nll / self.count) if self.count else float("nan")


class LanguageModelRecipe(Recipe):
    """Base recipe for next-token models: cross-entropy over every position, perplexity, argmax."""

    main_metric = "perplexity"

    def loss_fn(self, output, target):
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))

    def metrics(self) -> dict:
        return {"perplexity": Perplexity()}

    def predict(self, output):
        return output.argmax(-1)
