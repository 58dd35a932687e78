"""The docstrings corpus (pyfastdl.data.docstrings): splits disjoint by module, the tokenizer,
BERT's masking statistics, the windows datasets, the classification set and the bigram baseline."""

import numpy as np
import pytest

from pyfastdl.data import docstrings as D


def test_splits_are_disjoint_by_module_and_cover_the_corpus():
    modules = D.load_modules()
    splits = D.split_modules(modules)
    sets = {name: set(mods) for name, mods in splits.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert set.union(*sets.values()) == set(modules)
    docs = {name: sum(len(modules[m]) for m in mods) for name, mods in splits.items()}
    total = sum(docs.values())
    for name, fraction in D.SPLIT_FRACTIONS.items():
        assert abs(docs[name] / total - fraction) < 0.03, docs
    for package in D.PACKAGES:  # every class of the classification task is in every split
        assert all(any(m.split(".")[0] == package for m in mods) for mods in splits.values()), package
    assert D.split_modules(dict(reversed(list(modules.items())))) == splits  # order-independent
    with pytest.raises(ValueError, match="split must be"):
        D.split_docstrings("dev")


def test_tokenizer_round_trip_and_specials():
    tok = D.load_tokenizer()
    assert [tok.token_to_id(t) for t in D.SPECIAL_TOKENS] == list(range(5))
    text = "Return the number of items in the queue.\n\n    Raises ValueError if ..."
    assert tok.decode(tok.encode(text).ids) == text
    assert len(tok.encode(text).ids) < len(text) / 2.5  # merges learned


def test_mask_tokens_statistics():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 4096, 400_000)
    ids[::10] = rng.integers(0, 5, 40_000)  # special tokens sprinkled in
    inputs, targets = D.mask_tokens(ids, rng, 4096)
    special = ids < 5
    selected = targets != D.IGNORE
    assert not selected[special].any() and (inputs[special] == ids[special]).all()  # never masked
    assert abs(selected[~special].mean() - 0.15) < 0.003
    np.testing.assert_array_equal(targets[selected], ids[selected])
    masked = inputs[selected] == D.MASK
    kept = inputs[selected] == ids[selected]
    replaced = ~masked & ~kept
    assert abs(masked.mean() - 0.8) < 0.01
    assert abs(kept.mean() - 0.1 - 0.1 / 4091) < 0.01  # a random token may draw itself
    assert abs(replaced.mean() - 0.1) < 0.01
    assert (inputs[selected][replaced] >= 5).all()  # random replacements are ordinary tokens
    assert (inputs[~selected] == ids[~selected]).all()


def test_mlm_windows_dynamic_and_fixed_masks():
    ids = np.arange(5, 5 + 300)
    dynamic = D.MLMWindows(ids, 10, 400, seed=3)
    first, again = dynamic[2], dynamic[2]
    assert first[0][0] == D.CLS and len(first[0]) == 10 and len(dynamic) == 33
    assert not np.array_equal(first[1], again[1])  # a fresh mask on every reading
    assert np.array_equal(D.MLMWindows(ids, 10, 400, seed=3)[2][1], first[1])  # reproducible
    fixed = D.MLMWindows(ids, 10, 400, seed=3, dynamic=False)
    assert np.array_equal(fixed[2][1], fixed[2][1])
    dense = D.MLMWindows(np.arange(5, 5 + 90_000), 64, 90_000, prob=0.4)  # the selection rate asked for
    selected = np.concatenate([dense[i][1] for i in range(len(dense))]) != D.IGNORE
    assert abs(selected.mean() - 0.4 * 63 / 64) < 0.01  # [CLS] is never selected
    with pytest.raises(ValueError, match="prob"):
        D.MLMWindows(ids, 10, 400, prob=0.0)


def test_lm_windows_and_token_stream():
    stream = D.token_stream("val")
    assert stream.dtype == np.int64 and (stream == D.SEP).sum() == len(D.split_docstrings("val"))
    windows = D.LMWindows(stream, 64)
    x, y = windows[len(windows) - 1]
    np.testing.assert_array_equal(x[1:], y[:-1])
    with pytest.raises(IndexError):
        windows[len(windows)]


def test_package_docstrings_balanced_and_padded():
    ds = D.PackageDocstrings("val", seq_len=32)
    counts = np.bincount(ds.labels, minlength=len(D.PACKAGES))
    assert (counts == counts[0]).all() and counts[0] > 10
    ids, length, label = ds[0]
    assert ids[0] == D.CLS and ids[length - 1] == D.SEP and (ids[length:] == D.PAD).all()
    assert len(D.PackageDocstrings("train", 32, per_class=5)) == 5 * len(D.PACKAGES)
    with pytest.raises(ValueError, match="fewer than"):
        D.PackageDocstrings("val", 32, per_class=10_000)


def test_bigram_perplexity_against_direct_computation():
    rng = np.random.default_rng(1)
    train = rng.integers(0, 6, 500)
    x, y = rng.integers(0, 6, (3, 4)), rng.integers(0, 6, (3, 4))
    result = D.bigram_perplexity(train, x, y, 6)
    lam = result["lambda"]
    pairs = np.zeros((6, 6))
    for a, b in zip(train[:-1], train[1:]):
        pairs[a, b] += 1
    unigram = (np.bincount(train, minlength=6) + 1) / (len(train) + 6)
    p = [lam * pairs[a, b] / pairs[a].sum() + (1 - lam) * unigram[b] for a, b in zip(x.ravel(), y.ravel())]
    assert result["perplexity"] == pytest.approx(np.exp(-np.mean(np.log(p))), rel=1e-12)
