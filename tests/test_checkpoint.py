"""Checkpoints: safetensors round trips of model and optimizer state, atomic writes, clear mismatches."""

import json
import os

import numpy as np
import pytest

import pyfastdl
from pyfastdl import nn, optim
from pyfastdl.checkpoint import (
    CheckpointMismatchError, load_checkpoint, read_checkpoint, read_metadata, save_checkpoint,
)
from pyfastdl.models import LeNet5


def lenet(seed, **kwargs):
    pyfastdl.manual_seed(seed)
    return LeNet5(**kwargs)


def train_step(model, opt, x, y):
    loss = nn.functional.cross_entropy(model(pyfastdl.tensor(x)), pyfastdl.tensor(y))
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_save_load_identical_outputs(tmp_path, rng):
    x = rng.standard_normal((4, 1, 32, 32)).astype(np.float32)
    a, b = lenet(1), lenet(2)
    assert not np.array_equal(a(pyfastdl.tensor(x)).detach().numpy(), b(pyfastdl.tensor(x)).detach().numpy())
    path = str(tmp_path / "lenet.safetensors")
    save_checkpoint(path, a, metadata={"recipe": "lenet", "epochs": 3})
    assert load_checkpoint(path, b) == {"recipe": "lenet", "epochs": 3}
    np.testing.assert_array_equal(a(pyfastdl.tensor(x)).detach().numpy(), b(pyfastdl.tensor(x)).detach().numpy())
    for (name, p), (name_b, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert name == name_b
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


@pytest.mark.parametrize("make_opt", [lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.1),
                                      lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)])
def test_optimizer_state_roundtrip(tmp_path, rng, make_opt):
    """Resuming from a checkpoint continues exactly as the uninterrupted run would."""
    x = rng.standard_normal((8, 1, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    a = lenet(3)
    opt_a = make_opt(a.parameters())
    train_step(a, opt_a, x, y)
    path = str(tmp_path / "ckpt.safetensors")
    save_checkpoint(path, a, opt_a)
    b = lenet(4)
    opt_b = make_opt(b.parameters())
    load_checkpoint(path, b, opt_b)
    train_step(a, opt_a, x, y)
    train_step(b, opt_b, x, y)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_mismatch_names_and_shapes(tmp_path):
    path = str(tmp_path / "ckpt.safetensors")
    save_checkpoint(path, lenet(0))
    with pytest.raises(CheckpointMismatchError,
                       match=r"shape mismatch: output\.weight: checkpoint \(10, 84\) vs model \(5, 84\); "
                             r"output\.bias: checkpoint \(10,\) vs model \(5,\)"):
        load_checkpoint(path, lenet(0, num_classes=5))
    with pytest.raises(ValueError,
                       match=r"missing from the checkpoint: weight, bias\. not in the model: c1\.bias, c1\.weight, "):
        load_checkpoint(path, nn.Linear(3, 2))


def test_file_is_safetensors_without_pickle(tmp_path):
    path = str(tmp_path / "ckpt.safetensors")
    model = lenet(0)
    save_checkpoint(path, model, optim.Adam(model.parameters()), metadata={"note": "x"})
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
    assert header["__metadata__"]["format"] == "pyfastdl-checkpoint-1"
    assert "model.c1.weight" in header and header["model.c1.weight"]["shape"] == [6, 1, 5, 5]
    model_state, optimizer_state, metadata = read_checkpoint(path)
    assert set(model_state) == set(model.state_dict()) and metadata == {"note": "x"}
    assert optimizer_state["param_groups"][0]["betas"] == (0.9, 0.999)
    assert read_metadata(path) == {"note": "x"}


def test_write_is_atomic(tmp_path, monkeypatch):
    """A failed save leaves the previous checkpoint in place and no temporary file behind."""
    import safetensors.numpy

    path = str(tmp_path / "ckpt.safetensors")
    save_checkpoint(path, lenet(0), metadata={"version": 1})

    def failing_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, lenet(1), metadata={"version": 2})
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]
    assert read_metadata(path) == {"version": 1}


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(str(tmp_path / "missing.safetensors"))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_checkpoint(str(garbage))
    from safetensors.numpy import save_file

    other = str(tmp_path / "other.safetensors")
    save_file({"w": np.ones(2, np.float32)}, other)
    with pytest.raises(ValueError, match="not a pyfastdl checkpoint"):
        load_checkpoint(other)
    path = str(tmp_path / "ckpt.safetensors")
    save_checkpoint(path, lenet(0))
    with pytest.raises(ValueError, match="holds no optimizer state"):
        model = lenet(0)
        load_checkpoint(path, model, optim.SGD(model.parameters(), lr=0.1))
