"""Optimizers and schedules: trajectories against a float64 reference and against torch (same
parameters, same gradient function), checkpoint round trips, clip_grad_norm_, bad arguments."""

import math

import numpy as np
import pytest
from conftest import HAVE_TORCH, requires_torch
from reference.nn import adam_step, rel_err, sgd_step

import pyfastdl as pf
from pyfastdl import nn, optim
from pyfastdl.optim import lr_scheduler

if HAVE_TORCH:
    import torch

SHAPES = [(3, 4), (5,), (2, 3, 2)]
STEPS = 8

SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True),
    dict(lr=0.1, weight_decay=0.1),
]
ADAM_CASES = [
    dict(lr=0.01),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, amsgrad=True),
    dict(lr=0.01, weight_decay=0.05, amsgrad=True),
]
CASES = ([("SGD", c) for c in SGD_CASES] + [("Adam", c) for c in ADAM_CASES]
         + [("AdamW", c) for c in ADAM_CASES])


def _problem(rng):
    """Initial parameters and a fixed gradient function g(p) = 2 a p + b + 0.1 cos(p) (a nonlinear bowl)."""
    ps = [rng.standard_normal(s) for s in SHAPES]
    coefs = [(rng.uniform(0.5, 2.0, s), rng.standard_normal(s)) for s in SHAPES]

    def grad(i, p):
        a, b = coefs[i]
        return 2 * a * p + b + 0.1 * np.cos(p)

    return ps, grad


def _run_ours(name, kwargs, ps, grad, dtype=np.float32, steps=STEPS):
    params = [nn.Parameter(pf.tensor(p, dtype=dtype)) for p in ps]
    opt = getattr(optim, name)(params, **kwargs)
    for _ in range(steps):
        for i, p in enumerate(params):
            p.grad = pf.tensor(grad(i, p.data.astype(np.float64)).astype(dtype))
        opt.step()
    return [p.data for p in params], opt


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_trajectory_matches_float64_reference(name, kwargs, rng):
    ps, grad = _problem(rng)
    ours, _ = _run_ours(name, kwargs, ps, grad, dtype=np.float64)
    ref = [p.copy() for p in ps]
    states = [dict(buf=None) for _ in ps]
    for _ in range(STEPS):
        for i in range(len(ref)):
            g = grad(i, ref[i])
            if name == "SGD":
                ref[i], states[i]["buf"] = sgd_step(ref[i], g, states[i]["buf"], **kwargs)
            else:
                full = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01 if name == "AdamW" else 0.0,
                            amsgrad=False)
                full.update(kwargs)
                ref[i] = adam_step(ref[i], g, states[i], decoupled=name == "AdamW", **full)
    for o, r in zip(ours, ref):
        assert rel_err(o, r) < 1e-12


@requires_torch
@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_trajectory_matches_torch(name, kwargs, rng):
    ps, grad = _problem(rng)
    ours, _ = _run_ours(name, kwargs, ps, grad)
    tparams = [torch.tensor(p, dtype=torch.float32, requires_grad=True) for p in ps]
    topt = getattr(torch.optim, name)(tparams, **kwargs)
    for _ in range(STEPS):
        for i, p in enumerate(tparams):
            p.grad = torch.from_numpy(grad(i, p.detach().numpy().astype(np.float64)).astype(np.float32))
        topt.step()
    for o, t in zip(ours, tparams):
        assert rel_err(o, t.detach().numpy()) < 1e-6


@requires_torch
def test_param_groups_and_missing_grads_match_torch(rng):
    ps, grad = _problem(rng)
    params = [nn.Parameter(pf.tensor(p, dtype=np.float32)) for p in ps]
    tparams = [torch.tensor(p, dtype=torch.float32, requires_grad=True) for p in ps]
    opt = optim.SGD([{"params": params[:2]}, {"params": params[2:], "lr": 0.01}], lr=0.1, momentum=0.9)
    topt = torch.optim.SGD([{"params": tparams[:2]}, {"params": tparams[2:], "lr": 0.01}], lr=0.1, momentum=0.9)
    for step in range(5):
        for i, (p, tp) in enumerate(zip(params, tparams)):
            if i == 1 and step % 2:  # a parameter without a gradient is skipped
                p.grad, tp.grad = None, None
                continue
            g = grad(i, p.data.astype(np.float64)).astype(np.float32)
            p.grad, tp.grad = pf.tensor(g), torch.from_numpy(g)
        opt.step()
        topt.step()
    for p, tp in zip(params, tparams):
        assert rel_err(p.data, tp.detach().numpy()) < 1e-6


