"""Training that survives interruption, and numbers and files that are checked before anything is
written: SIGINT/SIGTERM save a checkpoint at the next step, ``--resume`` ends bit-identical to an
uninterrupted run; a NaN loss stops the run keeping the last good checkpoint; bad options, optimizer
and schedule arguments, IDX files and checkpoints are clear errors naming the argument or the file."""

import argparse
import functools
import gzip
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys

import numpy as np
import pytest

import pyfastdl
import pyfastdl.train
from pyfastdl import nn, optim
from pyfastdl.checkpoint import read_checkpoint, read_training_state, save_checkpoint
from pyfastdl.cli import main
from pyfastdl.data import ArrayDataset, DataLoader, read_idx
from pyfastdl.optim import lr_scheduler
from pyfastdl.tasks.classification import ClassificationRecipe
from pyfastdl.train import fit
from pyfastdl.train.loop import resume_arguments
from pyfastdl.train.resume import NonFiniteLossError, TrainingInterrupted, random_state

# 6 batches of 16 per epoch, 2 epochs, one thread (multi-threaded kernels need not sum in one order)
QUICK = ["--epochs", "2", "--limit", "96", "--batch-size", "16", "--device", "cpu", "--quiet", "--threads", "1"]
CHECKPOINT = "checkpoint.safetensors"


def signal_at(step_numbers, signum=signal.SIGINT):
    """An ``on_step`` hook that sends this process ``signum`` after the given global steps."""
    def hook(step):
        if step in step_numbers:
            os.kill(os.getpid(), signum)
    return hook


def assert_same_run(a, b):
    """Two run directories hold bit-identical weights, optimizer states and epoch metrics."""
    model_a, opt_a, meta_a = read_checkpoint(os.path.join(a, CHECKPOINT))
    model_b, opt_b, meta_b = read_checkpoint(os.path.join(b, CHECKPOINT))
    assert model_a.keys() == model_b.keys()
    for name in model_a:
        np.testing.assert_array_equal(model_a[name], model_b[name], err_msg=name)
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for index, state in opt_a["state"].items():
        for key, value in state.items():
            np.testing.assert_array_equal(value, opt_b["state"][index][key], err_msg=f"{index}.{key}")
    assert meta_a["test"] == meta_b["test"]
    history_a, history_b = (read_training_state(os.path.join(d, CHECKPOINT))["history"] for d in (a, b))
    drop = ("seconds", "train_samples_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in history_a] == \
           [{k: v for k, v in r.items() if k not in drop} for r in history_b]


@pytest.fixture(scope="module")
def lenet_reference(tmp_path_factory):
    """The uninterrupted run every interrupted LeNet run must reproduce."""
    out = tmp_path_factory.mktemp("lenet") / "reference"
    assert main(["train", "lenet", *QUICK, "--out", str(out)]) == 0
    return str(out)


@pytest.mark.parametrize("steps", [(3,), (6,), (2, 9)], ids=["mid-epoch", "last-batch-of-epoch", "twice"])
def test_interrupted_lenet_resumes_bit_identically(tmp_path, monkeypatch, capsys, lenet_reference, steps):
    out = str(tmp_path / "run")
    monkeypatch.setattr(pyfastdl.train, "fit", functools.partial(fit, on_step=signal_at(steps)))
    assert main(["train", "lenet", *QUICK, "--out", out]) == 130
    err = capsys.readouterr().err
    assert f"SIGINT at step {steps[0]}" in err and f"--resume {out}" in err
    state = read_training_state(os.path.join(out, CHECKPOINT))
    assert state["step"] == steps[0] and not state["finished"]
    for step in steps[1:]:  # interrupted again after resuming
        assert main(["train", "lenet", "--resume", out, "--quiet"]) == 130
        assert f"SIGINT at step {step}" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["train", "lenet", "--resume", out, "--quiet"]) == 0
    assert_same_run(lenet_reference, out)
    assert read_training_state(os.path.join(out, CHECKPOINT))["finished"]


