"""Issue 13's held-out kinds of bad input (beyond tools/probe_bad_inputs.py's mutations of the op
table): dimensions out of range, optimizer and scheduler states, data loading, state dicts, class
weights, damaged checkpoint options and the command line's model options. Each was a crash-free but
unclear error (a KeyError, numpy's words, an AttributeError) or a silent wrong answer (a dim out of
range flattened the wrong axes, an int checkpoint tensor read as float weights); each must now be a
ValueError/TypeError/IndexError naming the op or option and the argument, or the right answer."""

import json
import os

import numpy as np
import pytest
from conftest import requires_torch

import pyfastdl as pf
from pyfastdl import data as D
from pyfastdl import nn, optim
from pyfastdl.cli import main
from pyfastdl.data import shapes
from pyfastdl.nn import functional as F
from pyfastdl.optim import lr_scheduler

NAN = float("nan")
CHECKPOINT = "checkpoint.safetensors"


def t(*shape, dtype=np.float32):
    return pf.tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype))


def param():
    return nn.Parameter(pf.tensor(np.ones((3, 2), np.float32)))


def stepped(name):
    """An optimizer of class ``name`` after one step (so it has state)."""
    p = param()
    opt = getattr(optim, name)([p], lr=0.1, **({"momentum": 0.9} if name == "SGD" else {}))
    (p * p).sum().backward()
    opt.step()
    return opt


def loader(**kwargs):
    return D.DataLoader(D.ArrayDataset(np.zeros((10, 2), np.float32), np.arange(10)), **kwargs)


