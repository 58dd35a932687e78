"""Transformer: shapes, parameter count, masks (padding, causal), beam 1 = greedy, a training
step, shared embeddings, pre-norm, the paper's base configuration and the warm-up schedule."""

import math

import numpy as np
import pytest

import pyfastdl
from pyfastdl.models.transformer import Transformer, TransformerBaseRecipe, TransformerRecipe
from pyfastdl.optim.lr_scheduler import InverseSqrtLR
import translation_checks as checks

VOCAB = 23


def small(**kw):
    pyfastdl.manual_seed(0)
    return Transformer(VOCAB, VOCAB, **dict(dict(d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=2,
                                                 dim_feedforward=24, dropout=0.1), **kw))


def n_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


def test_shapes_and_parameter_count(rng):
    model = small()
    checks.check_shapes(model, rng, VOCAB)
    d, f, v = 16, 24, VOCAB
    attn, ff, ln = 4 * d * d + 4 * d, d * f + f + f * d + d, 2 * d
    expected = 2 * v * d + 2 * (attn + ff + 2 * ln) + 2 * (2 * attn + ff + 3 * ln)
    assert n_params(model) == expected
    assert n_params(small(tie_output=False)) == expected + d * v
    assert n_params(small(norm_first=True)) == expected + 2 * ln


@pytest.mark.parametrize("norm_first", [False, True])
def test_padding_and_future_are_masked(rng, norm_first):
    model = small(norm_first=norm_first)
    checks.check_padding_is_ignored(model, rng, VOCAB)
    checks.check_causal(model, rng, VOCAB)


def test_beam_one_is_greedy(rng):
    checks.check_beam_one_is_greedy(small(), rng, VOCAB)


def test_decode_step_matches_teacher_forcing(rng):
    checks.check_decode_step_matches_teacher_forcing(small(), rng, VOCAB)


def test_step_lowers_loss(rng):
    checks.check_step_lowers_loss(small(), TransformerRecipe(), rng, VOCAB)


def test_alignment(rng):
    checks.check_alignment(small(), rng, VOCAB)


def test_shared_embeddings(rng):
    model = small(share_embeddings=True)
    assert model.src_embed is model.tgt_embed
    checks.check_shapes(model, rng, VOCAB)
    with pytest.raises(ValueError, match="share_embeddings needs one vocabulary"):
        Transformer(10, 12, share_embeddings=True)


def test_base_configuration():
    import argparse

    recipe = TransformerBaseRecipe()
    parser = argparse.ArgumentParser()
    recipe.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.layers, args.d_model, args.heads, args.d_ff, args.dropout) == (6, 512, 8, 2048, 0.1)
    assert args.label_smoothing == 0.1 and args.warmup_steps == 4000
    assert recipe.default_hparams(args)["lr"] == pytest.approx(512 ** -0.5 * 4000 ** -0.5)
    model = recipe.make_model(args, 100, 100)
    assert len(model.encoder) == 6 and len(model.decoder) == 6
    assert model.decoder[0].ff.linear1.weight.shape == (2048, 512) and model.decoder[0].cross_attn.num_heads == 8


@pytest.mark.parametrize("d_model", [None, 512])
def test_inverse_sqrt_schedule(d_model):
    p = pyfastdl.nn.Parameter(pyfastdl.zeros(1))
    opt = pyfastdl.optim.SGD([p], lr=1.0 if d_model else 0.01)
    sched = InverseSqrtLR(opt, warmup_steps=4000, d_model=d_model)
    rates = [opt.param_groups[0]["lr"]]
    for _ in range(12000):
        sched.step()
        rates.append(opt.param_groups[0]["lr"])
    if d_model:  # the paper's formula
        for step in (1, 100, 4000, 9000):
            assert rates[step - 1] == pytest.approx(512 ** -0.5 * min(step ** -0.5, step * 4000 ** -1.5))
    else:  # peak = lr at the end of warm-up
        assert max(rates) == pytest.approx(0.01) and int(np.argmax(rates)) == 3999
        assert rates[1999] == pytest.approx(0.005) and rates[11999] == pytest.approx(0.01 * math.sqrt(4000 / 12000))
    with pytest.raises(ValueError, match="warmup_steps"):
        InverseSqrtLR(opt, warmup_steps=0)


@pytest.mark.slow
def test_reaches_target(tmp_path):
    """The CLI default recipe: >= 95% exact match on held-out numbers (several minutes)."""
    from pyfastdl.cli import main

    assert main(["train", "transformer", "--out", str(tmp_path), "--quiet"]) == 0
    import json

    assert json.load(open(tmp_path / "metrics.json"))["test"]["exact_match"] >= 0.95


@pytest.mark.parametrize("norm_first", [False, True])
def test_incremental_decoding_matches_full(rng, norm_first):
    model = small(norm_first=norm_first).eval()
    src, lengths, tgt_in, _ = checks.random_batch(rng, VOCAB)
    full = checks.logits(model, src, lengths, tgt_in)
    with pyfastdl.no_grad():
        state = model.encode(pyfastdl.tensor(src), pyfastdl.tensor(lengths))
        for t in range(1, tgt_in.shape[1] + 1):
            step, state = model.decode_step(pyfastdl.tensor(tgt_in[:, :t]), state)
            np.testing.assert_allclose(step.numpy(), full[:, t - 1], rtol=1e-5, atol=1e-5)
