"""The translation recipe family: data pipeline (batches, padding, vocabularies), held-out
numbers, parallel-text loading, checkpoint vocabularies, and `pyfastdl translate` end to end."""

import argparse
import json

import numpy as np
import pytest

from pyfastdl.checkpoint import read_metadata
from pyfastdl.cli import main
from pyfastdl.data.translation import Vocab, tokenize
from pyfastdl.models.translation import TranslationRecipe
from pyfastdl.text.translation import (TranslationDataset, collate_translation, corpus_bleu, exact_match,
                                       sinusoidal_positions)
from pyfastdl.train import get_recipe

TINY = ["--layers", "1", "--d-model", "16", "--heads", "2", "--d-ff", "32", "--epochs", "1", "--batch-size", "16",
        "--train-size", "120", "--val-size", "8", "--test-size", "8", "--quiet"]


def recipe_args(name, argv=()):
    recipe = get_recipe(name)
    parser = argparse.ArgumentParser()
    recipe.add_arguments(parser)
    args = parser.parse_args(list(argv))
    args.seed = 0
    return recipe, args


def test_batches():
    src_vocab, tgt_vocab = Vocab.build([["a", "b", "c"]]), Vocab.build([["x", "y"]])
    ds = TranslationDataset([(["a", "b"], ["x"]), (["c"], ["y", "x", "zz"])], src_vocab, tgt_vocab)
    src, src_lengths, tgt_in, tgt_out = collate_translation([ds[0], ds[1]])
    a, b, c, x, y = tuple(src_vocab.stoi[t] for t in "abc") + tuple(tgt_vocab.stoi[t] for t in "xy")
    np.testing.assert_array_equal(src, [[a, b, Vocab.EOS], [c, Vocab.EOS, Vocab.PAD]])
    np.testing.assert_array_equal(src_lengths, [3, 2])
    np.testing.assert_array_equal(tgt_in, [[Vocab.BOS, x, 0, 0], [Vocab.BOS, y, x, Vocab.UNK]])
    np.testing.assert_array_equal(tgt_out, [[x, Vocab.EOS, 0, 0], [y, x, Vocab.UNK, Vocab.EOS]])
    assert all(a.dtype == np.int64 for a in (src, src_lengths, tgt_in, tgt_out))


def test_number_datasets_hold_out_numbers():
    recipe, args = recipe_args("transformer", ["--train-size", "300", "--val-size", "20", "--test-size", "30"])
    splits = recipe.datasets(args)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [300, 20, 30]
    seen = {tuple(s) for s, _ in splits["train"].pairs}
    assert not seen & {tuple(s) for s, _ in splits["test"].pairs}
    assert not seen & {tuple(s) for s, _ in splits["val"].pairs}
    # vocabularies come from the training split; the round trip ids -> tokens is exact
    assert set(args.src_vocab.itos[4:]) == {t for s, _ in splits["train"].pairs for t in s}
    src, tgt = splits["test"][0]
    assert args.tgt_vocab.decode(tgt) == splits["test"].pairs[0][1]


def test_metrics():
    refs = [["drei", "hundert", "ein", "und", "zwanzig"], ["drei"]]
    assert exact_match(refs, refs) == 1.0 and exact_match([["ein"], ["drei"]], refs) == 0.5
    assert corpus_bleu(refs, refs) == pytest.approx(100.0)
    assert 0.0 < corpus_bleu([["drei", "hundert", "ein", "und", "dreißig"], ["drei"]], refs) < 100.0
    with pytest.raises(ValueError, match="hypotheses"):
        exact_match([["a"]], refs)
    pe = sinusoidal_positions(50, 8)
    assert pe.shape == (50, 8) and pe[0, 0] == 0 and pe[0, 1] == 1 and pe[3, 2] == pytest.approx(np.sin(3 / 10))


def test_train_translate_and_eval(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "transformer", "--out", str(out), *TINY]) == 0
    metrics = json.load(open(out / "metrics.json"))
    assert {"exact_match", "bleu", "token_accuracy", "loss"} <= set(metrics["test"])
    assert {"val_exact_match", "val_bleu", "train_token_accuracy"} <= set(metrics["epochs"][0])
    meta = read_metadata(str(out / "checkpoint.safetensors"))
    assert meta["vocab"]["source"][:4] == list(Vocab.SPECIALS) and "forty" in meta["vocab"]["source"]
    capsys.readouterr()
    png = tmp_path / "align.png"
    assert main(["translate", str(out), "forty-two", "three hundred", "--alignment", str(png)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and png.stat().st_size > 1000
    assert main(["translate", str(out / "checkpoint.safetensors"), "--beam", "3", "seven"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert main(["eval", str(out / "checkpoint.safetensors"), "--json"]) == 0
    assert "exact_match" in json.loads(capsys.readouterr().out)


def test_parallel_text(tmp_path, capsys):
    src, tgt = tmp_path / "en.txt", tmp_path / "de.txt"
    words = ["the cat", "a dog", "the house", "a big cat", "my dog", "the small house", "a cat", "my house"]
    german = ["die katze", "ein hund", "das haus", "eine grosse katze", "mein hund", "das kleine haus",
              "eine katze", "mein haus"]
    src.write_text("\n".join(words * 10) + "\n")
    tgt.write_text("\n".join(german * 10) + "\n")
    recipe, args = recipe_args("convs2s", ["--src", str(src), "--tgt", str(tgt), "--min-freq", "2"])
    splits = recipe.datasets(args)
    assert sum(len(s) for s in splits.values()) == 80 and len(splits["test"]) == 8
    assert "katze" in args.tgt_vocab.stoi and "<unk>" == args.src_vocab.itos[Vocab.UNK]
    out = tmp_path / "run"
    assert main(["train", "convs2s", "--src", str(src), "--tgt", str(tgt), "--out", str(out), "--epochs", "1",
                 "--batch-size", "8", "--embed-dim", "8", "--hidden", "8", "--layers", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["translate", str(out), "the cat"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    # line counts that do not match: a clear error naming both files
    tgt.write_text("\n".join((german * 10)[:-1]) + "\n")
    assert main(["train", "convs2s", "--src", str(src), "--tgt", str(tgt), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "has 80 lines" in err and "has 79" in err and "de.txt" in err
    with pytest.raises(ValueError, match="--src and --tgt go together"):
        recipe.datasets(recipe_args("convs2s", ["--src", str(src)])[1])


def test_translate_needs_a_translation_checkpoint(tmp_path, capsys):
    assert main(["train", "lenet", "--out", str(tmp_path), "--epochs", "1", "--limit", "64", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["translate", str(tmp_path), "one"]) == 2
    assert "not a translation model" in capsys.readouterr().err


def test_recipe_family_is_general():
    assert isinstance(get_recipe("transformer"), TranslationRecipe)
    assert isinstance(get_recipe("convs2s"), TranslationRecipe)
    assert tokenize("Forty-two") == ["forty", "-", "two"]


def test_limit_wraps_the_datasets(tmp_path):
    """--limit hands the recipe Subsets of its datasets; decoding metrics must still find the vocabulary."""
    out = tmp_path / "run"
    assert main(["train", "transformer", "--out", str(out), *TINY, "--limit", "6", "--batch-size", "4"]) == 0
    assert "exact_match" in json.load(open(out / "metrics.json"))["test"]
