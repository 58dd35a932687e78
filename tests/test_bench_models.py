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


def test_bench_isa_runs_a_narrower_copy_and_names_it(tmp_path, capsys):
    """pyfastdl bench --isa base: the models' steps on the base copy of the kernels, the saved table
    naming it (in its file name too, beside the best copy's); an unknown set is a clear error."""
    from pyfastdl._core import _C

    best = _C.cpu.get_isa()
    args = build_parser().parse_args(["bench", "models", "lenet", "--isa", "base", "--rounds", "1", "--warmup", "1",
                                      "--conditions", "1 thread", "--no-memory", "--no-torch", "--save", str(tmp_path)])
    try:
        assert args.func(args) == 0
        (saved,) = tmp_path.glob("*.json")
        assert json.loads(saved.read_text())["meta"]["instruction_set"] == "base"
        assert saved.stem.endswith("-models" if best == "base" else "-models-base")
    finally:
        _C.cpu.set_isa(best)
    args = build_parser().parse_args(["bench", "models", "lenet", "--isa", "avx9"])
    assert args.func(args) == 2
    assert "--isa avx9" in capsys.readouterr().out