X = t(2, 3)
# (id, call, exception type, regex the message must match)
ERRORS = [
    # dims: were flatten's silent wrap-around (x.flatten(3) of a 2-d x flattened nothing) and unsqueeze's
    ("flatten-dim-oob", lambda: X.flatten(3), IndexError, r"^flatten: start_dim=3, end_dim=-1: dimension 3 is out"),
    ("flatten-start-after-end", lambda: X.flatten(1, 0), ValueError, r"^flatten: start_dim 1 comes after end_dim 0"),
    ("Flatten-end-huge", lambda: nn.Flatten(1, 2**62)(t(2, 3, 4)), IndexError, r"^flatten: .*end_dim=46116860184"),
    ("Flatten-start-after-end", lambda: nn.Flatten(2, 1)(t(2, 3, 4)), ValueError, r"^flatten: start_dim 2 comes after"),
    ("unsqueeze-oob", lambda: X.unsqueeze(3), IndexError, r"dimension 3 is out of range \[-3, 2\] for shape \(2, 3\)"),
    ("unsqueeze-float", lambda: X.unsqueeze(1.5), TypeError, r"dim must be an int"),
    ("reshape-two-unknown", lambda: X.reshape(-1, -1), ValueError, r"^reshape: can only specify one unknown dimension"),
    ("reshape-float", lambda: X.reshape(1.5, 4), TypeError, r"^reshape: .*new shape \(1\.5, 4\)"),
    ("index-float", lambda: X[1.5], IndexError, r"^index: only integers.*\(tensor of shape \(2, 3\)\)"),
    ("index-oob", lambda: X[5], IndexError, r"^index: index 5 is out of bounds"),
    # class weights of another dtype: cross_entropy computed in float64 (a float32 input's loss came back float64)
    ("cross_entropy-int-weight", lambda: F.cross_entropy(t(5, 4), pf.tensor([0, 1, 2, 3, 0]), weight=pf.tensor(
        [1, 1, 1, 1])), TypeError, r"^cross_entropy: weight is int64 on cpu, input float32 on cpu"),
    ("nll_loss-double-weight", lambda: F.nll_loss(t(5, 4), pf.tensor([0, 1, 2, 3, 0]), weight=t(
        4, dtype=np.float64)), TypeError, r"^nll_loss: weight is float64"),
    # optimizers
    ("SGD-group-without-params", lambda: optim.SGD([{"lr": 0.1}], lr=0.1), ValueError,
     r"^SGD: a parameter group must have a 'params' entry"),
    ("Adam.load_state_dict-junk", lambda: stepped("Adam").load_state_dict({"foo": 1}), ValueError,
     r"^Adam\.load_state_dict: state_dict must be an optimizer's state_dict\(\) .* keys \['foo'\]"),
    ("SGD.load_state_dict-None", lambda: stepped("SGD").load_state_dict(None), ValueError,
     r"^SGD\.load_state_dict: .* got NoneType"),
    ("AdamW.load_state_dict-groups", lambda: stepped("AdamW").load_state_dict({"state": {}, "param_groups": []}),
     ValueError, r"^AdamW\.load_state_dict: loaded state dict has 0 parameter groups; this optimizer has 1"),
    ("SGD.load_state_dict-nan-lr", lambda: (lambda o: o.load_state_dict({**o.state_dict(), "param_groups": [
        {**o.state_dict()["param_groups"][0], "lr": NAN}]}))(stepped("SGD")), ValueError,
     r"^SGD: invalid learning rate lr=nan"),
    ("Adam.load_state_dict-shape", lambda: (lambda o: o.load_state_dict({**o.state_dict(), "state": {0: {
        **o.state_dict()["state"][0], "exp_avg": np.zeros((4, 2), np.float32)}}}))(stepped("Adam")), ValueError,
     r"^Adam\.load_state_dict: state 0\.exp_avg has shape \(4, 2\); its parameter has shape \(3, 2\)"),
    ("Adam.load_state_dict-unknown-index", lambda: (lambda o: o.load_state_dict({**o.state_dict(), "state": {
        7: o.state_dict()["state"][0]}}))(stepped("Adam")), ValueError,
     r"^Adam\.load_state_dict: the state of parameter 7, which no parameter group lists"),
    # schedulers
    ("StepLR-resume-without-initial_lr", lambda: lr_scheduler.StepLR(optim.SGD([param()], lr=0.1), 2, last_epoch=5),
     ValueError, r"^StepLR: last_epoch=5 resumes a schedule, but param_groups\[0\] has no 'initial_lr'"),
    ("CosineAnnealingLR-last_epoch-nan", lambda: lr_scheduler.CosineAnnealingLR(optim.SGD([param()], lr=0.1), 4,
     last_epoch=NAN), ValueError, r"^CosineAnnealingLR: last_epoch must be a whole number >= -1"),
    ("LambdaLR-not-callable", lambda: lr_scheduler.LambdaLR(optim.SGD([param()], lr=0.1), None), TypeError,
     r"^LambdaLR: lr_lambda must be a function"),
    ("LambdaLR-optimizer-None", lambda: lr_scheduler.LambdaLR(None, lambda e: 1.0), TypeError,
     r"^LambdaLR: optimizer must be an Optimizer, got NoneType"),
    ("LambdaLR-nan-rate", lambda: lr_scheduler.LambdaLR(optim.SGD([param()], lr=0.1), lambda e: NAN), ValueError,
     r"^LambdaLR at epoch 0: invalid learning rate lr=nan"),
    ("StepLR-rate-overflows", lambda: [s.step() for s in [lr_scheduler.StepLR(optim.SGD([param()], lr=0.1), 1,
                                                                               gamma=1e300)] for _ in range(3)],
     ValueError, r"^StepLR at epoch 2: invalid learning rate lr=inf"),
    ("LinearLR-str-factor", lambda: lr_scheduler.LinearLR(optim.SGD([param()], lr=0.1), start_factor="x"),
     ValueError, r"^LinearLR: start_factor must be in \(0, 1\]"),
    ("StepLR.load_state_dict-junk", lambda: lr_scheduler.StepLR(optim.SGD([param()], lr=0.1), 2).load_state_dict(
        {"bogus": 1}), ValueError, r"^StepLR\.load_state_dict: state_dict must be a StepLR's state_dict\(\)"),
    # data loading
    ("DataLoader-batch_size-None", lambda: loader(batch_size=None), ValueError,
     r"^DataLoader: batch_size must be a positive integer, got None"),
    ("DataLoader-batch_size-nan", lambda: loader(batch_size=NAN), ValueError, r"^DataLoader: batch_size must be"),
    ("DataLoader-batch_size-inf", lambda: loader(batch_size=float("inf")), ValueError, r"^DataLoader: batch_size"),
    ("DataLoader-seed-negative", lambda: loader(seed=-1), ValueError, r"^DataLoader: seed must be None or a whole"),
    ("DataLoader-dataset-None", lambda: D.DataLoader(None), TypeError, r"^DataLoader: dataset must have len\(\)"),
    ("DataLoader.load_state_dict-junk", lambda: loader().load_state_dict({"x": 1}), ValueError,
     r"^DataLoader\.load_state_dict: state must be a DataLoader's state_dict\(\)"),
    ("ArrayDataset-None", lambda: D.ArrayDataset(None), TypeError, r"^ArrayDataset: arrays\[0\] must be an array"),
    ("ArrayDataset-index-float", lambda: D.ArrayDataset(np.zeros(4))[1.5], TypeError,
     r"^ArrayDataset: index must be an integer, got float"),
    ("ArrayDataset-index-oob", lambda: D.ArrayDataset(np.zeros(4))[-5], IndexError,
     r"^ArrayDataset: index -5 is out of range for 4 samples"),
    ("Subset-indices-oob", lambda: D.Subset(D.ArrayDataset(np.zeros(4)), [0, 4]), IndexError,
     r"^Subset: indices span \[0, 4\], out of range for a dataset of 4 samples"),
    ("Subset-indices-float", lambda: D.Subset(D.ArrayDataset(np.zeros(4)), [0.5]), TypeError,
     r"^Subset: indices must be a 1-D sequence of integers"),
    ("default_collate-empty", lambda: D.default_collate([]), ValueError, r"^default_collate: samples .* is empty"),
    ("random_split_indices-nan", lambda: D.random_split_indices(10, [NAN, 1.0], 0), ValueError,
     r"^random_split_indices: fractions must be >= 0 and sum to 1"),
    ("make_classification-size-0", lambda: shapes.make_classification(2, size=0), ValueError,  # it looped forever
     r"^make_classification: image_size must be a whole number >= 4"),
    ("make_detection-n-negative", lambda: shapes.make_detection(-1), ValueError,
     r"^make_detection: n \(the number of images\) must be a whole number >= 0, got -1"),
    # init, clip_grad_norm_, seeds and threads: were numpy's or int()'s words
    ("uniform_-a-nan", lambda: nn.init.uniform_(param(), a=NAN), ValueError, r"^uniform_: a must be a finite number"),
    ("uniform_-a-above-b", lambda: nn.init.uniform_(param(), a=1.0, b=0.0), ValueError,
     r"^uniform_: a must be <= b, got a=1\.0, b=0\.0"),
    ("normal_-std-negative", lambda: nn.init.normal_(param(), std=-1.0), ValueError,
     r"^normal_: std must be a finite number >= 0\.0, got -1\.0"),
    ("constant_-str", lambda: nn.init.constant_(param(), "x"), TypeError, r"^constant_: val must be a real number"),
    ("xavier_uniform_-gain-nan", lambda: nn.init.xavier_uniform_(param(), gain=NAN), ValueError,
     r"^xavier_uniform_: gain must be a finite number >= 0"),
    ("xavier_normal_-gain-str", lambda: nn.init.xavier_normal_(param(), gain="x"), ValueError,
     r"^xavier_normal_: gain must be a finite number"),
    ("kaiming_uniform_-a-nan", lambda: nn.init.kaiming_uniform_(param(), a=NAN), ValueError,
     r"^calculate_gain: negative_slope nan is not a valid number"),
    ("clip_grad_norm_-None", lambda: nn.utils.clip_grad_norm_(None, 1.0), TypeError,
     r"^clip_grad_norm_: parameters must be a Tensor or an iterable"),
    ("clip_grad_norm_-max_norm-str", lambda: nn.utils.clip_grad_norm_([param()], "x"), TypeError,
     r"^clip_grad_norm_: max_norm must be a number, got str"),
    ("clip_grad_norm_-norm_type-nan", lambda: nn.utils.clip_grad_norm_([param()], 1.0, NAN), ValueError,
     r"^clip_grad_norm_: norm_type must be a number"),
    ("manual_seed-None", lambda: pf.manual_seed(None), TypeError, r"^manual_seed: seed must be an integer, got None"),
    ("manual_seed-nan", lambda: pf.manual_seed(NAN), TypeError, r"^manual_seed: seed must be an integer, got float"),
    ("set_num_threads-None", lambda: pf.set_num_threads(None), TypeError, r"^set_num_threads: n must be an integer"),
    ("set_num_threads-1.5", lambda: pf.set_num_threads(1.5), TypeError, r"^set_num_threads: n must be an integer"),
    # containers and tensor methods
    ("Sequential-str-index", lambda: nn.Sequential(nn.ReLU())["x"], TypeError,
     r"^Sequential: index must be an integer or a slice, got str"),
    ("size-dim-oob", lambda: X.size(5), IndexError, r"dimension 5 is out of range \[-2, 1\]"),
    ("expand-str", lambda: t(1, 3).expand("a", 3), TypeError, r"^expand: sizes must be integers, got \('a', 3\)"),
    ("masked_fill-float-mask", lambda: X.masked_fill(t(2, 3), 0.0), TypeError,  # (it filled wherever mask != 0)
     r"^masked_fill: mask must be a bool tensor, got float32"),
    ("clamp-str", lambda: X.clamp("a"), TypeError, r"^clamp: min must be a number or a Tensor, got str"),
    # state dicts
    ("load_state_dict-None", lambda: nn.Linear(3, 4).load_state_dict(None), TypeError,
     r"^Linear\.load_state_dict: state_dict must be a mapping"),
    ("load_state_dict-complex", lambda: nn.Linear(3, 4).load_state_dict(
        {**nn.Linear(3, 4).state_dict(), "bias": np.ones(4, np.complex64)}), ValueError,
     r'value for "bias" has dtype complex64, which does not convert to float32'),
    ("load_state_dict-object", lambda: nn.Linear(3, 4).load_state_dict(
        {**nn.Linear(3, 4).state_dict(), "bias": np.array([1, "a", 2, 3], dtype=object)}), ValueError,
     r'value for "bias" has dtype object'),
]


