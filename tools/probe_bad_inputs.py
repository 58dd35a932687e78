"""Issue 13's held-out probe: feed every public op bad inputs, each in its own process, and classify.

    OMP_NUM_THREADS=1 PYTHONPATH=. python tools/probe_bad_inputs.py [--only SUBSTRING] [--show CLASS,...]

The cases are made from the sample calls of tests/opinfo.py (one good call per op of
``pyfastdl.nn.functional`` and ``pyfastdl.kernels``) by changing one argument at a time: a tensor or
array to another dtype (int, float16, float64, complex, object, bool), big-endian, non-contiguous,
a zero-size or a missing or extra dimension, one more batch row, NaN/Inf values, None, a list or a
bare array; an integer to -1, 0, 2**31, 2**63 - 1, 2**64, 1.5, None; a tuple of sizes likewise; a
float hyper-parameter to NaN, Inf, -1, 1e300. Hand-written cases add the ``nn`` modules (constructors
and forwards), the tensor creation functions, the ``optim`` constructors and the command line
(``pyfastdl.cli.main``: train, eval, predict, sample).

Each case runs in a forked child (pyfastdl and torch imported once, before the forks) under a 4 GiB
address-space limit, with a timeout, and is one of:
  crash    the child died of a signal (or exited without a result)
  hang     it ran past the timeout
  wrong    a result differs from torch's (where torch computes one) or from the op's own result on
           the same values given in the canonical form (float32/float64, native, contiguous);
           or the command line exited 0 on an input it must refuse
  unclear  an exception other than ValueError/TypeError/NotImplementedError/FileNotFoundError/
           IndexError (MemoryError allowed), or a message naming neither the op nor the argument
  lenient  a result where torch raises (listed for review; not counted as a failure)
  ok       a clear error, or a result that agrees with every reference
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import math
import os
import resource
import select
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

import pyfastdl as pf  # noqa: E402
from pyfastdl import kernels as K  # noqa: E402
from pyfastdl.nn import functional as F  # noqa: E402

import opinfo  # noqa: E402  (tests/opinfo.py: the sample calls)

CLEAR = (ValueError, TypeError, NotImplementedError, FileNotFoundError, IndexError, MemoryError)
MEMORY_LIMIT = 4 * 2**30
TIMEOUT_S = 20.0
CLI_TIMEOUT_S = 90.0


# ---- values ---------------------------------------------------------------------------------------

def _data(v):
    return v.data if isinstance(v, pf.Tensor) else v


class Unbuildable:
    """A mutated tensor that pyfastdl refuses to make (Tensor(complex array)): the case is that error."""

    def __init__(self, error):
        self.error = error


def _like(orig, a):
    """``a`` (an ndarray) in the container ``orig`` came in: a Tensor wraps it as is (no conversion)."""
    if not isinstance(orig, pf.Tensor):
        return a
    try:
        return pf.Tensor(a)
    except Exception as e:  # noqa: BLE001
        return Unbuildable(e)


def _strided(a):
    """``a``'s values in a non-contiguous view of the same shape."""
    big = np.empty(a.shape + (2,), a.dtype)
    big[..., 0] = a
    return big[..., 0]


def array_mutations(v):
    """(name, mutated value, canonical value or None): the canonical value holds the same numbers in
    the op's own dtype, native and contiguous, so a result on the mutation must equal its result."""
    a = _data(v)
    out = []
    if a.dtype.kind == "f":
        for dt in ("int64", "float16", "float64", "bool"):
            m = (a > 0) if dt == "bool" else a.astype(dt)
            out.append((dt, _like(v, m), _like(v, m.astype(a.dtype))))
        out.append(("complex64", _like(v, a.astype(np.complex64)), None))
        out.append(("object", _like(v, a.astype(object)), None))
        if a.size:
            nan = a.copy()
            nan.flat[0] = np.nan
            inf = a.copy()
            inf.flat[-1] = np.inf
            out += [("nan-value", _like(v, nan), None), ("inf-value", _like(v, inf), None)]
    elif a.dtype.kind in "iu":
        for dt in ("float32", "int32", "uint8"):
            out.append((dt, _like(v, a.astype(dt)), _like(v, a.astype(dt).astype(a.dtype))))
        if a.size:
            bounds = np.iinfo(a.dtype)
            for name, value in (("index-1", -1), ("index-huge", 2**40), ("index-min", -(2**63))):
                if not bounds.min <= value <= bounds.max:  # (uint8 masks, uint16 dropout draws)
                    continue
                m = a.copy()
                m.flat[0] = value
                out.append((name, _like(v, m), None))
    elif a.dtype.kind == "b":
        out.append(("int-mask", _like(v, a.astype(np.int64)), None))
        out.append(("all-masked", _like(v, np.zeros_like(a)), None))
    out.append(("big-endian", _like(v, a.astype(a.dtype.newbyteorder(">"))), v))
    out.append(("non-contiguous", _like(v, _strided(a)), v))
    for k in range(a.ndim):
        out.append((f"zero-dim{k}", _like(v, np.take(a, [], axis=k)), None))
    out.append(("extra-dim", _like(v, a[None]), None))
    if a.ndim:
        out.append(("one-less-dim", _like(v, np.asarray(a[0])), None))
        out.append(("batch+1", _like(v, np.concatenate([a, a[:1]], axis=0)), None))
    out += [("None", None, None), ("list", a.tolist(), None)]
    if isinstance(v, pf.Tensor):
        out.append(("ndarray", a, None))
    return out


