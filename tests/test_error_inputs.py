"""Every public op of pyfastdl.nn.functional and pyfastdl.kernels against its entry in tests/opinfo.py:
its sample inputs run, and each of its error inputs raises ValueError/TypeError naming the op and
the argument (never a crash, a hang, a bare numpy/pybind11 message or a silent wrong answer).
IndexError is expected where torch raises it: a dim or an index out of range."""

import inspect

import numpy as np
import pytest

import pyfastdl as pf
from pyfastdl import kernels as K
from pyfastdl._core import _C
from pyfastdl.nn import functional as F
from opinfo import OPS, Kw


def _public_ops(module):
    """The public callables of a module (its own and those its submodules export), not classes."""
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    return {n for n in names if inspect.isfunction(getattr(module, n, None))}


def _build(value, rng):
    """A table value as the op gets it: builders (callables) called with rng, inside tuples too."""
    if callable(value):
        return value(rng)
    if isinstance(value, (tuple, list)):
        return type(value)(_build(v, rng) for v in value)
    return value


def _resolve(call, rng):
    args, kwargs = [], {}
    for a in call.args:
        if isinstance(a, Kw):
            kwargs.update(a.fn(rng))
        else:
            args.append(_build(a, rng))
    kwargs.update({k: _build(v, rng) for k, v in call.kwargs.items()})
    return args, kwargs


def _finite(out):
    """Every float array in ``out`` (nested tuples, Tensors) is finite."""
    if isinstance(out, (tuple, list)):
        return all(_finite(o) for o in out)
    data = out.data if isinstance(out, pf.Tensor) else out
    if isinstance(data, np.ndarray) and data.dtype.kind == "f":
        return bool(np.isfinite(data).all())
    return True


def test_every_public_op_has_an_entry():
    listed = {(o.module, o.name) for o in OPS}
    public = {("functional", n) for n in _public_ops(F)} | {("kernels", n) for n in _public_ops(K)}
    missing = sorted(public - listed)
    assert not missing, f"public ops without sample and error inputs in tests/opinfo.py: {missing}"
    assert len(listed) == len(OPS), "an op is listed twice"


def _samples():
    return [pytest.param(o, i, id=f"{o.id}-{i}") for o in OPS for i in range(len(o.samples(np.random.default_rng(0))))]


def _errors():
    return [pytest.param(o, i, id=f"{o.id}-{i}") for o in OPS for i in range(len(o.errors(np.random.default_rng(0))))]


@pytest.mark.parametrize("info, i", _samples())
def test_sample_input(info, i, rng):
    args, kwargs = _resolve(info.samples(rng)[i], rng)
    assert _finite(info.op(*args, **kwargs))


@pytest.mark.parametrize("info, i", _errors())
def test_error_input(info, i, rng):
    e = info.errors(rng)[i]
    args, kwargs = _resolve(e.call, rng)
    with pytest.raises((ValueError, TypeError, IndexError)) as caught:
        info.op(*args, **kwargs)
    msg = str(caught.value)
    assert isinstance(caught.value, e.error), f"{type(caught.value).__name__}, expected {e.error.__name__}: {msg}"
    names = (e.op,) if e.op else info.message_names()
    # The op by name, in any case and with or without underscores ("Conv2d", "_LstmCell": autograd's).
    plain = msg.lower().replace("_", "")
    assert any(n.lower().replace("_", "") in plain for n in names), f"message names no op of {names}: {msg}"
    assert e.arg in msg, f"message does not name {e.arg!r}: {msg}"
