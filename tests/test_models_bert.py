"""BERT (pyfastdl.models.bert): the padding mask by perturbation, the pooling (mean of the real
tokens, or [CLS]) against its formula, one step lowers each loss (masked LM, classification), the
BERT-base parameter count, the masked-LM head on selected positions,
the recipes through the CLI (pre-training, then fine-tuning against scratch), and the
pre-training-helps target (slow)."""

import json

import numpy as np
import pytest

import pyfastdl
import pyfastdl.optim
from pyfastdl import no_grad, tensor
from pyfastdl.cli import main
from pyfastdl.models.bert import (BERT_BASE_CONFIG, BertForMaskedLM, BertForSequenceClassification, BertModel,
                                  alibi_bias)
from pyfastdl.nn import functional as F

from test_models_gpt import cheap_init, n_params

CONFIG = dict(max_len=16, d_model=24, n_layers=2, n_heads=3, dropout=0.1)


def test_padding_mask_by_perturbation(rng):
    pyfastdl.manual_seed(0)
    model = BertModel(50, **CONFIG).eval()
    ids = rng.integers(5, 50, (3, 12))
    lengths = np.array([12, 7, 3])
    changed = ids.copy()
    for row, n in enumerate(lengths):
        changed[row, n:] = rng.integers(5, 50, 12 - n)  # other tokens where there is padding
    with no_grad():
        (a, pa), (b, pb) = (model(tensor(x), tensor(lengths)) for x in (ids, changed))
    for row, n in enumerate(lengths):
        np.testing.assert_allclose(a.numpy()[row, :n], b.numpy()[row, :n], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pa.numpy(), pb.numpy(), rtol=1e-5, atol=1e-6)  # the [CLS] pooling too
    with no_grad():  # without the mask the padding does change the real positions
        assert np.abs(model(tensor(ids))[0].numpy()[1, :7] - model(tensor(changed))[0].numpy()[1, :7]).max() > 1e-3


def test_alibi_bias_and_where_it_goes(rng):
    bias = alibi_bias(4, 6)
    i, j = np.indices((6, 6))
    for h, slope in enumerate((1 / 4, 1 / 16, 1 / 64, 1 / 256)):
        np.testing.assert_allclose(bias[h], -slope * np.abs(i - j), rtol=1e-6)
    pyfastdl.manual_seed(0)
    model = BertModel(50, **CONFIG).eval()
    plain = BertModel(50, alibi=False, **CONFIG).eval()
    plain.load_state_dict(model.state_dict())
    ids, lengths = tensor(rng.integers(5, 50, (3, 12))), tensor(np.array([12, 7, 3]))
    with no_grad():
        assert np.abs(model(ids, lengths)[0].numpy() - plain(ids, lengths)[0].numpy()).max() > 1e-3
        model.alibi = np.zeros_like(model.alibi)  # a zero bias is no bias: the biases are only added
        np.testing.assert_allclose(model(ids, lengths)[0].numpy(), plain(ids, lengths)[0].numpy(), atol=1e-6)


def test_pooling_mean_of_the_real_tokens_or_cls(rng):
    pyfastdl.manual_seed(0)
    ids, lengths = tensor(rng.integers(5, 50, (3, 10))), np.array([10, 6, 1])
    for pooling in ("mean", "cls"):
        model = BertModel(50, pooling=pooling, **CONFIG).eval()
        with no_grad():
            hidden, pooled = (t.numpy().astype(np.float64) for t in model(ids, tensor(lengths)))
        w, b = (p.detach().numpy().astype(np.float64) for p in (model.pooler.weight, model.pooler.bias))
        read = (np.stack([hidden[i, :n].mean(0) for i, n in enumerate(lengths)]) if pooling == "mean"
                else hidden[:, 0])
        np.testing.assert_allclose(pooled, np.tanh(read @ w.T + b), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="pooling"):
        BertModel(50, pooling="max", **CONFIG)


def _step_lowers(model, loss):
    opt = pyfastdl.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    model.eval()
    with no_grad():
        assert loss().item() < before.item()
    return model


