"""GPT (pyfastdl.models.gpt): the causal mask by perturbation, the key-value cache against full
recomputation, one step lowers the loss, the GPT-1 parameter count, top-k sampling, the recipe
through the CLI (train, eval, sample), and the perplexity target against the bigram baseline (slow)."""

import json

import numpy as np
import pytest

import pyfastdl
import pyfastdl.optim
from pyfastdl import no_grad, tensor
from pyfastdl.cli import main
from pyfastdl.models.gpt import GPT, GPT1_CONFIG
from pyfastdl.nn import functional as F
from pyfastdl.text.sampling import sample


def n_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


def small_gpt(dropout=0.0):
    pyfastdl.manual_seed(0)
    return GPT(vocab_size=50, max_len=16, d_model=24, n_layers=2, n_heads=3, dropout=dropout).eval()


def test_causal_mask_by_perturbation(rng):
    model = small_gpt()
    ids = rng.integers(0, 50, (2, 11))
    changed = ids.copy()
    changed[:, 6] = (ids[:, 6] + 1 + rng.integers(0, 48, 2)) % 50  # a different token at position 6
    with no_grad():
        a, b = model(tensor(ids)).numpy(), model(tensor(changed)).numpy()
    np.testing.assert_array_equal(a[:, :6], b[:, :6])  # the earlier positions cannot see it
    assert np.abs(a[:, 6:] - b[:, 6:]).max(axis=(0, 2)).min() > 1e-4  # every later one does


def test_kv_cache_equals_full_recomputation(rng):
    model = small_gpt()
    ids = rng.integers(0, 50, (2, 12))
    with no_grad():
        full = model(tensor(ids)).numpy()
        cache = model.new_cache()
        parts = [model.step(tensor(ids[:, :5]), cache)]  # the prime in one call (causal mask) ...
        parts += [model.step(tensor(ids[:, t:t + 1]), cache) for t in range(5, 9)]  # ... one token at a time ...
        parts.append(model.step(tensor(ids[:, 9:]), cache))  # ... and a chunk after a cache (offset mask)
    assert cache[0]["k"].shape == (2, 3, 12, 8)
    stepped = np.concatenate([p.numpy() for p in parts], axis=1)
    assert np.linalg.norm(stepped - full) / np.linalg.norm(full) < 1e-5
    with pytest.raises(ValueError, match="exceed max_len"):
        model.step(tensor(ids[:, :5]), cache)


def test_one_step_lowers_loss_and_reaches_every_parameter(rng):
    model = small_gpt(dropout=0.1)
    ids = tensor(rng.integers(0, 50, (4, 16)))
    target = tensor(rng.integers(0, 50, (4, 16)))
    opt = pyfastdl.optim.AdamW(model.parameters(), lr=1e-2)

    def loss():
        return F.cross_entropy(model(ids).reshape(-1, 50), target.reshape(-1))

    model.train()
    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    for name, p in model.named_parameters():
        assert p.grad is not None and np.abs(p.grad.numpy()).max() > 0, name
    model.eval()
    with no_grad():
        assert loss().item() < before.item()


def test_weight_tying_and_shapes():
    model = small_gpt()
    names = [name for name, _ in model.named_parameters()]
    assert not any("head" in n or "lm" in n for n in names)  # the output is wte^T, no separate matrix
    assert model(tensor(np.zeros((3, 7), dtype=np.int64))).shape == (3, 7, 50)


def cheap_init(monkeypatch):
    """Parameters left uninitialised (np.empty: no memory touched), to count a paper-sized model."""
    for name in ("normal_", "uniform_", "zeros_", "ones_", "xavier_uniform_", "kaiming_uniform_"):
        monkeypatch.setattr(pyfastdl.nn.init, name, lambda t, *a, **k: t)


def test_gpt1_parameter_count(monkeypatch):
    cheap_init(monkeypatch)
    d, layers, ff = 768, 12, 3072
    per_layer = (4 * d * d + 4 * d) + (2 * d * ff + ff + d) + 4 * d
    expected = 40478 * d + 512 * d + layers * per_layer + 2 * d
    count = n_params(GPT(**GPT1_CONFIG))
    assert count == expected
    assert abs(count - 117e6) / 117e6 < 0.01  # the paper's "117M"


def test_top_k_sampling():
    scores = np.array([0.0, 5.0, 4.0, -1.0, 3.0])

    def step(ids, state):
        return scores, state

    drawn = sample(step, [0], 300, temperature=2.0, seed=0, top_k=2)
    assert set(drawn) == {1, 2}
    assert sample(step, [0], 5, temperature=1.0, seed=0, top_k=1) == [1] * 5
    with pytest.raises(ValueError, match="top_k"):
        sample(step, [0], 5, top_k=0)


def _train(tmp_path, *args):
    assert main(["train", *args, "--out", str(tmp_path), "--quiet"]) == 0
    return json.load(open(tmp_path / "metrics.json"))


def test_gpt_recipe_train_eval_sample(tmp_path, capsys):
    record = _train(tmp_path, "gpt", "--epochs", "1", "--limit", "48", "--batch-size", "16", "--d-model", "16",
                    "--layers", "1", "--heads", "2", "--seq-len", "16")
    assert record["test"]["perplexity"] > 1 and record["test"]["bigram_perplexity"] > 1
    capsys.readouterr()
    assert main(["sample", str(tmp_path), "--length", "8", "--top-k", "5", "--prime", "Return the"]) == 0
    assert capsys.readouterr().out.startswith("Return the")
    assert main(["eval", str(tmp_path / "checkpoint.safetensors")]) == 0
    assert main(["sample", str(tmp_path), "--prime", "word " * 20]) == 2  # no room left in 16 positions


@pytest.mark.slow
def test_gpt_beats_bigram_by_20_percent(tmp_path):
    """The default run: test perplexity at least 20% below the bigram model's on the same tokens."""
    record = _train(tmp_path, "gpt")
    assert record["test_perplexity"] <= 0.8 * record["test"]["bigram_perplexity"]
