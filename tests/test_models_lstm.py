"""LSTM task models (pyfastdl.models.lstm): shapes, parameter counts, one optimisation step lowers
each loss, the metrics, the recipes through the CLI (train, eval, sample), and the training targets
(slow)."""

import json

import numpy as np
import pytest

import pyfastdl
import pyfastdl.optim
from pyfastdl.data import sequences as S
from pyfastdl.models.lstm import (AddingLSTM, AddingRecipe, CharLMRecipe, CharLSTM, LegalNextSymbol, Perplexity,
                                  ReberBranchAccuracy, ReberLSTM, ReberRecipe, init_forget_bias)


def n_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


def lstm_params(i, h):
    return 4 * h * (i + h) + 8 * h


def step_lowers_loss(model, loss_fn, inputs, target):
    opt = pyfastdl.optim.Adam(model.parameters(), lr=1e-2)
    model.eval()  # no dropout: the two losses are comparable
    before = loss_fn(model(*inputs), target)
    opt.zero_grad()
    before.backward()
    opt.step()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    assert loss_fn(model(*inputs), target).item() < before.item()


def test_adding_model(rng):
    pyfastdl.manual_seed(0)
    model = AddingLSTM(hidden_size=8)
    assert n_params(model) == lstm_params(2, 8) + 8 + 1
    x, y = S.adding_problem(6, 13, seed=int(rng.integers(1000)))
    out = model(pyfastdl.tensor(x))
    assert out.shape == (6,)
    step_lowers_loss(model, AddingRecipe().loss_fn, (pyfastdl.tensor(x),), pyfastdl.tensor(y))


def test_forget_bias_starts_at_one():
    pyfastdl.manual_seed(0)
    lstm = init_forget_bias(pyfastdl.nn.LSTM(3, 4, num_layers=2))
    for name, p in lstm.named_parameters():
        if name.startswith("bias"):
            expected = 1.0 if name.startswith("bias_ih") else 0.0
            assert (p.detach().numpy()[4:8] == expected).all(), name
    cell = init_forget_bias(pyfastdl.nn.LSTMCell(3, 4))
    assert (cell.bias_ih.data[4:8] == 1).all() and (cell.bias_hh.data[4:8] == 0).all()


def reber_batch(n=5, seed=0):
    train, _ = S.reber_split(n, 0, seed=seed)
    return S.collate_reber([S.ReberDataset(train)[i] for i in range(n)])


def test_reber_model_and_padding(rng):
    pyfastdl.manual_seed(0)
    model = ReberLSTM(hidden_size=6)
    assert n_params(model) == lstm_params(7, 6) + 6 * 7 + 7
    x, lengths, nxt = reber_batch(seed=int(rng.integers(1000)))
    with pyfastdl.no_grad():
        out = model(pyfastdl.tensor(x), pyfastdl.tensor(lengths)).numpy()
        wider = np.concatenate([x, np.ones((len(x), 4, 7), np.float32)], axis=1)  # garbage padding
        out_wide = model(pyfastdl.tensor(wider), pyfastdl.tensor(lengths)).numpy()
    assert out.shape == x.shape
    valid = np.arange(x.shape[1])[None] < lengths[:, None]
    np.testing.assert_allclose(out_wide[:, : x.shape[1]][valid], out[valid], rtol=1e-5, atol=1e-6)
    step_lowers_loss(model, ReberRecipe().loss_fn, (pyfastdl.tensor(x), pyfastdl.tensor(lengths)),
                     pyfastdl.tensor(nxt))


def test_reber_metrics():
    x, lengths, nxt = reber_batch(8, seed=3)
    strings = S.reber_strings_from_targets(nxt)
    oracle = np.zeros(x.shape, np.float32)  # scores: 1 for every legal next symbol, the true one highest
    for i, s in enumerate(strings):
        for t, legal in enumerate(S.reber_legal_next(s)):
            oracle[i, t, [S.REBER_SYMBOLS.index(c) for c in legal]] = 1.0
            oracle[i, t, nxt[i, t]] = 2.0
    legal, branch = LegalNextSymbol(), ReberBranchAccuracy()
    legal.update(oracle, nxt)
    branch.update(oracle, nxt)
    assert legal.compute() == 1.0 and branch.compute() == 1.0
    wrong = oracle.copy()
    rows = np.arange(len(x))
    wrong[rows, lengths - 2] = 0.0  # at the long-lag step predict the other branch symbol
    wrong[rows, lengths - 2, [S.REBER_SYMBOLS.index("P" if s[1] == "T" else "T") for s in strings]] = 3.0
    legal.reset()
    branch.reset()
    legal.update(wrong, nxt)
    branch.update(wrong, nxt)
    assert branch.compute() == 0.0
    assert legal.compute() == pytest.approx(1 - len(x) / lengths.sum())