@pytest.mark.parametrize("transform", [False, True])
def test_one_step_lowers_the_masked_lm_loss(rng, transform):
    pyfastdl.manual_seed(0)
    model = BertForMaskedLM(50, transform=transform, **CONFIG)
    assert hasattr(model, "transform_norm") == transform
    ids = tensor(rng.integers(5, 50, (4, 16)))
    selected = tensor(rng.choice(64, 10, replace=False))
    target = tensor(rng.integers(5, 50, 10))
    _step_lowers(model, lambda: F.cross_entropy(model(ids, selected), target))
    unused = {"bert.pooler.weight", "bert.pooler.bias", "bert.seg.weight"}
    for name, p in model.named_parameters():  # the pooler waits for fine-tuning; segment 0 only
        assert (p.grad is not None) or name in unused, name
    with no_grad():  # the head on selected positions = the full head's rows there
        full = model(ids).numpy().reshape(64, 50)
        np.testing.assert_allclose(model(ids, selected).numpy(), full[selected.numpy()], rtol=1e-5, atol=1e-6)


def test_one_step_lowers_the_classification_loss(rng):
    pyfastdl.manual_seed(0)
    model = BertForSequenceClassification(50, 6, **CONFIG)
    ids, lengths = tensor(rng.integers(5, 50, (8, 16))), tensor(rng.integers(3, 17, 8))
    target = tensor(rng.integers(0, 6, 8))
    _step_lowers(model, lambda: F.cross_entropy(model(ids, lengths), target))
    assert model(ids, lengths).shape == (8, 6)


def test_bert_base_parameter_count(monkeypatch):
    cheap_init(monkeypatch)
    d, layers, ff = 768, 12, 3072
    embeddings = (30522 + 512 + 2) * d + 2 * d
    per_layer = (4 * d * d + 4 * d) + (2 * d * ff + ff + d) + 4 * d
    count = n_params(BertModel(**BERT_BASE_CONFIG))
    final_norm = 2 * d  # pre-norm's LayerNorm after the last layer (a departure)
    assert count == embeddings + layers * per_layer + final_norm + d * d + d == 109_483_776
    assert abs(count - 110e6) / 110e6 < 0.01  # the paper's "110M"


def _train(tmp_path, *args):
    assert main(["train", *args, "--out", str(tmp_path), "--quiet"]) == 0
    return json.load(open(tmp_path / "metrics.json"))


TINY = ["--d-model", "16", "--layers", "1", "--heads", "2", "--seq-len", "24", "--epochs", "1", "--batch-size", "8"]


def test_bert_pretrain_then_finetune_against_scratch(tmp_path):
    pre = _train(tmp_path / "pre", "bert", *TINY, "--limit", "32", "--position-bias", "none", "--mlm-head",
                 "transform", "--mask-prob", "0.15")
    assert 0 <= pre["test_mlm_accuracy"] <= 1
    fine = _train(tmp_path / "fine", "bert-finetune", "--from", str(tmp_path / "pre"), "--per-class", "4",
                  "--epochs", "1", "--limit", "24", "--batch-size", "8")
    assert fine["hyperparameters"]["d_model"] == 16 and fine["hyperparameters"]["seq_len"] == 24  # from the run
    assert fine["hyperparameters"]["position_bias"] == "none"  # the architecture is the pre-trained one
    assert fine["pretrained_test_accuracy"] == fine["test_accuracy"]
    assert 0 <= fine["scratch_test_accuracy"] <= 1
    assert (tmp_path / "fine" / "scratch" / "metrics.json").exists()
    assert main(["eval", str(tmp_path / "fine" / "checkpoint.safetensors")]) == 0
    assert main(["train", "bert-finetune", "--from", str(tmp_path / "nothing"), "--quiet",
                 "--out", str(tmp_path / "x")]) == 2
    assert main(["train", "bert-finetune", "--from", str(tmp_path / "fine"), "--quiet",
                 "--out", str(tmp_path / "x")]) == 2  # not a bert (pre-training) checkpoint


@pytest.mark.slow
def test_pretraining_helps(tmp_path):
    """Pre-training + fine-tuning vs the same fine-tuning from scratch, 3 seeds, the recipes'
    defaults: the pre-trained mean accuracy beats the scratch mean by more than the larger spread
    (max - min). One seed's pre-training is 2,940 steps (about 0.18 CPU-seconds each on the 2-core
    EPYC), its fine-tuning twice 330 steps (about a CPU-minute for both): about 30 CPU-minutes in
    all."""
    pre, scratch = [], []
    for seed in ("0", "1", "2"):
        _train(tmp_path / f"bert{seed}", "bert", "--seed", seed)
        record = _train(tmp_path / f"fine{seed}", "bert-finetune", "--from", str(tmp_path / f"bert{seed}"),
                        "--seed", seed)
        pre.append(record["pretrained_test_accuracy"])
        scratch.append(record["scratch_test_accuracy"])
    spread = max(np.ptp(pre), np.ptp(scratch))
    assert np.mean(pre) - np.mean(scratch) > spread, (pre, scratch)
