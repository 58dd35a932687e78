"""ConvS2S: shapes, parameter count, masks (source padding, causal decoder convolutions), beam 1
= greedy, a training step, attention weights."""

import numpy as np
import pytest

import pyfastdl
from pyfastdl.models.convs2s import ConvGLU, ConvS2S, ConvS2SRecipe
import translation_checks as checks

VOCAB = 19


def small(**kw):
    pyfastdl.manual_seed(0)
    return ConvS2S(VOCAB, VOCAB, **dict(dict(embed_dim=12, hidden=10, encoder_layers=2, decoder_layers=3,
                                             kernel_size=3, dropout=0.1, max_positions=32), **kw))


def test_shapes_and_parameter_count(rng):
    model = small()
    checks.check_shapes(model, rng, VOCAB)
    e, h, k, v, p = 12, 10, 3, VOCAB, 32
    conv = h * 2 * h * k + 2 * h
    expected = (2 * v * e + 2 * p * e                         # token and position embeddings
                + (e * h + h) + 2 * conv + (h * e + e)        # encoder
                + (e * h + h) + 3 * (conv + (h * e + e) + (e * h + h)) + (h * e + e) + (e * v + v))
    assert sum(int(np.prod(q.shape)) for q in model.parameters()) == expected


def test_padding_and_future_are_masked(rng):
    model = small()
    checks.check_padding_is_ignored(model, rng, VOCAB)
    checks.check_causal(model, rng, VOCAB)


def test_beam_one_is_greedy(rng):
    checks.check_beam_one_is_greedy(small(), rng, VOCAB)


def test_decode_step_matches_teacher_forcing(rng):
    checks.check_decode_step_matches_teacher_forcing(small(), rng, VOCAB)


def test_step_lowers_loss(rng):
    checks.check_step_lowers_loss(small(), ConvS2SRecipe(), rng, VOCAB)


def test_alignment(rng):
    checks.check_alignment(small(), rng, VOCAB)


def test_conv_glu(rng):
    x = pyfastdl.tensor(rng.standard_normal((2, 4, 9)).astype(np.float32))
    for causal in (False, True):
        layer = ConvGLU(4, 3, causal)
        assert layer(x).shape == (2, 4, 9)
    with pytest.raises(ValueError, match="kernel size must be odd"):
        ConvGLU(4, 4, causal=False)


@pytest.mark.slow
def test_reaches_target(tmp_path):
    """The CLI default recipe: >= 90% exact match on held-out numbers (several minutes)."""
    import json

    from pyfastdl.cli import main

    assert main(["train", "convs2s", "--out", str(tmp_path), "--quiet"]) == 0
    assert json.load(open(tmp_path / "metrics.json"))["test"]["exact_match"] >= 0.90


def test_incremental_decoding_matches_full(rng):
    model = small(kernel_size=5).eval()
    src, lengths, tgt_in, _ = checks.random_batch(rng, VOCAB, tgt_len=8)
    full = checks.logits(model, src, lengths, tgt_in)
    with pyfastdl.no_grad():
        state = model.encode(pyfastdl.tensor(src), pyfastdl.tensor(lengths))
        for t in range(1, tgt_in.shape[1] + 1):
            step, state = model.decode_step(pyfastdl.tensor(tgt_in[:, :t]), state)
            np.testing.assert_allclose(step.numpy(), full[:, t - 1], rtol=1e-5, atol=1e-5)
