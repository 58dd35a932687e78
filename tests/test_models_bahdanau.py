"""Bahdanau attention (Bahdanau et al. 2015): shapes, parameter count, additive attention against
a numpy reference (weights sum to 1, zero on padding), padding, causal decoder, beam 1 = greedy, a
training step, the alignment heat map through `pyfastdl translate`, and the target (slow)."""

import json

import numpy as np
import pytest

import pyfastdl
import pyfastdl.optim  # noqa: F401  (translation_checks uses pyfastdl.optim)
from pyfastdl.models.bahdanau import AdditiveAttention, BahdanauAttention, BahdanauRecipe
import translation_checks as checks

VOCAB = 17


def small(**kw):
    pyfastdl.manual_seed(0)
    return BahdanauAttention(VOCAB, VOCAB, **dict(dict(embed_dim=6, hidden=8, attention_dim=5, dropout=0.1), **kw))


def test_shapes_and_parameter_count(rng):
    model = small()
    checks.check_shapes(model, rng, VOCAB)
    e, h, a, v = 6, 8, 5, VOCAB
    lstm = 4 * h * (e + h) + 8 * h
    expected = (2 * v * e + 2 * lstm + (h * h + h)                  # embeddings, encoder, init
                + (h * a + 2 * h * a + a + a)                         # attention W_a, U_a (+ bias), v
                + 4 * h * (e + 2 * h + h) + 8 * h                     # decoder cell
                + ((h + 2 * h + e) * h + h) + (h * v + v))            # deep output, output
    assert sum(int(np.prod(q.shape)) for q in model.parameters()) == expected


def test_additive_attention_against_numpy(rng):
    pyfastdl.manual_seed(0)
    att = AdditiveAttention(4, 6, 5)
    q, k = rng.standard_normal((3, 4)), rng.standard_normal((3, 7, 6))
    v = rng.standard_normal((3, 7, 2))
    mask = np.arange(7)[None] >= np.array([7, 3, 1])[:, None]
    with pyfastdl.no_grad():
        t = [pyfastdl.tensor(a.astype(np.float32)) for a in (q, k, v)]
        context, weights = att(t[0], att.project_keys(t[1]), t[2], pyfastdl.tensor(mask))
    W, U, b, s = (p.detach().numpy().astype(np.float64) for p in (att.query.weight, att.key.weight, att.key.bias,
                                                                    att.score.weight))
    energy = np.tanh(k @ U.T + b + (q @ W.T)[:, None]) @ s[0]
    energy[mask] = -np.inf
    ref = np.exp(energy - energy.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    np.testing.assert_allclose(weights.numpy(), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights.numpy().sum(1), 1.0, rtol=1e-6)
    assert (weights.numpy()[mask] == 0).all()
    np.testing.assert_allclose(context.numpy(), np.einsum("ns,nsd->nd", ref, v), rtol=1e-5, atol=1e-6)


def test_alignment_sums_to_one_and_ignores_padding(rng):
    checks.check_alignment(small(), rng, VOCAB)


def test_padding_and_future_are_masked(rng):
    model = small()
    checks.check_padding_is_ignored(model, rng, VOCAB)
    checks.check_causal(model, rng, VOCAB)


def test_beam_one_is_greedy(rng):
    checks.check_beam_one_is_greedy(small(), rng, VOCAB)


def test_decode_step_matches_teacher_forcing(rng):
    checks.check_decode_step_matches_teacher_forcing(small(), rng, VOCAB)


def test_step_lowers_loss(rng):
    checks.check_step_lowers_loss(small(), BahdanauRecipe(), rng, VOCAB)


def test_translate_saves_alignment_png(tmp_path, capsys):
    from pyfastdl.cli import main

    assert main(["train", "bahdanau", "--epochs", "1", "--train-size", "150", "--val-size", "8", "--test-size", "8",
                 "--embed-dim", "8", "--hidden", "8", "--attention-dim", "8", "--out", str(tmp_path), "--quiet"]) == 0
    capsys.readouterr()
    png = tmp_path / "align.png"
    assert main(["translate", str(tmp_path), "forty-two", "three hundred", "--alignment",
                 str(png)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_reaches_target(tmp_path):
    """The CLI default recipe: >= 90% exact match on held-out numbers."""
    from pyfastdl.cli import main

    assert main(["train", "bahdanau", "--out", str(tmp_path), "--quiet"]) == 0
    assert json.load(open(tmp_path / "metrics.json"))["test"]["exact_match"] >= 0.90
