"""Greedy and beam search on toy step functions whose best sequences are known."""

import numpy as np
import pytest

from pyfastdl.text import beam_search, greedy_search

BOS, EOS = 0, 1


def table_step(table):
    """A 'model' whose next-token distribution depends only on the previous token."""
    with np.errstate(divide="ignore"):  # impossible tokens get log-probability -inf
        log_table = np.log(np.asarray(table, dtype=np.float64))

    def step(tokens, state):
        return log_table[tokens[:, -1]], state

    return step


def keep_rows(state, rows):
    return state


# tokens: 0 bos, 1 eos, 2 a, 3 b. Greedy takes 'a' (0.6) then must end weakly; 'b' leads to a sure end.
TRAP = [
    [0, 0.0, 0.6, 0.4],  # after bos
    [0, 1.0, 0.0, 0.0],  # after eos (unused)
    [0, 0.3, 0.35, 0.35],  # after a: uncertain
    [0, 1.0, 0.0, 0.0],  # after b: certain end
]


def test_greedy():
    out = greedy_search(table_step(TRAP), None, 1, BOS, EOS, max_len=3)
    assert out == [[2, 2, 2]]  # 'a' then ties resolved to the first max ('a'), cut at max_len


def test_beam_finds_the_better_sequence():
    # P(b eos) = 0.4 beats P(a eos) = 0.18 and every longer 'a' sequence
    out = beam_search(table_step(TRAP), keep_rows, None, 1, BOS, EOS, max_len=5, beam_size=2, alpha=0.0)
    assert out == [[3]]


@pytest.mark.parametrize("seed", range(5))
def test_beam_one_equals_greedy(seed):
    rng = np.random.default_rng(seed)
    V = 6
    W = rng.standard_normal((V, V, V)) * 2

    def step(tokens, state):  # depends on the last two tokens, with batch-specific offsets
        prev2 = tokens[:, -2] if tokens.shape[1] > 1 else tokens[:, -1]
        logits = W[prev2, tokens[:, -1]] + state
        return logits - np.log(np.exp(logits).sum(-1, keepdims=True)), state

    offsets = rng.standard_normal((3, V))
    greedy = greedy_search(step, offsets, 3, BOS, EOS, max_len=8)
    beam = beam_search(step, lambda s, rows: s[rows], offsets, 3, BOS, EOS, max_len=8, beam_size=1)
    assert beam == greedy


def test_beam_size_validated():
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        beam_search(table_step(TRAP), keep_rows, None, 1, BOS, EOS, max_len=3, beam_size=0)