INT_VALUES = [("-1", -1), ("0", 0), ("2**31", 2**31), ("2**63-1", 2**63 - 1), ("2**64", 2**64), ("-2**63", -(2**63)),
              ("1.5", 1.5), ("None", None), ("str", "3"), ("nan", float("nan"))]
FLOAT_VALUES = [("nan", float("nan")), ("inf", float("inf")), ("-inf", float("-inf")), ("-1", -1.0), ("1e300", 1e300),
                ("str", "0.1"), ("None", None)]


def scalar_mutations(v):
    if isinstance(v, str):  # a mode or reduction name
        return [("bogus-str", "bogus", None), ("empty-str", "", None), ("None", None, None), ("int", 1, None)]
    if isinstance(v, bool):
        return [("None", None, None), ("str", "yes", None), ("2", 2, None)]
    if isinstance(v, int):
        return [(n, m, None) for n, m in INT_VALUES]
    if isinstance(v, float):
        return [(n, m, None) for n, m in FLOAT_VALUES]
    if isinstance(v, tuple) and v and all(isinstance(e, int) and not isinstance(e, bool) for e in v):
        out = [(f"({n},..)", tuple(m for _ in v), None) for n, m in INT_VALUES[:6]]
        out += [("one-more", v + (1,), None), ("one-fewer", v[:-1], None), ("(1.5,..)", tuple(1.5 for _ in v), None),
                ("None", None, None), ("list", list(v), None)]
        return out
    return []


# Parameters left at their defaults in the samples that are worth a bad value too.
INT_DEFAULTS = {"stride", "padding", "dilation", "groups", "output_padding", "num_classes", "ignore_index", "dim",
                "divisor_override", "padding_idx", "num_layers"}
FLOAT_DEFAULTS = {"eps", "momentum", "p", "negative_slope", "label_smoothing", "beta", "dropout", "scale", "value",
                  "lr", "weight_decay"}


# Where torch's answer is not the reference: (op or op#sample, mutation or parameter=mutation) -> why the
# torch comparison is skipped.
TORCH_DIVERGES = {
    ("gelu", "inf-value"): "torch's vectorised gelu gives NaN for +inf (its scalar path, and the formula, give +inf)",
    # a NaN/Inf weight meeting the zero padding: torch's oneDNN path (float32, groups 1 or large maps) skips the
    # padding as the definition and our kernels do; its slow path (float64, small grouped convolutions like this
    # sample's) multiplies the zeros (0 * NaN). tests/test_conv.py checks ours against the reference loops.
    **{(op, f"weight={m}"): "torch's slow path (groups 2 on a small map) multiplies the padding's zeros (its oneDNN "
       "path, given one group at a time, agrees with ours)" for op in ("conv2d", "conv2d#1")
       for m in ("nan-value", "inf-value")},
    # masked-out keys are skipped (csrc/cpu/attention.cpp): torch's math path adds -inf to a NaN score there, and
    # multiplies an infinite value by its zero weight (samples #1 and #2 hold a mask, a causal one)
    **{(f"scaled_dot_product_attention#{i}", f"{arg}={m}"): "masked-out keys are skipped; torch's math path "
       "turns a NaN/inf key or value at a masked position into NaN" for i in (1, 2) for arg in ("key", "value")
       for m in ("nan-value", "inf-value")},
}
# Where the same values in canonical form are not the reference: (op or op#sample, parameter=mutation) -> why.
CANONICAL_DIVERGES = {
    ("pad#1", "input=int64"): "value=1.5 pads an integer tensor with 1, as torch does (the float input pads 1.5)",
    ("pad#1", "input=bool"): "value=1.5 pads a bool tensor with True, as torch does (the float input pads 1.5)",
}
RANDOM_OPS = {"dropout"}  # compared only with themselves, reseeded


