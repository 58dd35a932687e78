"""Every recipe kind end to end on a tiny run: `pyfastdl train`, `eval` and `predict` from the command
line (classification, segmentation, detection, the LSTM tasks, language models, translation, BERT),
and the one option vocabulary the recipes share (pyfastdl.train.options)."""

import json

import numpy as np
import pytest

from pyfastdl.cli import build_parser, main
from pyfastdl.train import list_recipes
from pyfastdl.train.options import VOCABULARY, upgrade_args

NUMBERS = ["--train-size", "120", "--val-size", "8", "--test-size", "8", "--batch-size", "32"]
ENCODER = ["--d-model", "16", "--layers", "1", "--heads", "2"]

#: recipe -> (tiny options, inputs for `predict` of the user's own (None: a file written by the test))
KINDS = {
    "lenet": (["--limit", "48", "--batch-size", "16"], None),
    "nin": (["--image-size", "12", "--train-size", "32", "--val-size", "8", "--test-size", "8",
             "--width-mult", "0.0625", "--batch-size", "16"], None),
    "fcn8s": (["--image-size", "16", "--train-size", "16", "--val-size", "4", "--test-size", "4",
               "--width-mult", "0.0625", "--hidden", "8", "--batch-size", "8"], None),
    "yolov1": (["--image-size", "32", "--grid", "4", "--train-size", "16", "--test-size", "4", "--hidden", "16",
                "--batch-size", "8"], None),
    "lstm-adding": (["--seq-len", "12", "--hidden", "4", "--train-size", "64", "--val-size", "16",
                     "--test-size", "16", "--batch-size", "32"], None),
    "lstm-reber": (["--hidden", "4", "--train-size", "64", "--val-size", "16", "--test-size", "16"], ["BTBTSSXSETE"]),
    "char-lm": (["--seq-len", "16", "--hidden", "8", "--embed-dim", "4", "--layers", "1", "--limit", "64",
                 "--batch-size", "8"], ["the "]),
    "seq2seq": ([*NUMBERS, "--embed-dim", "8", "--hidden", "8", "--layers", "1"], ["forty-two"]),
    "bahdanau": ([*NUMBERS, "--embed-dim", "8", "--hidden", "8", "--attention-dim", "8"], ["forty-two"]),
    "convs2s": ([*NUMBERS, "--embed-dim", "8", "--hidden", "8", "--layers", "1"], ["forty-two"]),
    "transformer": ([*NUMBERS, *ENCODER, "--d-ff", "32"], ["forty-two"]),
    "gpt": ([*ENCODER, "--seq-len", "16", "--limit", "48", "--batch-size", "16"], ["Return the"]),
    "bert": ([*ENCODER, "--seq-len", "24", "--limit", "32", "--batch-size", "8"], ["Return the [MASK] of the list."]),
    "bert-finetune": ([*ENCODER, "--seq-len", "24", "--per-class", "4", "--limit", "24", "--batch-size", "8"], []),
}


def _inputs(name, given, tmp_path, rng):
    """What `pyfastdl predict` reads for ``name``: the texts given, or a file written here."""
    if given is not None:
        return given
    if name == "lstm-adding":
        x = np.zeros((12, 2), np.float32)
        x[:, 0], x[[2, 9], 1] = rng.random(12), 1.0
        np.save(tmp_path / "seq.npy", x)
        return [str(tmp_path / "seq.npy")]
    from PIL import Image

    channels = 1 if name == "lenet" else 3
    pixels = rng.integers(0, 256, (20, 24, channels)).astype(np.uint8)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(tmp_path / "image.png")
    return [str(tmp_path / "image.png")]