@pytest.mark.parametrize("name,kwargs", [("SGD", SGD_CASES[2]), ("Adam", ADAM_CASES[3]), ("AdamW", ADAM_CASES[4])])
def test_state_dict_round_trip_through_safetensors(name, kwargs, rng, tmp_path):
    """3 steps, save (flattened to safetensors), load into a fresh optimizer, 3 more == 6 uninterrupted."""
    from safetensors.numpy import load_file, save_file

    ps, grad = _problem(rng)
    straight, _ = _run_ours(name, kwargs, ps, grad, steps=6)
    half, opt = _run_ours(name, kwargs, ps, grad, steps=3)
    sd = opt.state_dict()
    flat = {f"{i}.{k}": v for i, s in sd["state"].items() for k, v in s.items()}
    assert all(isinstance(v, np.ndarray) for v in flat.values())
    save_file(flat, str(tmp_path / "opt.safetensors"))
    loaded = load_file(str(tmp_path / "opt.safetensors"))
    state = {}
    for key, v in loaded.items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = v
    params = [nn.Parameter(pf.tensor(h)) for h in half]
    opt2 = getattr(optim, name)(params, lr=123.0)  # hyper-parameters come back from the state dict
    opt2.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
    assert opt2.param_groups[0]["lr"] == kwargs["lr"]
    for _ in range(3):
        for i, p in enumerate(params):
            p.grad = pf.tensor(grad(i, p.data.astype(np.float64)).astype(np.float32))
        opt2.step()
    for a, b in zip(straight, params):
        np.testing.assert_array_equal(a, b.data)


def test_load_state_dict_checks_group_sizes(rng):
    ps, grad = _problem(rng)
    _, opt = _run_ours("Adam", {}, ps, grad, steps=1)
    other = optim.Adam([nn.Parameter(pf.tensor(ps[0]))])
    with pytest.raises(ValueError, match="parameter group 0 has 3 parameters"):
        other.load_state_dict(opt.state_dict())


def test_zero_grad():
    p = nn.Parameter(pf.tensor(np.ones(3)))
    opt = optim.SGD([p], lr=0.1)
    p.grad = pf.tensor(np.full(3, 2.0))
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.data, 0)
    opt.zero_grad()
    assert p.grad is None
    opt.step()  # no gradient: nothing happens
    np.testing.assert_array_equal(p.data, 1)


def test_step_bumps_version_so_stale_graphs_are_caught():
    p = nn.Parameter(pf.tensor(np.ones(3)))
    y = (p * p).sum()
    p.grad = pf.tensor(np.ones(3))
    optim.SGD([p], lr=0.1).step()
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_closure_returns_loss():
    p = nn.Parameter(pf.tensor(np.array([3.0])))
    opt = optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 9.0 and p.data[0] == 1.5


@pytest.mark.parametrize("make,match", [
    (lambda p: optim.SGD([p], lr=-1), "learning rate"),
    (lambda p: optim.SGD([p], lr=0.1, nesterov=True), "nesterov"),
    (lambda p: optim.Adam([p], betas=(1.0, 0.9)), "betas"),
    (lambda p: optim.AdamW([p], weight_decay=-1), "weight_decay"),
    (lambda p: optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda p: optim.SGD([p, p], lr=0.1), "more than one"),
    (lambda p: optim.SGD(p, lr=0.1), "iterable"),
])
def test_bad_arguments(make, match):
    p = nn.Parameter(pf.tensor(np.ones(2)))
    with pytest.raises((ValueError, TypeError), match=match):
        make(p)


SCHEDULES = [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("CosineAnnealingLR", dict(T_max=6, eta_min=0.001)),
    ("LambdaLR", dict(lr_lambda=lambda e: 1 / (e + 1))),
    ("LinearLR", dict(start_factor=0.1, total_iters=4)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.2, total_iters=5)),
]