def _torch_sdpa(*args, **kwargs):
    """torch's math path: the one issue 13 asks NaN propagation to follow (its fused CPU kernel zeroes NaN rows)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.MATH):
        return torch.nn.functional.scaled_dot_product_attention(*args, **kwargs)


# ---- comparison -----------------------------------------------------------------------------------

def _numpy(out):
    if isinstance(out, (tuple, list)):
        return [_numpy(o) for o in out]
    if isinstance(out, pf.Tensor):
        out = out.data
    if isinstance(out, torch.Tensor):
        out = out.detach().numpy()
    return out


def differs(a, b) -> str | None:
    """Why ``a`` and ``b`` (outputs, possibly nested) disagree, or None."""
    a, b = _numpy(a), _numpy(b)
    if isinstance(a, list) or isinstance(b, list):
        if not (isinstance(a, list) and isinstance(b, list)) or len(a) != len(b):
            return f"structure {type(a).__name__} vs {type(b).__name__}"
        return next((d for d in map(differs, a, b) if d), None)
    if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray):
        return None if a == b or (a != a and b != b) else f"{a!r} vs {b!r}"
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape}"
    if a.dtype.kind not in "fiubc" or b.dtype.kind not in "fiubc":
        return f"dtype {a.dtype} vs {b.dtype}"
    a, b = a.astype(np.complex128), b.astype(np.complex128)
    if not np.allclose(a, b, rtol=2e-2, atol=1e-3, equal_nan=True):
        bad = ~np.isclose(a, b, rtol=2e-2, atol=1e-3, equal_nan=True)
        return f"values differ at {int(bad.sum())} of {a.size} elements (e.g. {a[bad].flat[0]} vs {b[bad].flat[0]})"
    return None


def names(msg: str, words) -> bool:
    plain = msg.lower().replace("_", "").replace("-", "")
    return any(w and w.lower().replace("_", "").replace("-", "") in plain for w in words)


def judge_error(e: BaseException, words) -> tuple[str, str]:
    msg = f"{type(e).__name__}: {e}"
    # an unavailable device is a RuntimeError saying so (torch: "Torch not compiled with CUDA enabled")
    clear = isinstance(e, CLEAR) or (isinstance(e, RuntimeError) and "is not available" in str(e))
    if clear and names(str(e), words):
        return "ok", msg
    return "unclear", msg


def to_torch(v):
    """A pyfastdl/numpy value as torch takes it (None where torch has no such value)."""
    if isinstance(v, (pf.Tensor, np.ndarray)):
        a = _data(v)
        if a.dtype.kind not in "fiubc":
            raise TypeError("no torch equivalent")
        return torch.from_numpy(np.ascontiguousarray(a.astype(a.dtype.newbyteorder("="))))
    if isinstance(v, (list, tuple)) and any(isinstance(e, (pf.Tensor, np.ndarray)) for e in v):
        return type(v)(to_torch(e) for e in v)
    return v


def evaluate(run, words, torch_run=None, canonical=None) -> tuple[str, str]:
    """Classify one call: ``run()`` the call, ``torch_run()`` torch's, ``canonical()`` the same values
    in canonical form."""
    try:
        out = run()
    except Exception as e:  # noqa: BLE001 (classified)
        return judge_error(e, words)
    if canonical is not None:
        try:
            ref = canonical()
        except Exception as e:  # noqa: BLE001
            return "wrong", f"accepted, but the canonical form raises {type(e).__name__}: {e}"
        d = differs(out, ref)
        if d:
            return "wrong", f"differs from the same values in canonical form: {d}"
    if torch_run is not None:
        try:
            ref = torch_run()
        except Exception as e:  # noqa: BLE001
            return "lenient", f"computes; torch raises {type(e).__name__}: {str(e)[:160]}"
        d = differs(out, ref)
        if d:
            return "wrong", f"differs from torch: {d}"
    return "ok", "computes" + (" (agrees)" if canonical or torch_run else "")


# ---- cases from the op table ----------------------------------------------------------------------

def _slots(fn, args, kwargs):
    """(slot, parameter name, value): every argument of the call, one level into tuples/lists of
    tensors (hx, params), and the interesting defaults."""
    params = list(inspect.signature(fn).parameters.values())
    out = []
    for i, v in enumerate(args):
        name = params[i].name if i < len(params) else f"arg{i}"
        out.append((("pos", i, None), name, v))
        if isinstance(v, (tuple, list)) and any(isinstance(e, (pf.Tensor, np.ndarray)) for e in v):
            out += [(("pos", i, j), name, e) for j, e in enumerate(v) if isinstance(e, (pf.Tensor, np.ndarray))]
    for k, v in kwargs.items():
        out.append((("kw", k, None), k, v))
    given = {p.name for p in params[:len(args)]} | set(kwargs)
    for p in params:
        if p.name in given or p.name == "variant":
            continue
        if p.name in INT_DEFAULTS:
            out.append((("kw", p.name, None), p.name, p.default if isinstance(p.default, int) else 1))
        elif p.name in FLOAT_DEFAULTS:
            out.append((("kw", p.name, None), p.name, p.default if isinstance(p.default, float) else 1.0))
    return out


def _put(args, kwargs, slot, value):
    kind, key, j = slot
    args, kwargs = list(args), dict(kwargs)
    if kind == "pos":
        if j is None:
            args[key] = value
        else:
            seq = list(args[key])
            seq[j] = value
            args[key] = type(args[key])(seq)
    else:
        if j is None:
            kwargs[key] = value
        else:
            seq = list(kwargs[key])
            seq[j] = value
            kwargs[key] = type(kwargs[key])(seq)
    return args, kwargs


def _mutations(v):
    if isinstance(v, (pf.Tensor, np.ndarray)):
        return array_mutations(v)
    return scalar_mutations(v)


def table_cases(every_sample=False):
    """Mutations of each op's first sample (the plainest call), or with ``every_sample`` of its others
    too (ids then carry the sample's number: ``conv2d#1[...]``)."""
    cases = []
    for info in opinfo.OPS:
        samples = info.samples(np.random.default_rng(0))
        for i in range(len(samples) if every_sample else 1):
            args, kwargs = opinfo.resolve(samples[i], np.random.default_rng(0))
            for slot, pname, v in _slots(info.op, args, kwargs):
                for mname, _, _ in _mutations(v):
                    cases.append((f"{info.id}{f'#{i}' if i else ''}[{pname}"
                                   f"{'' if slot[2] is None else '.' + str(slot[2])}={mname}]",
                                  _table_case(info, i, slot, pname, mname)))
    return cases


def _table_case(info, i, slot, pname, mname):
    def fn():
        rng = np.random.default_rng(0)
        args, kwargs = opinfo.resolve(info.samples(rng)[i], rng)
        base = dict((s, v) for s, _, v in _slots(info.op, args, kwargs))[slot]
        _, value, canon = next(m for m in _mutations(base) if m[0] == mname)
        words = (*info.message_names(), pname)
        if isinstance(value, Unbuildable):
            return judge_error(value.error, (*words, "Tensor"))
        margs, mkwargs = _put(args, kwargs, slot, value)
        keys = {(info.name if i == 0 else f"{info.name}#{i}", k) for k in (mname, f"{pname}={mname}")}
        canonical = None
        if canon is not None and not keys & CANONICAL_DIVERGES.keys():
            cargs, ckwargs = _put(args, kwargs, slot, canon)
            canonical = _seeded(lambda: info.op(*cargs, **ckwargs))
        torch_run = None
        tf = getattr(torch.nn.functional, info.name, None) if info.module == "functional" else None
        if info.name == "scaled_dot_product_attention":
            tf = _torch_sdpa
        if tf is not None and info.name not in ("lstm", "lstm_cell", *RANDOM_OPS) and not keys & TORCH_DIVERGES.keys():
            try:
                targs, tkwargs = [to_torch(a) for a in margs], {k: to_torch(v) for k, v in mkwargs.items()}
                tkwargs.pop("synced", None)
                torch_run = lambda: tf(*targs, **tkwargs)  # noqa: E731
            except Exception:  # noqa: BLE001 (no torch form of this input: no torch reference)
                torch_run = None
        return evaluate(_seeded(lambda: info.op(*margs, **mkwargs)), words, torch_run, canonical)

    return fn


def _seeded(run):
    """``run`` with the global generator reseeded first: a random op draws the same mask every time."""
    def seeded():
        pf.manual_seed(0)
        return run()
    return seeded


# ---- nn modules: constructor arguments, then a forward; and the forward's input ------------------

def _t(*shape, dtype=np.float32, seed=0):
    return pf.tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def _labels(n, classes):
    return pf.tensor(np.random.default_rng(1).integers(0, classes, n))


# name, constructor keyword arguments, inputs of a forward (builders)
MODULES = [
    ("Linear", dict(in_features=5, out_features=4), lambda: (_t(3, 5),)),
    ("Conv1d", dict(in_channels=2, out_channels=4, kernel_size=3, stride=1, padding=1), lambda: (_t(2, 2, 9),)),
    ("Conv2d", dict(in_channels=2, out_channels=4, kernel_size=3, stride=1, padding=1, dilation=1, groups=1),
     lambda: (_t(2, 2, 7, 6),)),
    ("ConvTranspose2d", dict(in_channels=2, out_channels=4, kernel_size=3, stride=2, padding=1, output_padding=1),
     lambda: (_t(2, 2, 5, 5),)),
    ("MaxPool2d", dict(kernel_size=2, stride=2, padding=0, dilation=1), lambda: (_t(2, 3, 6, 6),)),
    ("AvgPool2d", dict(kernel_size=2, stride=2, padding=1, divisor_override=3), lambda: (_t(2, 3, 6, 6),)),
    ("AdaptiveAvgPool2d", dict(output_size=(2, 3)), lambda: (_t(2, 3, 6, 6),)),
    ("BatchNorm1d", dict(num_features=4, eps=1e-5, momentum=0.1), lambda: (_t(6, 4),)),
    ("BatchNorm2d", dict(num_features=3, eps=1e-5, momentum=0.1), lambda: (_t(2, 3, 4, 4),)),
    ("LayerNorm", dict(normalized_shape=(6,), eps=1e-5), lambda: (_t(3, 6),)),
    ("Dropout", dict(p=0.3), lambda: (_t(3, 6),)),
    ("Embedding", dict(num_embeddings=10, embedding_dim=4, padding_idx=0), lambda: (_labels(7, 10),)),
    ("LSTM", dict(input_size=5, hidden_size=4, num_layers=2, dropout=0.1), lambda: (_t(6, 3, 5),)),
    ("LSTMCell", dict(input_size=5, hidden_size=4), lambda: (_t(3, 5),)),
    ("MultiheadAttention", dict(embed_dim=8, num_heads=2, dropout=0.0),
     lambda: (_t(5, 2, 8), _t(6, 2, 8, seed=1), _t(6, 2, 8, seed=2))),
    ("Flatten", dict(start_dim=1, end_dim=-1), lambda: (_t(2, 3, 4),)),
    ("LeakyReLU", dict(negative_slope=0.1), lambda: (_t(3, 4),)),
    ("Softmax", dict(dim=1), lambda: (_t(3, 4),)),
    ("LogSoftmax", dict(dim=1), lambda: (_t(3, 4),)),
    ("GLU", dict(dim=-1), lambda: (_t(3, 4),)),
    ("CrossEntropyLoss", dict(ignore_index=-100, label_smoothing=0.1), lambda: (_t(5, 4), _labels(5, 4))),
    ("NLLLoss", dict(ignore_index=-100), lambda: (_t(5, 4), _labels(5, 4))),
    ("SmoothL1Loss", dict(beta=1.0), lambda: (_t(5, 4), _t(5, 4, seed=1))),
    ("MSELoss", dict(reduction="mean"), lambda: (_t(5, 4), _t(5, 4, seed=1))),
    ("BCEWithLogitsLoss", dict(reduction="mean"),
     lambda: (_t(5, 4), pf.tensor(np.random.default_rng(2).random((5, 4)).astype(np.float32)))),
    ("SyncBatchNorm", dict(num_features=3, eps=1e-5, momentum=0.1), lambda: (_t(2, 3, 4, 4),)),
    ("GELU", dict(approximate="tanh"), lambda: (_t(3, 4),)),
    ("ReLU", dict(inplace=False), lambda: (_t(3, 4),)),
    ("Sigmoid", dict(), lambda: (_t(3, 4),)),
    ("Tanh", dict(), lambda: (_t(3, 4),)),
    ("Identity", dict(), lambda: (_t(3, 4),)),
]
DEVICES = [("gpu", "gpu"), ("cuda:7", "cuda:7"), ("int", 3), ("None-str", "none")]
DTYPES = [("float16", "float16"), ("int64", "int64"), ("complex", np.complex64), ("object", object), ("junk", "floaty")]


def module_cases():
    cases = []
    for name, kwargs, inputs in MODULES:
        for k, v in kwargs.items():
            for mname, value, _ in scalar_mutations(v):
                cases.append((f"nn.{name}({k}={mname})", _module_ctor_case(name, kwargs, inputs, k, value)))
        params = inspect.signature(getattr(pf.nn, name).__init__).parameters
        if "device" in params:
            for mname, value in DEVICES:
                cases.append((f"nn.{name}(device={mname})", _module_ctor_case(name, kwargs, inputs, "device", value)))
        if "dtype" in params:
            for mname, value in DTYPES:
                cases.append((f"nn.{name}(dtype={mname})", _module_ctor_case(name, kwargs, inputs, "dtype", value)))
        for j, x in enumerate(inputs()):
            for mname, _, _ in array_mutations(x):
                cases.append((f"nn.{name}.forward[input{j}={mname}]",
                              _module_forward_case(name, kwargs, inputs, j, mname)))
        cases.append((f"nn.{name}.to(gpu)", _module_to_case(name, kwargs)))
    return cases


def _module_ctor_case(name, kwargs, inputs, key, value):
    def fn():
        kw = {**kwargs, key: value}

        def run():
            m = getattr(pf.nn, name)(**kw)
            return m(*inputs())

        def torch_run():
            tkw = {k: (torch.device(v) if k == "device" else v) for k, v in kw.items()}
            getattr(torch.nn, name)(**tkw)  # the constructor only: what it accepts
            return None

        try:
            run()
        except Exception as e:  # noqa: BLE001
            return judge_error(e, (name, key))
        try:
            torch_run()
        except Exception as e:  # noqa: BLE001
            return "lenient", f"builds and runs; torch's constructor raises {type(e).__name__}: {str(e)[:160]}"
        return "ok", "builds and runs"

    return fn


def _module_forward_case(name, kwargs, inputs, j, mname):
    def fn():
        pf.manual_seed(0)
        m = getattr(pf.nn, name)(**kwargs).eval()
        xs = list(inputs())
        _, value, canon = next(mm for mm in array_mutations(xs[j]) if mm[0] == mname)
        if isinstance(value, Unbuildable):
            return judge_error(value.error, (name, "Tensor"))
        mx = xs[:j] + [value] + xs[j + 1:]
        canonical = None if canon is None else (lambda: m(*(xs[:j] + [canon] + xs[j + 1:])))
        return evaluate(lambda: m(*mx), (name, "input", "query", "key", "value", "target", "dtype"), None, canonical)

    return fn


def _module_to_case(name, kwargs):
    def fn():
        m = getattr(pf.nn, name)(**kwargs)
        return evaluate(lambda: m.to("gpu"), (name, "device", "gpu"))

    return fn


# ---- tensor creation ------------------------------------------------------------------------------

def creation_cases():
    cases = []
    sizes = [("-1", -1), ("2**31", 2**31), ("2**62", 2**62), ("2**63-1", 2**63 - 1), ("2**64", 2**64), ("1.5", 1.5),
             ("None", None), ("str", "3"), ("nan", float("nan"))]
    for op in ("zeros", "ones"):
        for mname, n in sizes:
            cases.append((f"{op}({mname})", _creation_case(op, (n,), {})))
            cases.append((f"{op}((2, {mname}))", _creation_case(op, ((2, n),), {})))
        for mname, d in DEVICES:
            cases.append((f"{op}(3, device={mname})", _creation_case(op, (3,), {"device": d})))
        for mname, d in DTYPES:
            cases.append((f"{op}(3, dtype={mname})", _creation_case(op, (3,), {"dtype": d})))
    for mname, n in sizes:
        cases.append((f"full(({mname},), 1.0)", _creation_case("full", ((n,), 1.0), {})))
        cases.append((f"arange({mname})", _creation_case("arange", (n,), {})))
    for mname, s in [("0", 0), ("-1", -1), ("nan", float("nan")), ("1e-300", 1e-300)]:
        cases.append((f"arange(0, 5, {mname})", _creation_case("arange", (0, 5, s), {})))
    cases.append(("arange(0, inf)", _creation_case("arange", (0, float("inf")), {})))
    # arange(0, 5, inf) is [0.] (numpy's answer, and the definition); torch gives an empty tensor
    cases.append(("arange(0, 2**62)", _creation_case("arange", (0, 2**62), {})))
    for mname, data in [("ragged", [[1, 2], [3]]), ("str", "abc"), ("object", np.array([1, "a"], dtype=object)),
                        ("complex", np.ones(3, np.complex64)), ("None", None), ("dict", {"a": 1}),
                        ("big-endian", np.arange(4, dtype=">f4")), ("2**64", [2**64]), ("nan", [float("nan")])]:
        cases.append((f"tensor({mname})", _creation_case("tensor", (data,), {})))
    for mname, d in DEVICES + [("dtype-junk", None)]:
        kw = {"device": d} if mname != "dtype-junk" else {"dtype": "floaty"}
        cases.append((f"tensor([1.], {mname})", _creation_case("tensor", ([1.0],), kw)))
    for mname, data in [("list", [1.0]), ("object", np.array([1, "a"], dtype=object)),
                        ("complex", np.ones(3, np.complex64)), ("big-endian", np.arange(4, dtype=">f4")),
                        ("non-contiguous", np.arange(8.0)[::2])]:
        cases.append((f"from_numpy({mname})", _creation_case("from_numpy", (data,), {})))
    a, b = _t(2, 3), _t(2, 4, seed=1)
    for op in ("cat", "stack"):
        for mname, args in [("mismatch", ([a, b],)), ("empty", ([],)), ("None", (None,)),
                            ("ndarray", ([a.data, a.data],)), ("dim-huge", ([a, a], 2**63)),
                            ("dim-float", ([a, a], 1.5)),
                            ("dtype-mix", ([a, _t(2, 3, dtype=np.float64)],)), ("rank-mix", ([a, _t(3)],))]:
            cases.append((f"{op}({mname})", _creation_case(op, args, {})))
    for mname, args in [("int-cond", (pf.tensor([1, 0]), _t(2), _t(2))),
                        ("shape", (pf.tensor([True, False]), _t(3), _t(2))),
                        ("no-tensor", (pf.tensor([True]), 1.0, 2.0))]:
        cases.append((f"where({mname})", _creation_case("where", args, {})))
    return cases


def _creation_case(op, args, kwargs):
    def fn():
        def run():
            return getattr(pf, op)(*args, **kwargs)

        torch_fn = getattr(torch, op, None)
        torch_run = None
        if torch_fn is not None and "device" not in kwargs and "dtype" not in kwargs:
            def torch_run():
                targs = [to_torch(x) for x in args]
                if op == "tensor" and isinstance(targs[0], torch.Tensor):
                    targs[0] = targs[0].clone()
                return torch_fn(*targs)
        return evaluate(run, (op, "size", "shape", "device", "dtype", "data", "tensors", "dim", "step", "end")
                        , torch_run)

    return fn


# ---- optimizers -----------------------------------------------------------------------------------

OPTIMIZERS = [("SGD", dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.01)),
              ("Adam", dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)),
              ("AdamW", dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01))]