@pytest.mark.parametrize("call,error,match", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_bad_input_is_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_dims_in_range_still_work():
    x = t(2, 3, 4)
    assert x.flatten().shape == (24,) and x.flatten(-2).shape == (2, 12) and x.flatten(0, 1).shape == (6, 4)
    assert pf.tensor(1.0).flatten(-1).shape == (1,) and x.unsqueeze(-4).shape == (1, 2, 3, 4)
    assert x.unsqueeze(3).shape == (2, 3, 4, 1) and nn.Flatten(-1)(x).shape == (2, 3, 4)
    assert D.ArrayDataset(np.arange(4))[-1] == (3,) and D.Subset(D.ArrayDataset(np.arange(4)), [3, -4])[1] == (0,)
    assert [b[1].tolist() for b in loader(batch_size=4.0)][-1] == [8, 9]  # a whole float is a batch size


def test_optimizer_state_loads_only_when_all_of_it_is_good():
    """A refused state_dict leaves the optimizer as it was (no half-loaded groups or state)."""
    opt = stepped("Adam")
    before = opt.state_dict()
    bad = {**before, "param_groups": [{**before["param_groups"][0], "lr": 0.5, "betas": (2.0, 0.999)}]}
    with pytest.raises(ValueError, match=r"betas\[0\]"):
        opt.load_state_dict(bad)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.state_dict()["param_groups"] == before["param_groups"]


@requires_torch
def test_flatten_and_unsqueeze_agree_with_torch():
    import torch

    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    for start, end in ((0, -1), (1, 2), (-2, -1), (2, 2), (-3, 0)):
        assert pf.tensor(x).flatten(start, end).shape == tuple(torch.from_numpy(x).flatten(start, end).shape)
    for dim in range(-4, 4):
        assert pf.tensor(x).unsqueeze(dim).shape == tuple(torch.from_numpy(x).unsqueeze(dim).shape)
        with pytest.raises(IndexError):
            torch.from_numpy(x).unsqueeze(dim + 8 if dim >= 0 else dim - 8)
        with pytest.raises(IndexError):
            pf.tensor(x).unsqueeze(dim + 8 if dim >= 0 else dim - 8)


@requires_torch
def test_clip_grad_norm_of_order_0_and_negative_as_torch():
    """torch's 0-"norm" (the formula divided by zero) and its negative orders."""
    import torch

    grads = [np.array([[0.0, 2.0], [0.0, -1.0]], np.float32), np.zeros(3, np.float32), np.array([4.0], np.float32)]
    for norm_type in (0.0, -1.0, 1.0, float("inf")):
        ours, theirs = [nn.Parameter(pf.tensor(np.ones_like(g))) for g in grads], \
                       [torch.nn.Parameter(torch.ones(g.shape)) for g in grads]
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = pf.tensor(g.copy()), torch.from_numpy(g.copy())
        total = nn.utils.clip_grad_norm_(ours, 0.5, norm_type)
        np.testing.assert_allclose(total.item(), torch.nn.utils.clip_grad_norm_(theirs, 0.5, norm_type).item(),
                                   rtol=1e-6)
        for p, q in zip(ours, theirs):
            np.testing.assert_allclose(p.grad.data, q.grad.numpy(), rtol=1e-6)


@requires_torch
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's note on the mean of an empty tensor
def test_python_numbers_beside_integer_and_bool_tensors_promote_as_in_torch():
    """A float beside an integer tensor was converted to the tensor's dtype: x_int * 0.5 gave zeros,
    x_int < 0.5 compared with 0, a bool tensor + 1 stayed bool. Values and dtype kind as torch's."""
    import torch

    ints, bools = np.array([-2, 0, 1, 3]), np.array([True, False, True, False])
    cases = [(ints, lambda a: a * 0.5), (ints, lambda a: 0.5 * a), (ints, lambda a: a + 0.25),
             (ints, lambda a: 1.5 - a), (ints, lambda a: a < 0.5), (ints, lambda a: a >= -0.5), (ints, lambda a: a + 2),
             (ints, lambda a: a * True), (bools, lambda a: a + 1), (bools, lambda a: a * 2.5),
             (bools, lambda a: 3 + a), (bools, lambda a: a < 0.5)]
    for x, op in cases:
        ours, theirs = op(pf.tensor(x)).data, op(torch.from_numpy(x)).numpy()
        assert ours.dtype.kind == theirs.dtype.kind and np.array_equal(ours, theirs), (ours, theirs)
    assert (pf.tensor(np.ones(2, np.float32)) * 2).dtype == np.float32  # an int keeps a float tensor's dtype
    assert (pf.tensor(1.0) < pf.tensor(2.0)).item() is True  # 0-d comparisons (numpy gives a scalar)
    assert np.isnan(pf.tensor(np.zeros((0, 3), np.float32)).var().item())  # was -0.0
    with pytest.raises(TypeError, match=r"^add_: .* \(the tensor is int64\)"):  # torch refuses it too
        pf.tensor(ints).add_(0.5)
    with pytest.raises(ValueError, match=r"^operator: 1180591620717411303424 does not fit the tensor's dtype int64"):
        pf.tensor(ints) + 2**70
    with pytest.raises(TypeError, match=r"^operator: complex numbers are not supported, got 1j"):
        pf.tensor(np.ones(2, np.float32)) + 1j


# ---- the command line -------------------------------------------------------------------------------

QUICK = ["--epochs", "1", "--limit", "64", "--threads", "1", "--quiet", "--device", "cpu"]


@pytest.mark.parametrize("model,options,message", [
    ("char-lm", ["--embed-dim", "0"], "--embed-dim must be a whole number >= 1, got 0"),
    ("char-lm", ["--hidden", "-1"], "--hidden must be a whole number >= 1, got -1"),
    ("char-lm", ["--stride", "0"], "--stride must be a whole number >= 1, got 0"),  # was silently --seq-len
    ("char-lm", ["--dropout", "1.5"], "--dropout must be in [0, 1], got 1.5"),
    ("gpt", ["--heads", "0"], "--heads must be a whole number >= 1, got 0"),  # was ZeroDivisionError
    ("gpt", ["--heads", "3"], "--heads 3 must divide --d-model 128"),
    ("gpt", ["--d-model", "-8"], "--d-model must be a whole number >= 1, got -8"),
    ("gpt", ["--d-ff", "0"], "--d-ff must be a whole number >= 1, got 0"),
    ("gpt", ["--layers", "0"], "--layers must be a whole number >= 1, got 0"),
    ("transformer", ["--label-smoothing", "1.5"], "--label-smoothing must be in [0, 1], got 1.5"),
    ("transformer", ["--beam", "0"], "--beam must be a whole number >= 1, got 0"),
    ("transformer", ["--test-fraction", "1"], "--test-fraction must be in [0, 1), got 1.0"),
    ("transformer", ["--train-size", "0"], "--train-size must be a whole number >= 1, got 0"),
    ("resnet20", ["--image-size", "0"], "--image-size must be a whole number >= 1, got 0"),  # was a hang
    ("resnet20", ["--train-size", "-1"], "--train-size must be a whole number >= 1, got -1"),  # numpy's words
    ("lstm-adding", ["--seq-len", "0"], "--seq-len must be a whole number >= 1, got 0"),
])
def test_model_options_are_refused_before_anything_is_written(tmp_path, capsys, model, options, message):
    (tmp_path / "kept.txt").write_text("a good run's file")
    assert main(["train", model, *QUICK, "--out", str(tmp_path), *options]) == 2
    assert message in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["kept.txt"] and (tmp_path / "kept.txt").read_text() == "a good run's file"


def test_text_that_is_not_utf8_names_the_file(tmp_path, capsys):
    text = tmp_path / "binary.txt"
    text.write_bytes(b"ok\n\xff\xfe\x00 not text")
    assert main(["train", "char-lm", *QUICK, "--out", str(tmp_path / "run"), "--text", str(text)]) == 2
    assert f"--text: '{text}' is not UTF-8 text (invalid start byte at byte 3)" in capsys.readouterr().err
    assert main(["train", "transformer", *QUICK, "--out", str(tmp_path / "run"), "--src", str(text), "--tgt",
                 str(text)]) == 2
    assert f"parallel text: '{text}' is not UTF-8 text" in capsys.readouterr().err


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("good")
    assert main(["train", "lenet", *QUICK, "--out", str(out)]) == 0
    return out


def rewritten(good: bytes, edit) -> bytes:
    """The checkpoint ``good`` with its safetensors header passed through ``edit`` (a dict -> None)."""
    n = int.from_bytes(good[:8], "little")
    header = json.loads(good[8:8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + good[8 + n:]


def saved_options(**changes):
    def edit(header):
        metadata = json.loads(header["__metadata__"]["metadata"])
        metadata["args"].update(changes)
        header["__metadata__"]["metadata"] = json.dumps(metadata)
    return edit


def int_tensor(header):
    name = next(k for k in header if k.startswith("model.") and header[k]["dtype"] == "F32")
    header[name]["dtype"] = "I32"  # the same bytes, read as integers


@pytest.mark.parametrize("edit,message", [
    (saved_options(batch_size=-4), "damaged checkpoint: the run's saved options fail a check (--batch-size must be"),
    (saved_options(batch_size="abc"), "damaged checkpoint: the run's saved options fail a check (--batch-size"),
    (saved_options(lr=NAN), "damaged checkpoint: the run's saved options fail a check (--lr must be a finite"),
    (saved_options(norm="bogus"), "damaged checkpoint: the run's saved options do not build a lenet model (LeNet5: "
                                  "norm must be one of"),
    (int_tensor, "does not match the model: dtype mismatch: "),  # was loaded: integers read as float weights
], ids=["batch-negative", "batch-str", "lr-nan", "norm-bogus", "int-weights"])
def test_damaged_saved_options_name_the_file_and_nothing_is_overwritten(tmp_path, good_run, capsys, edit, message):
    damaged = rewritten((good_run / CHECKPOINT).read_bytes(), edit)
    (tmp_path / CHECKPOINT).write_bytes(damaged)
    for command in (["eval", str(tmp_path), "--device", "cpu"], ["predict", str(tmp_path), "--device", "cpu"],
                    ["train", "lenet", "--resume", str(tmp_path), "--quiet"]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        # (the good run finished: resuming it stops there, at the latest, still naming the file)
        assert f"{tmp_path / CHECKPOINT}" in err and (message in err or command[0] == "train"), (command, err)
    assert os.listdir(tmp_path) == [CHECKPOINT] and (tmp_path / CHECKPOINT).read_bytes() == damaged


@pytest.mark.parametrize("argv,message", [
    (["profile", "lenet", "--steps", "0"], "profile: --steps must be a whole number >= 1, got 0"),  # exited 0
    (["profile", "lenet", "--rows", "-1"], "profile: --rows must be a whole number >= 1, got -1"),
    (["profile", "lenet", "--warmup", "-1"], "profile: --warmup must be a whole number >= 0, got -1"),
    (["bench", "models", "lenet", "--rounds", "0"], "bench models: --rounds must be a whole number >= 1, got 0"),
    (["bench", "models", "lenet", "--warmup", "-1"], "bench models: --warmup must be a whole number >= 0"),
    # every run of a cell would fail (the sweep ended in a RuntimeError traceback after training the others)
    (["sweep", "lenet", "--grid", "lr=nan,0.1"], "is not a valid training command: --lr must be a finite number"),
    (["sweep", "lenet", "--grid", "epochs=0,1"], "is not a valid training command: --epochs must be a whole number"),
])
def test_other_commands_refuse_bad_counts_before_running(tmp_path, capsys, argv, message):
    out = ["--out", str(tmp_path / "out")] if argv[0] == "sweep" else []
    assert main([*argv, *out]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
