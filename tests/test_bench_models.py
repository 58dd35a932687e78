"""The end-to-end benchmark's machinery (pyfastdl.bench_models) on its smallest case."""

import importlib.util
import json

import pytest

from pyfastdl import bench_models
from pyfastdl.cli import build_parser

HAVE_TORCH = importlib.util.find_spec("torch") is not None


def test_one_condition_of_lenet_gives_a_row_and_a_saved_table(tmp_path):
    result = bench_models.run(["lenet"], conditions=("1 thread",), rounds=1, warmup=1, memory=False,
                              with_torch=HAVE_TORCH, log=lambda *a: None)
    (row,) = result["cases"]
    assert row["case"] == "lenet" and row["parameters"] == 61706 and row["batch_size"] == 64
    t = row["times"]["1 thread"]
    assert t["ours_ms"] > 0
    assert (t["torch_ms"] > 0 and t["ratio"] == pytest.approx(t["torch_ms"] / t["ours_ms"])) if HAVE_TORCH \
        else t["torch_ms"] is None
    stem = bench_models.save(result, str(tmp_path), note="test run")
    saved = json.loads(open(stem + ".json").read())
    assert saved["meta"]["cpu"] and saved["meta"]["instruction_set"] and saved["meta"]["note"] == "test run"
    table = open(stem + ".md").read()
    assert stem.endswith("-models") and "| lenet (64) |" in table and "geometric mean" in table


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
def test_the_torch_twin_has_the_same_parameter_count_and_a_similar_first_loss():
    ours, theirs = bench_models.build_pair("resnet20")
    assert ours.num_parameters() == theirs.num_parameters()
    assert abs(ours().item() - theirs().item()) < 0.5  # same architecture and initial scale: both near ln(6)


def test_peak_memory_is_measured_in_a_fresh_process():
    assert 0 < bench_models.peak_memory("lenet", "pyfastdl") < 500


def test_the_command_line_routes_bench_models_and_rejects_unknown_models(capsys):
    args = build_parser().parse_args(["bench", "models", "nope", "--rounds", "1", "--no-memory"])
    assert args.func(args) == 2
    assert "unknown model nope" in capsys.readouterr().out