def optim_cases():
    cases = []
    for name, kwargs in OPTIMIZERS:
        for k, v in kwargs.items():
            muts = ([(repr(b), b) for b in [(float("nan"), 0.999), (0.9, float("inf")), (1.0, 0.999), (-0.1, 0.999),
                                              (0.9,), (0.9, 0.999, 0.5)]] + [("None", None)]
                    if k == "betas" else [(n, m) for n, m, _ in scalar_mutations(v)])
            for mname, value in muts:
                cases.append((f"optim.{name}({k}={mname})", _optim_case(name, {**kwargs, k: value}, None, k)))
        for params in ("[]", "None", "tensor", "ints", "ndarray", "int-param"):
            cases.append((f"optim.{name}(params={params})", _optim_case(name, kwargs, params, "params")))
    return cases


def _optim_case(name, kwargs, params, key):
    """One step on sum(w * w) from w = 1, against torch's step with the same arguments."""
    def fn():
        w = pf.nn.Parameter(pf.tensor(np.ones((3, 2), np.float32)))
        tw = torch.nn.Parameter(torch.ones(3, 2))
        ours = {None: lambda: [w], "[]": lambda: [], "None": lambda: None, "tensor": lambda: w,
                "ints": lambda: [1, 2], "ndarray": lambda: [np.ones(3, np.float32)],
                "int-param": lambda: [pf.nn.Parameter(pf.tensor(np.ones(3, np.int64)))]}
        theirs = {None: lambda: [tw], "[]": lambda: [], "None": lambda: None, "tensor": lambda: tw,
                  "ints": lambda: [1, 2], "ndarray": lambda: [np.ones(3, np.float32)],
                  "int-param": lambda: [torch.ones(3, dtype=torch.int64)]}

        def run():
            opt = getattr(pf.optim, name)(ours[params](), **kwargs)
            (w * w).sum().backward()
            opt.step()
            return w.data

        def torch_run():
            opt = getattr(torch.optim, name)(theirs[params](), **kwargs)
            (tw * tw).sum().backward()
            opt.step()
            return tw.detach()

        # an int Parameter fails where it is made, naming requires_grad (torch: a RuntimeError there too)
        return evaluate(run, (name, key, "requires_grad"), torch_run)

    return fn


