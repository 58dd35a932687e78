"""Sampling from a language model, one token at a time, with a temperature.

The model is seen through one callback, ``step(ids, state) -> (scores, state)``: ``ids`` an
(1, t) int64 array of new tokens to read, ``state`` what the model carries between calls (None at
the start), ``scores`` the (vocab,) numpy array of unnormalised log-probabilities of the token
after them. The prime is read in one call, then each sampled token in its own.

Temperature tau divides the scores before the softmax: tau < 1 sharpens the distribution towards
the likeliest tokens (tau = 0: always the likeliest, greedy), tau > 1 flattens it. Top-k sampling
(Fan et al. 2018) draws only among the k likeliest tokens, renormalised.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample", "softmax_with_temperature"]


def softmax_with_temperature(scores, temperature: float) -> np.ndarray:
    """softmax(scores / temperature) in float64 (temperature > 0)."""
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = np.exp(z - z.max())
    return z / z.sum()


def sample(step, prime, length: int, temperature: float = 1.0, seed=None, top_k: int | None = None) -> list[int]:
    """``length`` tokens drawn after reading ``prime`` (a non-empty sequence of ids); returns them
    (without the prime). ``seed`` fixes numpy's generator for the draws; ``top_k`` (None: all)
    keeps only the k likeliest tokens at each step."""
    if temperature < 0:
        raise ValueError(f"sample: temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"sample: top_k must be >= 1 (or None), got {top_k}")
    if len(prime) == 0:
        raise ValueError("sample: the prime must hold at least one token")
    rng = np.random.default_rng(seed)
    scores, state = step(np.asarray(prime, dtype=np.int64)[None], None)
    out = []
    for _ in range(length):
        if temperature == 0:
            token = int(np.argmax(scores))
        else:
            if top_k is not None and top_k < len(scores):
                scores = np.where(scores >= np.partition(scores, -top_k)[-top_k], scores, -np.inf)
            p = softmax_with_temperature(scores, temperature)
            token = int(rng.choice(len(p), p=p))
        out.append(token)
        scores, state = step(np.array([[token]], dtype=np.int64), state)
    return out