def test_char_model_state_continues(rng):
    pyfastdl.manual_seed(0)
    model = CharLSTM(11, embedding_dim=5, hidden_size=7, num_layers=2).eval()
    assert n_params(model) == 11 * 5 + lstm_params(5, 7) + lstm_params(7, 7) + 7 * 11 + 11
    ids = pyfastdl.tensor(rng.integers(0, 11, (3, 9)))
    with pyfastdl.no_grad():
        whole = model(ids).numpy()
        first, state = model.step(ids[:, :4])
        second, _ = model.step(ids[:, 4:], state)
    assert whole.shape == (3, 9, 11)
    np.testing.assert_allclose(np.concatenate([first.numpy(), second.numpy()], 1), whole, rtol=1e-5, atol=1e-6)
    target = pyfastdl.tensor(rng.integers(0, 11, (3, 9)))
    step_lowers_loss(model, CharLMRecipe().loss_fn, (ids,), target)


def test_perplexity_metric(rng):
    metric = Perplexity()
    metric.update(np.zeros((2, 5, 13)), rng.integers(0, 13, (2, 5)))
    assert metric.compute() == pytest.approx(13.0)
    metric.reset()
    target = rng.integers(0, 4, (3, 6))
    sure = np.where(np.arange(4) == target[..., None], 50.0, 0.0)
    metric.update(sure, target)
    assert metric.compute() == pytest.approx(1.0)


def _train(tmp_path, *args):
    from pyfastdl.cli import main

    assert main(["train", *args, "--out", str(tmp_path), "--quiet"]) == 0
    return json.load(open(tmp_path / "metrics.json"))


def test_adding_and_reber_recipes_run(tmp_path):
    record = _train(tmp_path / "a", "lstm-adding", "--epochs", "1", "--seq-len", "12", "--hidden", "4",
                    "--train-size", "64", "--test-size", "32", "--batch-size", "32")
    assert record["model"] == "lstm-adding" and np.isfinite(record["test_mse"])
    record = _train(tmp_path / "r", "lstm-reber", "--epochs", "1", "--hidden", "4", "--train-size", "64",
                    "--test-size", "32")
    assert 0.0 <= record["test"]["legal"] <= 1.0 and 0.0 <= record["test"]["branch"] <= 1.0


def test_char_lm_recipe_text_file_and_sample(tmp_path, capsys):
    from pyfastdl.cli import main

    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 20)
    record = _train(tmp_path / "run", "char-lm", "--text", str(text), "--epochs", "2", "--seq-len", "16",
                    "--hidden", "16", "--embed-dim", "8", "--layers", "1", "--batch-size", "8")
    assert record["test_perplexity"] < 29  # below uniform over the 28 characters + a margin
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "run"), "--length", "40", "--prime", "the ", "--temperature", "0.5"]) == 0
    out = capsys.readouterr().out.rstrip("\n")
    assert out.startswith("the ") and len(out) == 44 and set(out) <= set("the quick brown fox jumps over lazy dog.")
    assert main(["eval", str(tmp_path / "run" / "checkpoint.safetensors")]) == 0
    assert main(["sample", str(tmp_path / "run"), "--temperature", "-1"]) == 2


def test_char_lm_default_corpus_windows():
    import argparse

    args = argparse.Namespace(text=None, seq_len=100, stride=25)
    splits = CharLMRecipe().datasets(args)
    assert len(args.chars) == len(set(S.default_corpus()))
    x, y = splits["train"][0]
    np.testing.assert_array_equal(x[1:], y[:-1])
    with pytest.raises(ValueError, match="too short"):
        CharLMRecipe().datasets(argparse.Namespace(text=None, seq_len=5_000, stride=25, chars=None))


@pytest.mark.slow
def test_adding_reaches_target(tmp_path):
    """The CLI default (T = 100): test MSE below 0.01 (answering the mean scores ~0.167)."""
    assert _train(tmp_path, "lstm-adding")["test_mse"] < 0.01


@pytest.mark.slow
def test_reber_reaches_target(tmp_path):
    """The CLI default: >= 99% of next-symbol predictions legal on held-out strings."""
    assert _train(tmp_path, "lstm-reber")["test_legal"] >= 0.99