@requires_torch
@pytest.mark.parametrize("name,kwargs", SCHEDULES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULES)])
def test_schedules_match_torch_exactly(name, kwargs):
    p = nn.Parameter(pf.tensor(np.ones(2)))
    opt = optim.SGD([{"params": [p]}, {"params": [nn.Parameter(pf.tensor(np.ones(1)))], "lr": 0.3}], lr=0.1)
    tp = torch.ones(2, requires_grad=True)
    topt = torch.optim.SGD([{"params": [tp]}, {"params": [torch.ones(1, requires_grad=True)], "lr": 0.3}], lr=0.1)
    sched = getattr(lr_scheduler, name)(opt, **kwargs)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    for _ in range(16):
        assert sched.get_last_lr() == tsched.get_last_lr()
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in topt.param_groups]
        opt.step()
        topt.step()
        sched.step()
        tsched.step()


def test_schedules_closed_forms():
    p = nn.Parameter(pf.tensor(np.ones(2)))
    opt = optim.SGD([p], lr=1.0)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.1)
    for epoch in range(1, 11):
        sched.step()
        expected = 0.1 + 0.9 * (1 + math.cos(math.pi * epoch / 10)) / 2
        assert abs(opt.param_groups[0]["lr"] - expected) < 1e-12
    opt = optim.SGD([p], lr=1.0)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    np.testing.assert_allclose(lrs, [1, 1, 0.1, 0.1, 0.01, 0.01])


def test_scheduler_state_dict_round_trip():
    def make():
        opt = optim.SGD([nn.Parameter(pf.tensor(np.ones(2)))], lr=1.0)
        return opt, lr_scheduler.CosineAnnealingLR(opt, T_max=7)

    opt, sched = make()
    for _ in range(3):
        sched.step()
    opt2, sched2 = make()
    sched2.load_state_dict(sched.state_dict())
    opt2.load_state_dict(opt.state_dict())
    for _ in range(3):
        sched.step()
        sched2.step()
    assert sched.get_last_lr() == sched2.get_last_lr()


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm(norm_type, max_norm, rng):
    grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    params = [nn.Parameter(pf.tensor(np.zeros(s, np.float32))) for s in SHAPES]
    for p, g in zip(params, grads):
        p.grad = pf.tensor(g)
    total = nn.utils.clip_grad_norm_(params, max_norm, norm_type)
    flat = np.concatenate([g.ravel() for g in grads]).astype(np.float64)
    ref = np.abs(flat).max() if norm_type == math.inf else (np.abs(flat) ** norm_type).sum() ** (1 / norm_type)
    assert abs(total.item() - ref) / ref < 1e-6
    coef = min(1.0, max_norm / (ref + 1e-6))
    for p, g in zip(params, grads):
        assert rel_err(p.grad.data, g * coef) < 1e-6
    if HAVE_TORCH:
        tparams = [torch.zeros(s, requires_grad=True) for s in SHAPES]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g.copy())
        ttotal = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type)
        assert abs(total.item() - ttotal.item()) <= 1e-6 * ttotal.item()
        for p, tp in zip(params, tparams):
            assert rel_err(p.grad.data, tp.grad.numpy()) < 1e-6


def test_clip_grad_norm_nonfinite():
    p = nn.Parameter(pf.tensor(np.zeros(2, np.float32)))
    p.grad = pf.tensor(np.array([np.inf, 1.0], np.float32))
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)


@pytest.mark.gpu
@pytest.mark.parametrize("name,kwargs", [("SGD", SGD_CASES[4]), ("Adam", ADAM_CASES[4]), ("AdamW", ADAM_CASES[3])])
def test_gpu_trajectory_matches_cpu(name, kwargs, rng):
    ps, grad = _problem(rng)
    cpu, _ = _run_ours(name, kwargs, ps, grad)
    params = [nn.Parameter(pf.tensor(p, dtype=np.float32, device="cuda")) for p in ps]
    opt = getattr(optim, name)(params, **kwargs)
    for _ in range(STEPS):
        for i, p in enumerate(params):
            p.grad = pf.tensor(grad(i, p.data.get().astype(np.float64)).astype(np.float32), device="cuda")
        opt.step()
    for c, p in zip(cpu, params):
        assert rel_err(p.data.get(), c) < 1e-5
    sd = opt.state_dict()
    assert all(isinstance(v, np.ndarray) for s in sd["state"].values() for v in s.values())
    total = nn.utils.clip_grad_norm_(params, 0.1)
    assert total.device == "cuda"


