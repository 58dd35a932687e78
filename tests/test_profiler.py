"""pyfastdl.profiler: ranges at the dispatch points, self times that add up, a valid Chrome trace."""

import json

import numpy as np
import pytest

import pyfastdl as pf
from pyfastdl import nn, optim, profiler
from pyfastdl.nn import functional as F


def _step():
    pf.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 5))
    opt = optim.AdamW(model.parameters())
    x = pf.tensor(np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32))
    y = pf.tensor(np.array([1, 3]))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def test_ops_kernels_and_optimizer_are_recorded_and_self_times_add_up():
    step = _step()
    with profiler.profile() as prof:
        with profiler.record_function("step"):
            step()
    rows = {(r["category"], r["name"]): r for r in prof.key_averages()}
    for key in [("op", "Conv2d.forward"), ("op", "Conv2d.backward"), ("kernel", "conv2d_forward"),
                ("kernel", "max_pool2d_backward"), ("optimizer", "AdamW.step"), ("module", "Sequential"),
                ("user", "step")]:
        assert key in rows, key
    conv = rows[("op", "Conv2d.forward")]
    assert conv["count"] == 1 and 0 <= conv["self_ms"] <= conv["total_ms"]
    # the user range holds everything: the self times of all events sum to its total
    assert sum(r["self_ms"] for r in rows.values()) == pytest.approx(rows[("user", "step")]["total_ms"], rel=1e-9)
    s = prof.summary()
    assert s["wall_ms"] >= rows[("user", "step")]["total_ms"]
    assert sum(s["parts_ms"].values()) == pytest.approx(s["wall_ms"], rel=1e-6)
    assert set(prof.kernel_families()) >= {"conv", "pool"}
    table = prof.table()
    assert "Python/autograd" in table and "Conv2d.backward" in table


def test_chrome_trace_is_valid_json_with_complete_events(tmp_path):
    step = _step()
    with profiler.profile() as prof:
        step()
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    events = [e for e in json.loads(path.read_text())["traceEvents"] if e["ph"] == "X"]
    assert len(events) == len(prof.events) > 10
    for e in events:
        assert {"name", "cat", "ts", "dur", "pid", "tid"} <= set(e) and e["dur"] >= 0 and e["ts"] >= 0
    # nested ranges lie inside their parents: a kernel inside the op that launched it
    op = next(e for e in events if e["name"] == "Conv2d.forward")
    kern = next(e for e in events if e["name"] == "conv2d_forward")
    assert op["ts"] <= kern["ts"] and kern["ts"] + kern["dur"] <= op["ts"] + op["dur"] + 1e-3


def test_nothing_is_recorded_outside_a_profile_and_profiles_do_not_nest():
    step = _step()
    step()
    assert profiler._active is None
    with profiler.profile() as prof:
        with pytest.raises(RuntimeError, match="already active"):
            profiler.profile().__enter__()
    assert profiler._active is None and prof.events == []


def test_kernel_family_names():
    assert [profiler.kernel_family(n) for n in ("conv2d_backward_input", "max_pool2d_forward",
                                                 "adaptive_avg_pool2d_backward", "lstm_forward",
                                                 "sdpa_backward_reference", "layer_norm_forward")] == [
        "conv", "pool", "pool", "lstm", "attention", "layer_norm"]