# ---- the command line -----------------------------------------------------------------------------

def cli_cases(tmp: Path):
    """(argv, must_refuse): each run by pyfastdl.cli.main in its own child; ``tmp`` holds a tiny lenet
    and char-lm run (made by :func:`prepare_cli`) for eval/predict/sample."""
    lenet, charlm, out = tmp / "lenet", tmp / "charlm", str(tmp / "out")
    train = ["train", "lenet", "--limit", "64", "--threads", "1", "--quiet", "--device", "cpu", "--out", out]
    bad = []
    for opt, values in [("--epochs", ["0", "-1", "nan", "2.5"]),
                        ("--batch-size", ["0", "-1", str(2**31), str(2**63 - 1), str(2**64), "1.5"]),
                        ("--lr", ["nan", "inf", "-1", "-inf", "1e400", "abc"]),
                        ("--weight-decay", ["nan", "-1", "inf"]), ("--momentum", ["nan", "-0.5", "inf"]),
                        ("--threads", ["0", "-1", str(2**31), str(2**64)]), ("--seed", ["-1", "nan"]),
                        ("--limit", ["0", "-1", "nan"]), ("--dropout", ["nan", "-0.1", "1.5"]),
                        ("--shift", ["-1", str(2**63), "nan"]), ("--val-fraction", ["nan", "-0.1", "1", "1.5"]),
                        ("--device", ["gpu", "cuda:7", ""]), ("--dataset", ["imagenet"]),
                        ("--data-dir", ["/nonexistent/dir"]), ("--resume", ["/nonexistent/run"])]:
        for v in values:
            argv = train + [opt, v] + (["--dataset", "mnist"] if opt == "--data-dir" else [])
            bad.append(([*argv, "--epochs", "1"] if opt != "--epochs" else argv, True))
    bad.append((["train", "lenet", "--epochs", "1", "--limit", "64", "--threads", "1", "--quiet", "--out",
                 "/proc/forbidden"], True))
    bad.append((["train", "nosuchmodel"], True))
    # accepted as asked: a seed beyond 64 bits (numpy's generators take any), no effective limit, dropout 1
    # (torch's too), no validation split, more samples than the test set has, a --data-dir digits do not need.
    # (--epochs 2**63 and sample --length 2**63 run as long as asked: not probed)
    bad += [([*train, opt, v, "--epochs", "1"], False)
            for opt, v in (("--seed", str(2**64)), ("--limit", str(2**64)), ("--dropout", "1"),
                           ("--val-fraction", "0"))]
    bad += [(["predict", str(lenet), "--count", str(2**63)], False),
            (["predict", str(lenet), "--data-dir", "/nonexistent"], False),
            (["sample", str(charlm), "--seed", str(2**64)], False)]
    for opt, values in [("--count", ["0", "-1", "nan"]), ("--device", ["gpu"])]:
        for v in values:
            bad.append((["predict", str(lenet), opt, v], True))
    bad += [(["predict", str(tmp / "nothing")], True), (["predict", str(lenet), "/nonexistent.png"], True),
            (["predict", str(lenet), str(tmp / "notanimage.npy")], True), (["eval", str(tmp / "nothing")], True),
            (["eval", str(tmp / "corrupt")], True), (["eval", str(lenet), "--device", "gpu"], True),
            (["predict", str(charlm)], False), (["sample", str(lenet)], True)]
    for opt, values in [("--length", ["0", "-1"]), ("--temperature", ["nan", "inf", "-1"]),
                        ("--top-k", ["0", "-1", str(2**63)]), ("--seed", ["-1"]), ("--prime", [""])]:
        for v in values:
            bad.append((["sample", str(charlm), opt, v], (opt, v) not in (("--length", "0"), ("--prime", ""))))
    return [(" ".join(a), _cli_case(a, refuse, tmp)) for a, refuse in bad]