# ---- the fused CPU kernels (pyfastdl.kernels.sgd_step / adam_step) -------------------------------

KERNEL_SHAPES = [(40000,), (3, 5), (1,), (17, 1001)]  # one large enough to be split between threads


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kwargs", SGD_CASES[1:], ids=range(len(SGD_CASES) - 1))
def test_sgd_kernel_matches_reference(kwargs, dtype, rng):
    from pyfastdl import kernels

    ps = [rng.standard_normal(s) for s in KERNEL_SHAPES]
    refs, bufs = [p.copy() for p in ps], [None] * len(ps)
    ours = [p.astype(dtype) for p in ps]
    ours_bufs = [np.empty_like(p) for p in ours]
    full = dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)
    full.update(kwargs)
    for step in range(3):
        gs = [rng.standard_normal(p.shape) for p in ps]
        kernels.sgd_step(ours, [g.astype(dtype) for g in gs], ours_bufs if full["momentum"] else None,
                         [step == 0] * len(ps), **full)
        for i in range(len(ps)):
            refs[i], bufs[i] = sgd_step(refs[i], gs[i], bufs[i], **full)
    for o, r in zip(ours, refs):
        assert rel_err(o, r) < (1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_kernel_matches_reference(decoupled, amsgrad, dtype, rng):
    from pyfastdl import kernels

    ps = [rng.standard_normal(s) for s in KERNEL_SHAPES]
    refs, states = [p.copy() for p in ps], [{} for _ in ps]
    ours = [p.astype(dtype) for p in ps]
    m, v, vmax = ([np.zeros_like(p) for p in ours] for _ in range(3))
    hyper = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)
    for step in range(1, 4):
        gs = [rng.standard_normal(p.shape) for p in ps]
        kernels.adam_step(ours, [g.astype(dtype) for g in gs], m, v, vmax if amsgrad else None, [step] * len(ps),
                          decoupled=decoupled, amsgrad=amsgrad, **hyper)
        for i in range(len(ps)):
            refs[i] = adam_step(refs[i], gs[i], states[i], amsgrad=amsgrad, decoupled=decoupled, **hyper)
    for o, r in zip(ours, refs):
        assert rel_err(o, r) < (1e-12 if dtype == np.float64 else 1e-6)


def test_mixed_dtypes_of_one_group_all_update(rng):
    """A group mixing float32 and float64 parameters: the kernel takes one dtype, the rest the array path."""
    ps, grad = _problem(rng)
    params = [nn.Parameter(pf.tensor(p, dtype=dt)) for p, dt in zip(ps, (np.float32, np.float64, np.float32))]
    opt = optim.Adam(params, lr=0.01)
    for i, p in enumerate(params):
        p.grad = pf.tensor(grad(i, p.data.astype(np.float64)).astype(p.dtype))
    opt.step()
    for i, (p, p0) in enumerate(zip(params, ps)):
        want = adam_step(p0, grad(i, p0.astype(np.float64)), {}, 0.01, (0.9, 0.999), 1e-8, 0.0, False, False)
        assert rel_err(p.data, want) < 1e-6 and opt.state[p]["step"] == 1


def test_optim_kernel_bad_input():
    from pyfastdl import kernels

    p, g = np.ones(3, np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match="sgd_step: grads\\[0\\] has shape \\(4,\\), expected \\(3,\\)"):
        kernels.sgd_step([p], [g], None, [False], lr=0.1)
    with pytest.raises(TypeError, match="adam_step: exp_avgs\\[0\\] has dtype float64, expected float32"):
        kernels.adam_step([p], [p.copy()], [np.zeros(3)], [np.zeros(3, np.float32)], None, [1], lr=0.1)
    with pytest.raises(ValueError, match="adam_step: got 1 params but 2 steps"):
        kernels.adam_step([p], [p.copy()], [p.copy()], [p.copy()], None, [1, 1], lr=0.1)
    with pytest.raises(ValueError, match="Adam: invalid beta1"):
        kernels.adam_step([p], [p.copy()], [p.copy()], [p.copy()], None, [1], lr=0.1, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="momentum_buffers are required"):
        kernels.sgd_step([p], [p.copy()], None, [True], lr=0.1, momentum=0.9)