@pytest.mark.parametrize("name", list(KINDS))
def test_train_eval_predict(name, tmp_path, capsys, rng):
    options, given = KINDS[name]
    run = tmp_path / "run"
    assert main(["train", name, "--epochs", "1", "--device", "cpu", "--quiet", "--out", str(run), *options]) == 0
    recipe = list_recipes()[name]
    record = json.loads((run / "metrics.json").read_text())
    capsys.readouterr()

    limit = options[options.index("--limit"):][:2] if "--limit" in options else []  # the test split the run saw
    assert main(["eval", str(run), "--json", *limit]) == 0  # a run directory or its checkpoint, in every command
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == name and result["split"] == "test" and np.isfinite(result["loss"])
    assert result[recipe.main_metric] == pytest.approx(record["test"][recipe.main_metric], rel=1e-6, nan_ok=True)

    assert main(["predict", str(run / "checkpoint.safetensors"), "--count", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and all({"input", "prediction", "target"} <= set(row) for row in rows), rows

    inputs = _inputs(name, given, tmp_path, rng)
    if not inputs:  # bert-finetune predicts its test docstrings only
        assert main(["predict", str(run), "some text"]) == 2
        return
    assert main(["predict", str(run), *inputs, "--json", "--out", str(tmp_path / "pictures")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(inputs) and all("target" not in row for row in rows), rows
    assert main(["predict", str(run), *inputs]) == 0  # the plain printout
    assert capsys.readouterr().out.strip()


def test_language_models_continue_and_translations_read_as_written(tmp_path, capsys):
    options, _ = KINDS["transformer"]
    run = tmp_path / "t"
    assert main(["train", "transformer", "--epochs", "1", "--quiet", "--out", str(run), *options]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), "three hundred forty-two", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["input"] == "three hundred forty-two" and isinstance(row["prediction"], str)

    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 20)
    run = tmp_path / "c"
    assert main(["train", "char-lm", "--text", str(text), "--epochs", "1", "--quiet", "--out", str(run),
                 "--seq-len", "16", "--hidden", "8", "--embed-dim", "4", "--layers", "1", "--batch-size", "8"]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), "--count", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(len(r["input"]) == 8 and len(r["prediction"]) == len(r["target"]) == 8 for r in rows)
    assert main(["predict", str(run), "the ", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert len(row["prediction"]) == 80 and set(row["prediction"]) <= set(text.read_text())


# ---- the shared vocabulary ----

def _train_parsers():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    return train._subparsers._group_actions[0].choices


def test_shared_options_have_one_name_and_show_their_defaults():
    """Every recipe spells a shared option as the vocabulary does, hides no old spelling in its help,
    and its --help gives the default of every option that has one."""
    old = {alias for option in VOCABULARY.values() for alias in option.aliases} | {"--batch-norm", "--fc-width"}
    for name, parser in _train_parsers().items():
        helped = [a for a in parser._actions if a.help != "==SUPPRESS==" and a.option_strings and a.dest != "help"]
        for action in helped:
            if action.dest in VOCABULARY:
                assert action.option_strings == [VOCABULARY[action.dest].flag], (name, action.option_strings)
            assert not old & set(action.option_strings), (name, action.option_strings)
        formatter = parser._get_formatter()
        for action in helped:
            if action.default is not None:
                assert "default" in formatter._get_help_string(action), (name, action.option_strings)
    assert "(default 0.25)" in _train_parsers()["nin"].format_help()
    assert "--epochs EPOCHS (default 15)" in " ".join(_train_parsers()["lenet"].format_help().split())


def test_old_spellings_still_parse_and_warn(capsys):
    args = build_parser().parse_args(["train", "nin", "--width", "0.5", "--batch-norm", "off", "--size", "16",
                                      "--train-samples", "100"])
    assert (args.width_mult, args.norm, args.image_size, args.train_size) == (0.5, "none", 16, 100)
    err = capsys.readouterr().err
    assert "--width is deprecated, use --width-mult" in err and "--batch-norm is deprecated" in err
    args = build_parser().parse_args(["train", "yolov1", "--no-batch-norm"])
    assert args.norm == "none"
    args = build_parser().parse_args(["train", "lstm-adding", "--n-train", "10", "--n-test", "5"])
    assert (args.train_size, args.test_size, args.val_size) == (10, 5, 2000)
    args = build_parser().parse_args(["train", "char-lm", "--embedding", "7"])
    assert args.embed_dim == 7
    args = build_parser().parse_args(["train", "fcn8s", "--fc-width", "9", "--batch-norm"])
    assert (args.hidden, args.norm) == (9, "batch")
    # a checkpoint written before the vocabulary keeps loading under today's names
    assert upgrade_args({"n_train": 64, "n_test": 32, "embedding": 8, "batch_norm": "off", "size": 20}) == \
        {"train_size": 64, "test_size": 32, "val_size": 32, "embed_dim": 8, "norm": "none", "image_size": 20}
    assert upgrade_args({"batch_norm": True, "width": 0.5, "fc_width": 16}) == \
        {"norm": "batch", "width_mult": 0.5, "hidden": 16}


def test_the_checkpoint_is_positional_in_every_command():
    commands = build_parser()._subparsers._group_actions[0].choices
    for command in ("eval", "predict", "translate", "sample"):
        positional = [a for a in commands[command]._actions if not a.option_strings]
        assert positional[0].dest == "checkpoint", command
        assert not any("--checkpoint" in a.option_strings for a in commands[command]._actions), command