def prepare_cli(tmp: Path):
    from pyfastdl import cli
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc1 = cli.main(["train", "lenet", "--epochs", "1", "--limit", "64", "--threads", "1", "--quiet", "--device",
                        "cpu", "--out", str(tmp / "lenet")])
        rc2 = cli.main(["train", "char-lm", "--epochs", "1", "--limit", "16", "--batch-size", "4", "--hidden", "16",
                        "--layers", "1", "--embed-dim", "8", "--seq-len", "20", "--threads", "1", "--quiet", "--device",
                        "cpu", "--out", str(tmp / "charlm")])
    assert rc1 == 0 and rc2 == 0, (rc1, rc2)
    (tmp / "corrupt").mkdir(exist_ok=True)
    (tmp / "corrupt" / "checkpoint.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    np.save(tmp / "notanimage.npy", np.array(["a", "b"]))


def _cli_case(argv, refuse, tmp):
    def fn():
        from pyfastdl import cli
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = cli.main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
            if e.code is not None and not isinstance(e.code, int):
                err.write(str(e.code))
        except Exception as e:  # noqa: BLE001
            return "unclear", f"uncaught {type(e).__name__}: {e}"
        msg = err.getvalue().strip().splitlines()
        last = msg[-1] if msg else ""
        if rc == 0:
            return ("wrong", "exits 0 on an input it must refuse") if refuse else ("ok", "runs")
        # an option, or a path given (the file at fault), or what the command reads
        words = [a for a in argv[1:] if a.startswith("--") or os.sep in a] + \
                [a.lstrip("-") for a in argv if a.startswith("--")] + \
                ["checkpoint", "file", "directory", "model", "RUN", "invalid choice", "gpu", "cuda", "device"]
        if "Traceback" in err.getvalue():
            return "unclear", f"exit {rc} with a traceback: {last[:200]}"
        return ("ok" if names(last, words) else "unclear"), f"exit {rc}: {last[:200]}"

    return fn


# ---- the runner -----------------------------------------------------------------------------------

def run_in_child(fn, timeout):
    """Fork; the child runs ``fn`` under the memory limit and writes its (class, detail) to a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(r)
        code = 0
        try:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
            with contextlib.redirect_stdout(io.StringIO()):
                klass, detail = fn()
        except BaseException as e:  # noqa: BLE001 (the probe itself must report, never die)
            klass, detail, code = "unclear", f"escaped the case: {type(e).__name__}: {e}", 0
        os.write(w, json.dumps([klass, str(detail)[:600]]).encode())
        os.close(w)
        os._exit(code)
    os.close(w)
    chunks, deadline = [], time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            return "hang", f"no result after {timeout:.0f} s"
        ready, _, _ = select.select([r], [], [], min(left, 1.0))
        if ready:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "crash", f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
    if not chunks:
        return "crash", f"exited {os.WEXITSTATUS(status)} without a result"
    return tuple(json.loads(b"".join(chunks)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the cases whose id contains this")
    parser.add_argument("--show", default="crash,hang,wrong,unclear", help="classes whose cases are listed")
    parser.add_argument("--json", help="write every case's class and detail here")
    parser.add_argument("--tmp", default="/tmp/pyfastdl_probe", help="folder for the command line's runs")
    parser.add_argument("--every-sample", action="store_true",
                        help="mutate every sample call of each op, not only its first (about 2.5x the table cases)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tmp = Path(args.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    groups = [("table", table_cases(args.every_sample)), ("modules", module_cases()), ("creation", creation_cases()),
              ("optim", optim_cases())]
    if "cli" in args.only or not args.only:
        prepare_cli(tmp)
        groups.append(("cli", cli_cases(tmp)))
    results, counts = {}, {}
    for group, cases in groups:
        counts[group] = Counter()
        for case_id, fn in cases:
            if args.only and args.only not in case_id and args.only != group:
                continue
            klass, detail = run_in_child(fn, CLI_TIMEOUT_S if group == "cli" else TIMEOUT_S)
            results[case_id] = (group, klass, detail)
            counts[group][klass] += 1
            if klass in args.show.split(","):
                print(f"{klass:8s} {case_id}: {detail}", flush=True)
    classes = ["crash", "hang", "wrong", "unclear", "lenient", "ok"]
    print(f"\n{'group':10s}" + "".join(f"{c:>9s}" for c in classes) + f"{'total':>9s}")
    for group, c in counts.items():
        print(f"{group:10s}" + "".join(f"{c[k]:9d}" for k in classes) + f"{sum(c.values()):9d}")
    total = sum(counts.values(), Counter())
    print(f"{'all':10s}" + "".join(f"{total[k]:9d}" for k in classes) + f"{sum(total.values()):9d}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 1 if total["crash"] or total["hang"] or total["wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())
