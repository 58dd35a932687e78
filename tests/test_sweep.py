"""`pyfastdl sweep`: the grid syntax, its errors, and a tiny sweep that writes its table and picture,
then is resumed (finished runs skipped)."""

import json
import os

import pytest

from pyfastdl.cli import main
from pyfastdl.train.sweep import cell_name, cells, parse_grid, parse_set, run_sweep, train_argv


def test_plain_axes():
    axes = parse_grid("optimizer=sgd,adam  norm=none,batch,layer dropout=0,0.5")
    assert [a.name for a in axes] == ["optimizer", "norm", "dropout"]
    grid = cells(axes)
    assert len(grid) == 12
    labels, options = grid[-1]
    assert labels == {"optimizer": "adam", "norm": "layer", "dropout": "0.5"}
    assert options == {"optimizer": "adam", "norm": "layer", "dropout": "0.5"}
    assert cell_name(labels) == "optimizer=adam-norm=layer-dropout=0.5"


def test_labelled_values_set_several_options():
    axes = parse_grid("optim=sgd(optimizer=sgd,momentum=0),momentum(optimizer=sgd,momentum=0.9),adam(optimizer=adam) "
                      "reg=none(weight-decay=0,dropout=0),wd(weight_decay=5e-4),dropout(dropout=0.5)")
    grid = cells(axes)
    assert len(grid) == 9
    labels, options = grid[1 * 3 + 1]
    assert labels == {"optim": "momentum", "reg": "wd"}
    assert options == {"optimizer": "sgd", "momentum": "0.9", "weight_decay": "5e-4"}
    assert train_argv("lenet", options, 2, "o", 1)[-6:] == ["--optimizer", "sgd", "--momentum", "0.9",
                                                             "--weight-decay", "5e-4"]
    assert parse_set("schedule=constant shift=0") == {"schedule": "constant", "shift": "0"}


@pytest.mark.parametrize("grid,message", [
    ("", "empty"), ("norm", "name=value"), ("norm=", "name=value"), ("norm=a,,b", "empty value"),
    ("o=sgd(momentum=0", "unbalanced"), ("o=sgd(momentum)", "option=value"), ("n=a,a", "repeats"),
    ("n=a n=b", "twice"),
])
def test_bad_grids(grid, message):
    with pytest.raises(ValueError, match=message):
        parse_grid(grid)


def test_bad_option_named_before_any_run(tmp_path):
    with pytest.raises(ValueError, match="not a valid training command.*--norm"):
        run_sweep("lenet", "norm=none,group", seeds=1, out=str(tmp_path))
    with pytest.raises(ValueError, match="both varied"):
        run_sweep("lenet", "norm=none,batch", "norm=batch", seeds=1, out=str(tmp_path))
    with pytest.raises(ValueError, match="seeds"):
        run_sweep("lenet", "norm=none", seeds=0, out=str(tmp_path))
    assert not os.listdir(tmp_path)  # nothing ran
    assert main(["sweep", "lenet", "--grid", "norm=none,group", "--out", str(tmp_path)]) == 2


def test_tiny_sweep_then_resume(tmp_path):
    lines = []
    summary = run_sweep("lenet", "norm=none,batch", "epochs=2 limit=96 batch_size=32", seeds=2, out=str(tmp_path),
                        jobs=2, log=lines.append)
    assert [r["cell"] for r in summary["rows"]] == ["norm=none", "norm=batch"]
    assert all(r["seeds"] == 2 and len(r["val_curves"]) == 2 and len(r["val_curves"][0]) == 2
               for r in summary["rows"])
    assert 0.0 <= summary["rows"][0]["test_mean"] <= 1.0 and summary["finished"] == 4
    for name in ("sweep.md", "sweep.json", "sweep.png"):
        assert (tmp_path / name).stat().st_size > 0
    table = (tmp_path / "sweep.md").read_text()
    assert "| norm | seeds | val accuracy | test accuracy | s/epoch |" in table and "- norm: none" in table
    # a run that did not finish (killed: no done.json) is redone, the finished ones are not
    os.remove(tmp_path / "norm=batch" / "seed1" / "done.json")
    lines.clear()
    again = run_sweep("lenet", "norm=none,batch", "epochs=2 limit=96 batch_size=32", seeds=2, out=str(tmp_path),
                      jobs=2, log=lines.append)
    assert "3 already done" in lines[0]
    assert sum("seed 1: ok" in line for line in lines) == 1
    assert json.loads((tmp_path / "sweep.json").read_text())["finished"] == 4 == again["finished"]