@pytest.mark.parametrize("name,options", [
    ("yolov1", ["--image-size", "32", "--grid", "4", "--train-size", "16", "--test-size", "4", "--batch-size", "4"]),
    ("transformer", ["--layers", "1", "--d-model", "16", "--heads", "2", "--d-ff", "32", "--batch-size", "16",
                     "--train-size", "120", "--val-size", "8", "--test-size", "8"]),
])
def test_other_recipes_resume_bit_identically(tmp_path, monkeypatch, name, options):
    """The loop, not the recipe, makes a run resumable: detection (random flips, mAP's running lists)
    and translation (dropout, warm-up schedule, vocabularies in the metadata) need nothing of their own."""
    command = ["train", name, "--epochs", "2", "--device", "cpu", "--quiet", "--threads", "1", *options]
    assert main([*command, "--out", str(tmp_path / "reference")]) == 0
    monkeypatch.setattr(pyfastdl.train, "fit", functools.partial(fit, on_step=signal_at({2})))
    assert main([*command, "--out", str(tmp_path / "run")]) == 130
    monkeypatch.undo()
    assert main(["train", name, "--resume", str(tmp_path / "run"), "--quiet"]) == 0
    assert_same_run(str(tmp_path / "reference"), str(tmp_path / "run"))


class Jitter:
    """Augmentation that draws from its own numpy generator, numpy's global one and Python's."""

    def __init__(self, seed):
        self.generator = np.random.default_rng(seed)

    def __call__(self, x):
        noise = self.generator.normal(0, 0.1, x.shape) + np.random.normal(0, 0.1, x.shape)
        return (x + noise * random.random()).astype(np.float32)


class DropoutRecipe(ClassificationRecipe):
    """A small MLP with dropout, trained with Adam and a cosine schedule on augmented blobs."""

    name = "dropout-toy"
    poison_after = None  # a step after which the loss becomes NaN

    def default_hparams(self, args):
        return dict(epochs=3, batch_size=10, lr=0.01, optimizer="adam", weight_decay=1e-4, momentum=0.0,
                    schedule="cosine", threads=1)

    def build_model(self, args):
        return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))

    def datasets(self, args):
        rng = np.random.default_rng(0)
        y = rng.integers(0, 2, 100)
        x = (rng.standard_normal((100, 2)) + 3 * y[:, None] - 1.5).astype(np.float32)
        return {"train": ArrayDataset(x[:70], y[:70], transform=Jitter(args.seed)),
                "val": ArrayDataset(x[70:85], y[70:85]), "test": ArrayDataset(x[85:], y[85:])}

    def loss_fn(self, output, target):
        loss = super().loss_fn(output, target)
        return loss * float("nan") if self.poison_after is not None else loss


def toy_args(out, **overrides):
    recipe = DropoutRecipe()
    args = argparse.Namespace(device="cpu", seed=3, limit=None, out=str(out), **recipe.default_hparams(None))
    vars(args).update(overrides)
    return recipe, args


def quiet_fit(recipe, args, **kwargs):
    return fit(recipe, args, progress=False, log=lambda *a: None, **kwargs)


@pytest.mark.parametrize("step", [4, 8])  # 7 batches per epoch: mid-epoch 1, first batch of epoch 2
def test_dropout_adam_run_resumes_bit_identically_after_sigterm(tmp_path, step):
    recipe, args = toy_args(tmp_path / "reference")
    reference = quiet_fit(recipe, args)
    recipe, args = toy_args(tmp_path / "run")
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match=f"SIGTERM at step {step} ") as stopped:
        quiet_fit(recipe, args, on_step=signal_at({step}, signal.SIGTERM))
    assert stopped.value.exit_code == 143
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # restored
    random.random()  # disturb every global stream before resuming
    np.random.random()
    pyfastdl.manual_seed(99)
    resumed = quiet_fit(recipe, resume_arguments(str(tmp_path / "run")))
    assert_same_run(str(tmp_path / "reference"), str(tmp_path / "run"))
    assert resumed["test"] == reference["test"] and len(resumed["epochs"]) == 3


def test_checkpoint_holds_the_whole_training_state(tmp_path):
    recipe, args = toy_args(tmp_path)
    with pytest.raises(TrainingInterrupted):
        quiet_fit(recipe, args, on_step=signal_at({4}))
    state = read_training_state(str(tmp_path / CHECKPOINT))
    assert (state["epoch"], state["step"], state["loader"]["batches_yielded"]) == (1, 4, 4)
    assert state["scheduler"]["last_epoch"] == 4 and state["totals"]["loss"]["count"] == 40
    generators = state["random"]["generators"]
    assert set(generators) == {"pyfastdl", "datasets['train'].transform.generator"}
    assert {"python", "numpy"} <= set(state["random"])
    _, optimizer_state, _ = read_checkpoint(str(tmp_path / CHECKPOINT))
    assert all(s["step"] == 4 and "exp_avg_sq" in s for s in optimizer_state["state"].values())


