"""Seq2seq (Sutskever et al. 2014): shapes, parameter count, source reversal, padding, causal
decoder, beam 1 = greedy, a training step, and the training target (slow)."""

import numpy as np
import pytest

import pyfastdl
import pyfastdl.optim  # noqa: F401  (translation_checks uses pyfastdl.optim)
from pyfastdl.models.seq2seq import Seq2Seq, Seq2SeqRecipe, reverse_source
import translation_checks as checks

VOCAB = 17


def small(**kw):
    pyfastdl.manual_seed(0)
    return Seq2Seq(VOCAB, VOCAB, **dict(dict(embed_dim=6, hidden=8, num_layers=2, dropout=0.1), **kw))


def lstm_params(i, h):
    return 4 * h * (i + h) + 8 * h


def test_shapes_and_parameter_count(rng):
    model = small()
    checks.check_shapes(model, rng, VOCAB)
    e, h, v = 6, 8, VOCAB
    expected = 2 * v * e + 2 * (lstm_params(e, h) + lstm_params(h, h)) + h * v + v
    assert sum(int(np.prod(q.shape)) for q in model.parameters()) == expected


def test_reverse_source():
    src = np.array([[5, 6, 7, 2, 0], [8, 2, 0, 0, 0], [4, 5, 6, 7, 2]])
    out = reverse_source(pyfastdl.tensor(src), pyfastdl.tensor(np.array([4, 2, 5]))).numpy()
    np.testing.assert_array_equal(out, [[7, 6, 5, 2, 0], [8, 2, 0, 0, 0], [7, 6, 5, 4, 2]])


def test_reversal_changes_the_encoding(rng):
    src, lengths, tgt_in, _ = checks.random_batch(rng, VOCAB)
    forward, reverse = small(reverse=False), small(reverse=True)
    assert not np.allclose(checks.logits(forward, src, lengths, tgt_in), checks.logits(reverse, src, lengths, tgt_in))


def test_padding_and_future_are_masked(rng):
    for reverse in (True, False):
        model = small(reverse=reverse)
        checks.check_padding_is_ignored(model, rng, VOCAB)
        checks.check_causal(model, rng, VOCAB)


def test_beam_one_is_greedy(rng):
    checks.check_beam_one_is_greedy(small(), rng, VOCAB)


def test_decode_step_matches_teacher_forcing(rng):
    checks.check_decode_step_matches_teacher_forcing(small(), rng, VOCAB)


def test_step_lowers_loss(rng):
    checks.check_step_lowers_loss(small(), Seq2SeqRecipe(), rng, VOCAB)


@pytest.mark.slow
def test_reaches_target(tmp_path):
    """The CLI default recipe: >= 70% exact match on held-out numbers."""
    import json

    from pyfastdl.cli import main

    assert main(["train", "seq2seq", "--out", str(tmp_path), "--quiet"]) == 0
    assert json.load(open(tmp_path / "metrics.json"))["test"]["exact_match"] >= 0.70