def test_subprocess_sigint_saves_and_resume_matches(tmp_path, lenet_reference):
    """A real Ctrl-C to `pyfastdl train` from outside: exit code 130, then --resume finishes the run."""
    out = str(tmp_path / "run")
    command = [sys.executable, "-m", "pyfastdl", "train", "lenet", *QUICK, "--epochs", "2", "--out", out]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert "parameters on cpu" in proc.stdout.readline()  # training has started
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130, err
    assert "SIGINT at " in err and "Traceback" not in err
    result = subprocess.run([sys.executable, "-m", "pyfastdl", "train", "lenet", "--resume", out, "--quiet"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert_same_run(lenet_reference, out)


def test_resume_refuses_other_options_finished_runs_and_other_models(tmp_path, capsys):
    recipe, args = toy_args(tmp_path)
    with pytest.raises(TrainingInterrupted):
        quiet_fit(recipe, args, on_step=signal_at({2}))
    differ = r"keeps the options it started with; these differ: --lr 0\.5 \(the run has 0\.01\)"
    with pytest.raises(ValueError, match=differ):
        quiet_fit(recipe, resume_arguments(str(tmp_path), {"lr": 0.5}))
    quiet_fit(recipe, resume_arguments(str(tmp_path), {"threads": 2}))  # how it runs may change
    with pytest.raises(ValueError, match="finished all its 3 epochs; there is nothing to resume"):
        quiet_fit(recipe, resume_arguments(str(tmp_path)))
    assert main(["train", "lenet", "--resume", str(tmp_path), "--quiet"]) == 2
    assert "a checkpoint of 'dropout-toy', not of 'lenet'" in capsys.readouterr().err


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    recipe, args = toy_args(tmp_path)

    def poison(step):
        if step == 9:
            recipe.poison_after = step

    with pytest.raises(NonFiniteLossError, match=r"step 10 \(epoch 2, batch 3 of 7\): the training loss is nan; "
                                                 r"stopped before .* last good checkpoint, from step 7, is "):
        quiet_fit(recipe, args, on_step=poison)
    state = read_training_state(str(tmp_path / CHECKPOINT))
    assert state["step"] == 7 and state["epoch"] == 2
    model_state, _, _ = read_checkpoint(str(tmp_path / CHECKPOINT))
    assert all(np.isfinite(v).all() for v in model_state.values())
    assert not os.path.exists(tmp_path / "metrics.json")


def test_cli_exits_1_on_a_diverging_run(tmp_path, capsys):
    code = main(["train", "lenet", *QUICK, "--lr", "1e30", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and re.search(r"step \d+ \(epoch 1, batch \d of 6\): the training loss is (nan|inf)", err), err


# ---- numbers -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("good")
    assert main(["train", "lenet", *QUICK, "--epochs", "1", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("option,value,message", [
    ("--epochs", "0", "--epochs must be a whole number >= 1, got 0"),
    ("--epochs", "-1", "--epochs must be a whole number >= 1, got -1"),
    ("--batch-size", "0", "--batch-size must be a whole number >= 1"),
    ("--lr", "nan", "--lr must be a finite number, got nan"),
    ("--lr", "inf", "--lr must be a finite number, got inf"),
    ("--lr", "-0.1", "--lr must be a finite number >= 0, got -0.1"),
    ("--momentum", "nan", "--momentum must be a finite number, got nan"),
    ("--weight-decay=-inf", None, "--weight-decay must be a finite number, got -inf"),
    ("--weight-decay=-1e-4", None, "--weight-decay must be a finite number >= 0, got -0.0001"),
    ("--val-fraction", "nan", "--val-fraction must be a finite number, got nan"),
    ("--threads", "0", "--threads must be a whole number >= 1"),
    ("--limit", "0", "--limit must be a whole number >= 1"),
    ("--seed", "-2", "--seed must be a whole number >= 0"),
    ("--shift", "-1", "--shift must be a whole number >= 0, got -1"),  # issue 13's wider probe: trained with it
    ("--val-fraction", "1", "--val-fraction must be in [0, 1), got 1.0"),
    ("--val-fraction=-0.1", None, "--val-fraction must be in [0, 1), got -0.1"),
])
def test_bad_numbers_are_refused_before_anything_is_written(good_run, capsys, option, value, message):
    before = {name: (good_run / name).read_bytes() for name in os.listdir(good_run)}
    assert main(["train", "lenet", *QUICK, "--out", str(good_run), option, *([value] if value else [])]) == 2
    assert message in capsys.readouterr().err
    assert {name: (good_run / name).read_bytes() for name in os.listdir(good_run)} == before


def test_fit_checks_numbers_for_library_callers(tmp_path):
    for option, value, message in [("lr", float("nan"), "--lr must be a finite number >= 0, got nan"),
                                   ("epochs", 0, "--epochs must be a whole number >= 1, got 0"),
                                   ("epochs", 2.0, "--epochs must be a whole number >= 1, got 2.0"),
                                   ("dropout", float("inf"), "--dropout must be a finite number, got inf")]:
        recipe, args = toy_args(tmp_path, **{option: value})
        with pytest.raises(ValueError, match=message):
            quiet_fit(recipe, args)
    assert os.listdir(tmp_path) == []


def test_other_commands_refuse_non_finite_numbers(capsys):
    assert main(["sample", "nowhere", "--temperature", "nan"]) == 2
    assert "pyfastdl sample: error: --temperature must be a finite number, got nan" in capsys.readouterr().err
    for option, value, message in [("--length", "-1", "--length must be >= 0, got -1"),  # sampled nothing, exit 0
                                   ("--top-k", "0", "--top-k must be >= 1, got 0"),
                                   ("--temperature", "-1", "--temperature must be >= 0 (0: greedy), got -1.0")]:
        assert main(["sample", "nowhere", option, value]) == 2
        assert message in capsys.readouterr().err
    assert main(["translate", "nowhere", "one", "--length-penalty", "inf"]) == 2
    assert "--length-penalty must be a finite number, got inf" in capsys.readouterr().err


@pytest.mark.parametrize("make,match", [
    (lambda p: optim.SGD(p, lr=float("nan")), r"SGD: invalid learning rate lr=nan"),
    (lambda p: optim.SGD(p, lr=float("inf")), r"SGD: invalid learning rate lr=inf"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=float("nan")), r"SGD: invalid momentum=nan"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), r"SGD: invalid momentum=-0.5"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=float("inf")), r"SGD: invalid weight_decay=inf"),
    (lambda p: optim.SGD(p, lr=0.1, dampening=float("nan")), r"SGD: invalid dampening=nan"),
    (lambda p: optim.Adam(p, lr=float("nan")), r"Adam: invalid learning rate lr=nan"),
    (lambda p: optim.Adam(p, betas=(float("nan"), 0.9)), r"Adam: invalid betas\[0\]=nan; it must be in \[0.0, 1.0\)"),
    (lambda p: optim.Adam(p, betas=(0.9, 1.0)), r"Adam: invalid betas\[1\]=1.0"),
    (lambda p: optim.Adam(p, betas=(0.9,)), r"Adam: invalid betas=\(0.9,\); it must be a pair"),
    (lambda p: optim.Adam(p, eps=float("nan")), r"Adam: invalid eps=nan"),
    (lambda p: optim.AdamW(p, eps=-1e-8), r"AdamW: invalid eps=-1e-08"),
    (lambda p: optim.AdamW(p, weight_decay=float("nan")), r"AdamW: invalid weight_decay=nan"),
    (lambda p: optim.SGD([{"params": p, "lr": float("nan")}], lr=0.1), r"SGD: invalid learning rate lr=nan"),
    # issue 13's wider probe: the optimizer by name (torch's own messages name none)
    (lambda p: optim.Adam([], lr=0.1), r"Adam: optimizer got an empty parameter list"),
    (lambda p: optim.AdamW(None), TypeError("AdamW: params argument .* but got NoneType")),
    (lambda p: optim.SGD([1, 2], lr=0.1), TypeError("SGD: optimizer can only optimize Tensors, got int in params")),
])
def test_optimizers_refuse_non_finite_and_negative_hyperparameters(make, match):
    params = [nn.Parameter(pyfastdl.tensor(np.ones(2)))]
    error = type(match) if isinstance(match, Exception) else ValueError
    with pytest.raises(error, match=str(match.args[0]) if isinstance(match, Exception) else match):
        make(params)


@pytest.mark.parametrize("make,match", [
    (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=0), r"CosineAnnealingLR: T_max must be a whole number >= 1"),
    (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=5, eta_min=float("nan")),
     r"CosineAnnealingLR: invalid eta_min=nan"),
    (lambda o: lr_scheduler.StepLR(o, step_size=0), r"StepLR: step_size must be a whole number >= 1, got 0"),
    (lambda o: lr_scheduler.StepLR(o, step_size=2, gamma=float("inf")), r"StepLR: invalid gamma=inf"),
    (lambda o: lr_scheduler.LinearLR(o, start_factor=float("nan")), r"LinearLR: start_factor must be in \(0, 1\]"),
    (lambda o: lr_scheduler.LinearLR(o, total_iters=0), r"LinearLR: total_iters must be a whole number >= 1"),
    (lambda o: lr_scheduler.InverseSqrtLR(o, warmup_steps=float("nan")), r"InverseSqrtLR: warmup_steps must be"),
    (lambda o: lr_scheduler.InverseSqrtLR(o, warmup_steps=4, d_model=0), r"InverseSqrtLR: d_model must be"),
])
def test_schedules_refuse_impossible_arguments(make, match):
    optimizer = optim.SGD([nn.Parameter(pyfastdl.tensor(np.ones(2)))], lr=0.1)
    with pytest.raises(ValueError, match=match):
        make(optimizer)


# ---- files ---------------------------------------------------------------------------------------
def test_corrupt_gzip_and_wrapping_idx_headers_name_the_file(tmp_path):
    data = gzip.compress(b"\0\0\x08\x01" + struct.pack(">I", 64) + bytes(range(64)))
    damaged = bytearray(data)
    damaged[len(data) // 2:len(data) // 2 + 4] = b"\xff\xff\xff\xff"
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=f"{path}: cannot read: "):
        read_idx(str(path))
    wraps = tmp_path / "wraps-idx3-ubyte"  # 2^32-1 cubed items: an int64 product would wrap
    wraps.write_bytes(b"\0\0\x0d\x03" + struct.pack(">III", 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(16))
    with pytest.raises(ValueError, match=f"{wraps}: IDX file truncated: shape \\(4294967295, 4294967295, "
                                         r"4294967295\) of float32 needs \d{30,} data bytes, found 16"):
        read_idx(str(wraps))
    longer = tmp_path / "longer-idx1-ubyte"
    longer.write_bytes(b"\0\0\x08\x01" + struct.pack(">I", 2) + bytes(3))
    with pytest.raises(ValueError, match=f"{longer}: IDX file longer than its header says"):
        read_idx(str(longer))


def test_damaged_checkpoints_are_clear_errors_and_nothing_is_overwritten(tmp_path, good_run, capsys):
    model = nn.Linear(2, 2)
    no_args = tmp_path / "no_args.safetensors"
    save_checkpoint(str(no_args), model, metadata={"recipe": "lenet"})
    for command in (["eval", str(no_args), "--device", "cpu"], ["predict", str(no_args), "--device", "cpu"],
                    ["train", "lenet", "--resume", str(no_args)]):
        assert main(command) == 2
        assert f"{no_args}: checkpoint metadata has no 'args'" in capsys.readouterr().err

    good = (good_run / CHECKPOINT).read_bytes()
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / CHECKPOINT).write_bytes(good[:len(good) - 1000])
    assert main(["train", "lenet", "--resume", str(truncated), "--quiet"]) == 2
    assert f"{truncated / CHECKPOINT}: not a safetensors file, or a damaged one" in capsys.readouterr().err
    assert (truncated / CHECKPOINT).read_bytes() == good[:len(good) - 1000]
    assert os.listdir(truncated) == [CHECKPOINT]

    header_length = int.from_bytes(good[:8], "little")
    header = good[8:8 + header_length].replace(b'"metadata":"{', b'"metadata":"[', 1)
    bad_json = tmp_path / "bad_json.safetensors"
    bad_json.write_bytes(good[:8] + header + good[8 + header_length:])
    assert main(["eval", str(bad_json), "--device", "cpu"]) == 2
    assert f"{bad_json}: damaged checkpoint: its 'metadata' metadata is missing or not JSON" in capsys.readouterr().err


def test_predict_and_eval_blame_the_right_argument(good_run, capsys):
    checkpoint = str(good_run / CHECKPOINT)
    assert main(["predict", checkpoint, "--device", "cpu", "--count", "0"]) == 2
    assert "predict: --count must be a whole number >= 1, got 0" in capsys.readouterr().err
    assert main(["eval", checkpoint, "--device", "cpu", "--batch-size", "0"]) == 2
    assert "eval: --batch-size must be a whole number >= 1, got 0" in capsys.readouterr().err


def test_next_save_removes_temporaries_of_killed_saves(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f".{CHECKPOINT}.tmp-{host}-{dead.pid}"
    live = tmp_path / f".{CHECKPOINT}.tmp-{host}-{os.getppid()}"  # a save still running elsewhere
    other_host = tmp_path / f".{CHECKPOINT}.tmp-elsewhere-{dead.pid}"
    older_name = tmp_path / f".{CHECKPOINT}.tmp-{dead.pid}"
    for path in (stale, live, other_host, older_name):
        path.write_bytes(b"partial")
    save_checkpoint(str(tmp_path / CHECKPOINT), nn.Linear(2, 2))
    assert sorted(os.listdir(tmp_path)) == sorted([CHECKPOINT, live.name, other_host.name])


# ---- the pieces ----------------------------------------------------------------------------------
@pytest.mark.parametrize("position", [0, 3, 5])
def test_data_loader_state_resumes_mid_epoch(position):
    dataset = ArrayDataset(np.arange(23))
    loader = DataLoader(dataset, batch_size=4, shuffle=True, seed=5)
    first_epoch = [b[0].tolist() for b in loader]
    epoch = iter(loader)
    batches = [next(epoch)[0].tolist() for _ in range(position)]
    state = loader.state_dict()
    resumed = DataLoader(dataset, batch_size=4, shuffle=True, seed=123)
    resumed.load_state_dict(state)
    whole_epoch = batches + [b[0].tolist() for b in epoch]
    assert batches + [b[0].tolist() for b in resumed] == whole_epoch
    assert [b[0].tolist() for b in resumed] == [b[0].tolist() for b in loader] != first_epoch  # next epochs agree
    with pytest.raises(ValueError, match="batches_yielded=7 is outside this loader's epoch of 6 batches"):
        resumed.load_state_dict({**state, "batches_yielded": 7})


def test_random_state_finds_generators_anywhere_in_the_run():
    class Holder:
        def __init__(self):
            self.items = [{"aug": np.random.default_rng(1)}, (np.random.RandomState(2),)]
            self.same = self.items  # seen once
            self.tensor = pyfastdl.tensor(np.ones(2))

    state = random_state({"data": Holder(), "pyfastdl": pyfastdl.random.default_generator})
    assert set(state["generators"]) == {"data.items[0]['aug']", "data.items[1][0]", "pyfastdl"}


def test_generator_state_round_trip():
    generator = pyfastdl.random.Generator(11)
    generator.numpy.random(5)
    state = generator.get_state()
    expected = generator.numpy.random(5)
    restored = pyfastdl.random.Generator(0).set_state(state)
    np.testing.assert_array_equal(restored.numpy.random(5), expected)
    assert restored.initial_seed() == 11
    with pytest.warns(UserWarning, match="the GPU stream .* restarts from the seed"):
        restored.set_state({**state, "cupy_used": True})


def test_conv_weight_gradient_is_the_same_on_every_call_with_two_threads(rng):
    """Resuming is bit-identical only if every step is: the threads' partial weight gradients must be
    summed in the same grouping on every call (LeNet's c3 shapes; ReLU and pooling make dy sparse)."""
    from pyfastdl.nn import functional as F
    from pyfastdl.train.loop import kernel_threads

    x = rng.standard_normal((8, 6, 14, 14)).astype(np.float32)
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)

    def weight_grad():
        wt = pyfastdl.tensor(w, requires_grad=True)
        y = F.max_pool2d(F.relu(F.conv2d(pyfastdl.tensor(x), wt)), 2)
        (y * y).sum().backward()
        return wt.grad.numpy()

    with kernel_threads(2):
        first = weight_grad()
        for _ in range(100):
            np.testing.assert_array_equal(weight_grad(), first)
