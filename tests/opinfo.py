"""One table of sample inputs and error inputs for every public op, after PyTorch's OpInfo.

Each :class:`OpInfo` names an op of ``pyfastdl.nn.functional`` or ``pyfastdl.kernels`` and gives
* ``samples(rng)``: calls that must succeed (small shapes, random data), and
* ``errors(rng)``: calls that must raise ``ValueError`` or ``TypeError`` whose message names the op
  and the argument at fault (``ErrorInput.arg``; ``ErrorInput.op`` when the message names the op
  by another name than the table's, e.g. the kernels' "conv2d" for ``conv2d_forward``).

tests/test_error_inputs.py runs every entry, and checks that every public op has one: a new op
cannot be added without its error inputs. Inputs are built inside the lambdas from ``rng`` so every
call gets fresh arrays (kernels may write into their arguments' buffers).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

import pyfastdl as pf
from pyfastdl import kernels as K
from pyfastdl.nn import functional as F

HUGE = 2**63 - 1  # the largest int64: every product with it overflows
BEYOND = 2**64  # does not fit in 64 bits at all


@dataclasses.dataclass
class Call:
    """op(*args, **kwargs); ``args`` may hold callables, which are called (with rng) to build inputs."""

    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ErrorInput:
    call: Call
    error: type  # ValueError or TypeError; IndexError where torch raises it (a dim or an index out of range)
    arg: str  # must appear in the message: the argument (or the fact) at fault
    op: str | None = None  # the op's name in the message, when not the table's name


@dataclasses.dataclass
class OpInfo:
    module: str  # "functional" or "kernels"
    name: str
    samples: Callable[[np.random.Generator], list[Call]]
    errors: Callable[[np.random.Generator], list[ErrorInput]]
    op_names: tuple[str, ...] = ()  # names the op's messages may use (default: its own name)

    @property
    def op(self) -> Callable[..., Any]:
        return getattr(F if self.module == "functional" else K, self.name)

    @property
    def id(self) -> str:
        return f"{self.module}.{self.name}"

    def message_names(self) -> tuple[str, ...]:
        return self.op_names or (self.name,)


def arr(rng, *shape, dtype=np.float32):
    """Random normal values (never zeros) of ``shape``."""
    return rng.standard_normal(shape).astype(dtype)


def ten(rng, *shape, dtype=np.float32, requires_grad=False):
    return pf.tensor(arr(rng, *shape, dtype=dtype), requires_grad=requires_grad)


def big_endian(a):
    return a.astype(a.dtype.newbyteorder(">"))


def E(args, error, arg, op=None, **kwargs):  # noqa: N802 (reads as a table row)
    return ErrorInput(Call(tuple(args), kwargs), error, arg, op)


OPS: list[OpInfo] = []


def op(module, name, op_names=()):
    """Decorator: registers a function returning (samples, errors) for ``rng`` as the entry of ``name``."""

    def register(fn):
        OPS.append(OpInfo(module, name, lambda rng: fn(rng)[0], lambda rng: fn(rng)[1], tuple(op_names)))
        return fn

    return register


# =============================================================================================
# pyfastdl.kernels: convolution
# =============================================================================================

@op("kernels", "conv2d_args", ("conv2d",))
def _(rng):
    x, w = (2, 4, 7, 6), (6, 2, 3, 3)
    return [Call((x, w), dict(stride=2, padding=1, groups=2)), Call((x, w[:1] + (4,) + w[2:]), dict(dilation=2))], [
        E([x, (6, 3, 3, 3)], ValueError, "groups", groups=2),
        E([x, w], ValueError, "padding", padding=HUGE, groups=2),
        E([x, w], ValueError, "padding", padding=BEYOND, groups=2),
        E([x, w], ValueError, "dilation", dilation=2**62, groups=2),
        E([x, w], ValueError, "stride", stride=0, groups=2),
        E([x, w], TypeError, "stride", stride=1.5, groups=2),
        E([(2**20, 2**20, 2**10, 2**10), (2**20, 2**20, 3, 3)], ValueError, "multiply-add", padding=1),
        E([(2, 4, 7), w], ValueError, "input", groups=2),
        E([None, w], TypeError, "input_shape"),  # issue 13's wider probe: was "'NoneType' object is not iterable"
    ]


@op("kernels", "conv_transpose2d_args", ("conv_transpose2d",))
def _(rng):
    x, w = (2, 4, 5, 5), (4, 3, 3, 3)
    return [Call((x, w), dict(stride=2, padding=1, output_padding=1))], [
        E([x, w], ValueError, "output_padding", stride=2, output_padding=2),
        E([x, w], ValueError, "stride", stride=HUGE),
        E([x, w], ValueError, "padding", padding=10),
        E([x, (3, 3, 3, 3)], ValueError, "channel"),
        E([x, w], ValueError, "groups", groups=BEYOND),
    ]


def _conv_errors(fn_args):
    """Errors every conv kernel shares: fn_args(rng, x=..., w=...) builds the positional args."""
    return [
        E(fn_args(dtype=np.float16), TypeError, "dtype"),
        E(fn_args(x=lambda rng: big_endian(arr(rng, 2, 4, 7, 6))), TypeError, "byte order"),
        E(fn_args(w=lambda rng: arr(rng, 6, 2, 3)), ValueError, "weight"),
        E(fn_args(), ValueError, "padding", padding=HUGE),
        E(fn_args(), ValueError, "dilation", dilation=2**62),
    ]


@op("kernels", "conv2d_forward", ("conv2d",))
def _(rng):
    def args(x=None, w=None, dtype=np.float32):
        return [x or (lambda rng: arr(rng, 2, 4, 7, 6, dtype=dtype)), w or (lambda rng: arr(rng, 6, 4, 3, 3, dtype=dtype))]

    return [Call(tuple(args()), dict(padding=1)), Call(tuple(args()), dict(stride=2, dilation=2))], [
        *_conv_errors(args),
        E(args(), ValueError, "bias", bias=np.ones(5, np.float32)),
        E(args(), ValueError, "variant", variant="slow"),
        E(args(), ValueError, "out", out=np.empty((2, 6, 1, 1), np.float32)),
        E([[[1.0]], lambda rng: arr(rng, 6, 4, 3, 3)], TypeError, "x"),
    ]


@op("kernels", "conv2d_backward_input", ("conv2d",))
def _(rng):
    def args(x=None, w=None, dtype=np.float32):
        return [x or (lambda rng: arr(rng, 2, 6, 5, 4, dtype=dtype)), w or (lambda rng: arr(rng, 6, 4, 3, 3, dtype=dtype)),
                (2, 4, 7, 6)]

    return [Call(tuple(args()))], [
        E(args(dtype=np.int32), TypeError, "dtype"),
        E(args(x=lambda rng: arr(rng, 2, 6, 5, 5)), ValueError, "grad_out"),
        E(args(w=lambda rng: arr(rng, 6, 2, 3)), ValueError, "weight"),
        E(args(), ValueError, "padding", padding=HUGE),
        E(args(x=lambda rng: big_endian(arr(rng, 2, 6, 5, 4))), TypeError, "byte order"),
        E([lambda rng: arr(rng, 2, 6, 5, 4), None, (2, 4, 7, 6)], TypeError, "weight"),
    ]


@op("kernels", "conv2d_backward_weight", ("conv2d",))
def _(rng):
    def args(x=None, g=None, dtype=np.float32):
        return [x or (lambda rng: arr(rng, 2, 4, 7, 6, dtype=dtype)), g or (lambda rng: arr(rng, 2, 6, 5, 4, dtype=dtype)),
                (6, 4, 3, 3)]

    return [Call(tuple(args()))], [
        E(args(dtype=np.float16), TypeError, "dtype"),
        E(args(g=lambda rng: arr(rng, 2, 6, 5, 5)), ValueError, "grad_out"),
        E(args(), ValueError, "dilation", dilation=2**62),
        E(args(x=lambda rng: arr(rng, 2, 4, 7)), ValueError, "input"),
    ]


@op("kernels", "conv2d_backward_bias")
def _(rng):
    return [Call((lambda rng: arr(rng, 2, 3, 4, 5),))], [
        E([lambda rng: arr(rng, 2, 3, 4)], ValueError, "grad_out"),
        E([[1.0, 2.0]], TypeError, "grad_out"),
    ]


@op("kernels", "conv_transpose2d_forward", ("conv_transpose2d", "conv2d"))
def _(rng):
    def args(x=None, w=None, dtype=np.float32):
        return [x or (lambda rng: arr(rng, 2, 4, 5, 5, dtype=dtype)), w or (lambda rng: arr(rng, 4, 3, 3, 3, dtype=dtype))]

    return [Call(tuple(args()), dict(stride=2, padding=1, output_padding=1))], [
        E(args(dtype=np.float16), TypeError, "dtype"),
        E(args(), ValueError, "output_padding", output_padding=3),
        E(args(), ValueError, "stride", stride=HUGE),
        E(args(), ValueError, "bias", bias=np.ones(4, np.float32)),
        E(args(w=lambda rng: arr(rng, 3, 3, 3, 3)), ValueError, "channel"),
    ]


@op("kernels", "conv_transpose2d_backward_input", ("conv_transpose2d", "conv2d"))
def _(rng):
    def args(g=None, dtype=np.float32):
        return [g or (lambda rng: arr(rng, 2, 3, 9, 9, dtype=dtype)), lambda rng: arr(rng, 4, 3, 3, 3, dtype=dtype),
                (2, 4, 5, 5)]

    return [Call(tuple(args()), dict(stride=2, padding=1))], [
        E(args(dtype=np.int64), TypeError, "dtype"),
        E(args(g=lambda rng: arr(rng, 2, 3, 9, 8)), ValueError, "x"),
        E(args(), ValueError, "padding", padding=BEYOND),
    ]


@op("kernels", "conv_transpose2d_backward_weight", ("conv_transpose2d", "conv2d"))
def _(rng):
    def args(g=None, dtype=np.float32):
        return [lambda rng: arr(rng, 2, 4, 5, 5, dtype=dtype), g or (lambda rng: arr(rng, 2, 3, 9, 9, dtype=dtype)),
                (4, 3, 3, 3)]

    return [Call(tuple(args()), dict(stride=2, padding=1))], [
        E(args(dtype=np.float16), TypeError, "dtype"),
        E(args(g=lambda rng: arr(rng, 2, 3, 9, 8)), ValueError, "x"),
        E(args(), ValueError, "dilation", stride=2, padding=1, dilation=2**62),
    ]


# =============================================================================================
# pyfastdl.kernels: pooling
# =============================================================================================

def _pool_errors(call_args, name, *, dilation=True):
    errors = [
        E(call_args(dtype=np.float16), TypeError, "dtype"),
        E(call_args(x=lambda rng: arr(rng, 4, 4)), ValueError, "input"),
        E(call_args(), ValueError, "stride", stride=0),
        E(call_args(), ValueError, "padding", padding=2),
        E(call_args(), TypeError, "kernel_size", kernel_size=2.5),
        E(call_args(), ValueError, "padding", padding=BEYOND),
        E(call_args(x=lambda rng: big_endian(arr(rng, 2, 3, 5, 6))), TypeError, "byte order"),
    ]
    if dilation:
        errors.append(E(call_args(), ValueError, "dilation", dilation=2**62))
    return errors


@op("kernels", "max_pool2d_args", ("max_pool2d",))
def _(rng):
    s = (2, 3, 5, 6)
    return [Call((s, 2)), Call((s, 3), dict(stride=10**12, padding=1, dilation=2, ceil_mode=True))], [
        E([s, 2], ValueError, "stride", stride=0),
        E([s, 2], ValueError, "padding", padding=2),
        E([s, 3], ValueError, "dilation", dilation=2**62),
        E([s], ValueError, "kernel_size", kernel_size=(2, 2, 2)),
        E([s, 2], ValueError, "padding", padding=BEYOND),
        E([(5, 6), 2], ValueError, "input"),
        E([(2**31,) * 4, 2], ValueError, "input_shape"),  # was C++'s "tensor size overflows 64 bits", no op
        E([None, 2], TypeError, "input_shape"),
    ]


@op("kernels", "avg_pool2d_args", ("avg_pool2d",))
def _(rng):
    s = (2, 3, 5, 6)
    return [Call((s, 2)), Call((s, 3), dict(stride=2**63 - 1, padding=1, ceil_mode=True))], [
        E([s, 2], ValueError, "divisor_override", divisor_override=-1),
        E([s, 2], ValueError, "stride", stride=-2),
        E([s, 8], ValueError, "output size"),
        E([s, 2], TypeError, "stride", stride="2"),
    ]


@op("kernels", "adaptive_avg_pool2d_args", ("adaptive_avg_pool2d",))
def _(rng):
    return [Call(((2, 3, 5, 6), (2, 4)))], [
        E([(2, 3, 5, 6), (0, 4)], ValueError, "output_size"),
        E([(2, 3, 5, 6), (1, 2, 3)], ValueError, "output_size"),
        E([(2, 3, 0, 6), 2], ValueError, "input"),
        E([(2, 3, 5, 6), BEYOND], ValueError, "output_size"),
    ]


@op("kernels", "max_pool2d_forward", ("max_pool2d",))
def _(rng):
    def args(x=None, dtype=np.float32):
        return [x or (lambda rng: arr(rng, 2, 3, 5, 6, dtype=dtype)), 2]

    return [Call(tuple(args())), Call(tuple(args()), dict(stride=10**12)), Call(tuple(args()), dict(dilation=2))], [
        *_pool_errors(args, "max_pool2d"),
        E(args(), ValueError, "variant", variant="slow"),
        E([None, 2], TypeError, "input"),  # was AttributeError: 'NoneType' object has no attribute 'shape'
    ]


@op("kernels", "max_pool2d_backward", ("max_pool2d",))
def _(rng):
    def args(g=None, idx=None, dtype=np.float32):
        return [g or (lambda rng: arr(rng, 2, 3, 2, 3, dtype=dtype)),
                idx or (lambda rng: rng.integers(0, 30, (2, 3, 2, 3))), (2, 3, 5, 6), 2]

    return [Call(tuple(args()))], [
        E(args(dtype=np.float16), TypeError, "dtype"),
        E(args(idx=lambda rng: np.full((2, 3, 2, 3), 30)), ValueError, "indices"),
        E(args(idx=lambda rng: np.full((2, 3, 2, 3), -2)), ValueError, "indices"),
        E(args(idx=lambda rng: np.zeros((2, 3, 2, 3), np.int32)), TypeError, "indices"),
        E(args(g=lambda rng: arr(rng, 2, 3, 2, 2)), ValueError, "grad_output"),
        E(args(), ValueError, "stride", stride=0),
    ]


@op("kernels", "avg_pool2d_forward", ("avg_pool2d",))
def _(rng):
    def args(x=None, dtype=np.float32):
        return [x or (lambda rng: arr(rng, 2, 3, 5, 6, dtype=dtype)), 2]

    return [Call(tuple(args())), Call(tuple(args()), dict(stride=10**12, padding=1, ceil_mode=True))], [
        *_pool_errors(args, "avg_pool2d", dilation=False),
        E(args(), ValueError, "divisor_override", divisor_override=-3),
    ]


@op("kernels", "avg_pool2d_backward", ("avg_pool2d",))
def _(rng):
    def args(g=None, dtype=np.float32):
        return [g or (lambda rng: arr(rng, 2, 3, 2, 3, dtype=dtype)), (2, 3, 5, 6), 2]

    return [Call(tuple(args()))], [
        E(args(dtype=np.int64), TypeError, "dtype"),
        E(args(g=lambda rng: arr(rng, 2, 3, 3, 3)), ValueError, "grad_output"),
        E(args(), ValueError, "padding", padding=3),
    ]


@op("kernels", "adaptive_avg_pool2d_forward", ("adaptive_avg_pool2d",))
def _(rng):
    def args(x=None, dtype=np.float32):
        return [x or (lambda rng: arr(rng, 2, 3, 5, 6, dtype=dtype)), (2, 4)]

    return [Call(tuple(args())), Call((lambda rng: arr(rng, 3, 5, 6), 1))], [
        E(args(dtype=np.float16), TypeError, "dtype"),
        E([lambda rng: arr(rng, 2, 3, 5, 6), (0, 1)], ValueError, "output_size"),
        E([lambda rng: arr(rng, 5, 6), 1], ValueError, "input"),
        E(args(x=lambda rng: big_endian(arr(rng, 2, 3, 5, 6))), TypeError, "byte order"),
    ]


@op("kernels", "adaptive_avg_pool2d_backward", ("adaptive_avg_pool2d",))
def _(rng):
    return [Call((lambda rng: arr(rng, 2, 3, 2, 4), (2, 3, 5, 6)))], [
        E([lambda rng: arr(rng, 2, 3, 2, 4).astype(np.float16), (2, 3, 5, 6)], TypeError, "dtype"),
        E([lambda rng: arr(rng, 2, 3, 2), (2, 3, 5, 6)], ValueError, "grad_output"),
    ]


# =============================================================================================
# pyfastdl.kernels: LSTM
# =============================================================================================

def _cell(rng, B=3, I=5, H=4, dtype=np.float32):
    return dict(input=arr(rng, B, I, dtype=dtype), hx=arr(rng, B, H, dtype=dtype), cx=arr(rng, B, H, dtype=dtype),
                weight_ih=arr(rng, 4 * H, I, dtype=dtype), weight_hh=arr(rng, 4 * H, H, dtype=dtype))


def _with(base, **changes):
    """A Call of ``base``'s keyword arrays (built from rng) with some replaced."""
    return lambda rng: {**base(rng), **{k: (v(rng) if callable(v) else v) for k, v in changes.items()}}


class Kw:
    """Keyword arguments built from rng at call time: ``Call((Kw(fn),))`` calls op(**fn(rng))."""

    def __init__(self, fn):
        self.fn = fn


def KE(fn, error, arg, op=None):  # noqa: N802
    return ErrorInput(Call((Kw(fn),)), error, arg, op)


def _build(value, rng):
    """A table value as the op gets it: builders (callables) called with rng, inside tuples too."""
    if callable(value):
        return value(rng)
    if isinstance(value, (tuple, list)):
        return type(value)(_build(v, rng) for v in value)
    return value


def resolve(call, rng):
    """The (args, kwargs) a Call passes to its op, every builder called with rng."""
    args, kwargs = [], {}
    for a in call.args:
        if isinstance(a, Kw):
            kwargs.update(a.fn(rng))
        else:
            args.append(_build(a, rng))
    kwargs.update({k: _build(v, rng) for k, v in call.kwargs.items()})
    return args, kwargs


@op("kernels", "lstm_cell_forward", ("lstm_cell",))
def _(rng):
    base = _cell
    return [Call((Kw(base),)), Call((Kw(_with(base, bias_ih=lambda rng: arr(rng, 16))),))], [
        KE(_with(base, hx=lambda rng: arr(rng, 3, 5)), ValueError, "hx"),
        KE(_with(base, weight_hh=lambda rng: arr(rng, 12, 4)), ValueError, "weight_hh"),
        KE(_with(base, weight_ih=lambda rng: arr(rng, 16, 6)), ValueError, "weight_ih"),
        KE(_with(base, input=lambda rng: arr(rng, 3, 5, dtype=np.float64)), TypeError, "dtype"),
        KE(_with(base, bias_ih=lambda rng: arr(rng, 15)), ValueError, "bias_ih"),
        KE(_with(base, cx=lambda rng: big_endian(arr(rng, 3, 4))), TypeError, "byte order"),
        KE(_with(base, input=lambda rng: [[1.0] * 5] * 3), TypeError, "input"),  # was AttributeError (.shape)
        KE(_with(base, weight_ih=None), TypeError, "weight_ih"),
    ]


@op("kernels", "lstm_cell_backward", ("lstm_cell",))
def _(rng):
    def base(rng):
        c = _cell(rng)
        _, _, gates = K.lstm_cell_forward(**c)
        return dict(grad_hy=arr(rng, 3, 4), grad_cy=arr(rng, 3, 4), gates=gates, **c)

    return [Call((Kw(base),))], [
        KE(_with(base, gates=lambda rng: arr(rng, 3, 15)), ValueError, "gates"),
        KE(_with(base, grad_hy=lambda rng: arr(rng, 3, 4, dtype=np.float64)), TypeError, "dtype"),
        KE(_with(base, grad_cy=lambda rng: arr(rng, 4, 4)), ValueError, "grad_cy"),
    ]


def _layer(rng, T=4, B=3, I=5, H=4, dtype=np.float32):
    return dict(input=arr(rng, T, B, I, dtype=dtype), h0=arr(rng, B, H, dtype=dtype), c0=arr(rng, B, H, dtype=dtype),
                weight_ih=arr(rng, 4 * H, I, dtype=dtype), weight_hh=arr(rng, 4 * H, H, dtype=dtype))


@op("kernels", "lstm_layer_forward", ("lstm",))
def _(rng):
    base = _layer
    return [Call((Kw(base),)), Call((Kw(_with(base, lengths=np.array([4, 1, 2]), reverse=True)),))], [
        KE(_with(base, input=lambda rng: arr(rng, 3, 5)), ValueError, "input"),
        KE(_with(base, lengths=np.array([4, 0, 2])), ValueError, "lengths"),
        KE(_with(base, lengths=np.array([4, 5, 2])), ValueError, "lengths"),
        KE(_with(base, lengths=np.array([4, 2])), ValueError, "lengths"),
        KE(_with(base, lengths=np.array([[4, 1, 2]])), ValueError, "lengths"),  # (the probe's other samples)
        KE(_with(base, h0=lambda rng: arr(rng, 3, 5)), ValueError, "h0"),
        KE(_with(base, weight_hh=lambda rng: arr(rng, 16, 5)), ValueError, "weight_hh"),
        KE(_with(base, input=lambda rng: arr(rng, 4, 3, 5, dtype=np.float16)), TypeError, "dtype"),
        KE(_with(base, variant="slow"), ValueError, "variant"),
    ]


@op("kernels", "lstm_layer_backward", ("lstm",))
def _(rng):
    def base(rng):
        c = _layer(rng)
        out, hn, cn, saved = K.lstm_layer_forward(**c)
        return dict(grad_output=arr(rng, 4, 3, 4), grad_hn=arr(rng, 3, 4), grad_cn=arr(rng, 3, 4), input=c["input"],
                    weight_ih=c["weight_ih"], weight_hh=c["weight_hh"], saved=saved)

    return [Call((Kw(base),))], [
        KE(_with(base, grad_output=lambda rng: arr(rng, 4, 3, 5)), ValueError, "grad_output"),
        KE(_with(base, grad_hn=lambda rng: arr(rng, 3, 4, dtype=np.float64)), TypeError, "dtype"),
        KE(_with(base, lengths=np.array([9, 1, 1])), ValueError, "lengths"),
    ]


# =============================================================================================
# pyfastdl.kernels: attention
# =============================================================================================

def _qkv(rng, B=2, H=2, L=5, S=6, E=4, dtype=np.float32):
    return dict(query=arr(rng, B, H, L, E, dtype=dtype), key=arr(rng, B, H, S, E, dtype=dtype),
                value=arr(rng, B, H, S, E, dtype=dtype))


_ATTN = ("scaled_dot_product_attention", "sdpa")


@op("kernels", "sdpa_forward", _ATTN)
def _(rng):
    base = _qkv
    return [Call((Kw(base),)), Call((Kw(_with(base, is_causal=True)),)),
            Call((Kw(_with(base, attn_mask=lambda rng: rng.random((2, 1, 1, 6)) > 0.3)),))], [
        KE(_with(base, key=lambda rng: arr(rng, 2, 2, 6, 3)), ValueError, "key"),
        KE(_with(base, value=lambda rng: arr(rng, 2, 2, 5, 4)), ValueError, "value"),
        KE(_with(base, query=lambda rng: arr(rng, 2, 2, 2, 5, 4)), ValueError, "query"),
        KE(_with(base, attn_mask=lambda rng: arr(rng, 2, 3, 5, 6)), ValueError, "attn_mask"),
        KE(_with(base, attn_mask=lambda rng: np.ones((5, 6), np.int32)), TypeError, "attn_mask"),
        KE(_with(base, attn_mask=lambda rng: np.ones((5, 6), bool), is_causal=True), ValueError, "is_causal"),
        KE(_with(base, scale=float("nan")), ValueError, "scale"),
        KE(_with(base, scale=1e300), ValueError, "scale"),  # inf in float32: gave 0 where torch's math path gives NaN
        KE(_with(base, scale="0.5"), TypeError, "scale"),
        KE(_with(base, query=None), TypeError, "query"),
        KE(_with(base, query=lambda rng: arr(rng, 2, 2, 5, 4, dtype=np.float16)), TypeError, "dtype"),
        KE(_with(base, key=lambda rng: big_endian(arr(rng, 2, 2, 6, 4))), TypeError, "byte order"),
        KE(_with(base, variant="slow"), ValueError, "variant"),
    ]


@op("kernels", "sdpa_backward", _ATTN)
def _(rng):
    def base(rng):
        q = _qkv(rng)
        out, lse = K.sdpa_forward(**q)
        return dict(output=out, lse=lse, grad_output=arr(rng, *out.shape), **q)

    return [Call((Kw(base),))], [
        KE(_with(base, lse=lambda rng: arr(rng, 2, 2, 6)), ValueError, "lse"),
        KE(_with(base, grad_output=lambda rng: arr(rng, 2, 2, 5, 3)), ValueError, "grad_out"),
        KE(_with(base, output=lambda rng: arr(rng, 2, 2, 5, 4, dtype=np.float64)), TypeError, "out"),
    ]


# =============================================================================================
# pyfastdl.nn.functional
# =============================================================================================

def T(*shape, dtype=np.float32):  # noqa: N802
    """A builder of a random Tensor of ``shape``."""
    return lambda rng: ten(rng, *shape, dtype=dtype)


@op("functional", "conv2d")
def _(rng):
    x, w = T(2, 4, 7, 6), T(6, 2, 3, 3)
    return [Call((x, w), dict(padding=1, groups=2)), Call((x, w), dict(padding="same", groups=2, dilation=2))], [
        E([x, T(6, 3, 3, 3)], ValueError, "channel", groups=2),
        E([x, w], ValueError, "padding", padding=HUGE, groups=2),
        E([x, w], ValueError, "padding", padding=BEYOND, groups=2),
        E([x, w], ValueError, "dilation", dilation=2**62, groups=2),
        E([x, w], ValueError, "padding", padding="full", groups=2),
        E([x, w], ValueError, "stride", stride=(1, 2, 3), groups=2),
        E([x, w], ValueError, "padding", padding="same", stride=2, groups=2),
        E([T(2, 4, 7), w], ValueError, "input", groups=2),
        E([x, T(6, 2, 3, 3, dtype=np.float64)], TypeError, "dtype", groups=2),
        E([None, w], TypeError, "input", groups=2),  # issue 13's wider probe: was AttributeError (.shape)
        E([x, w], TypeError, "padding", padding=1.5, groups=2),  # was "'float' object is not iterable"
        E([x, T(6, 2, 3)], ValueError, "weight", padding="same", groups=2),  # was IndexError (tuple index)
    ]


@op("functional", "conv1d")
def _(rng):
    x, w = T(2, 4, 9), T(6, 4, 3)
    return [Call((x, w), dict(padding=1)), Call((x, w), dict(padding="same"))], [
        E([T(2, 4, 9, 1), w], ValueError, "input"),
        E([x, T(6, 4, 3, 1)], ValueError, "weight"),
        E([x, w], ValueError, "padding", padding=HUGE),
        E([x, w], ValueError, "stride", stride=0),
        E([x, [[1.0]]], TypeError, "weight"),
    ]


@op("functional", "conv_transpose2d")
def _(rng):
    x, w = T(2, 4, 5, 5), T(4, 3, 3, 3)
    return [Call((x, w), dict(stride=2, padding=1, output_padding=1))], [
        E([x, w], ValueError, "output_padding", output_padding=1),
        E([x, T(3, 3, 3, 3)], ValueError, "channel"),
        E([x, w], ValueError, "stride", stride=HUGE),
        E([x, w], ValueError, "bias", bias=T(4)),
    ]


@op("functional", "max_pool2d")
def _(rng):
    x = T(2, 3, 5, 6)
    return [Call((x, 2)), Call((x, 2), dict(stride=10**12)), Call((x, 3), dict(padding=1, ceil_mode=True))], [
        E([x, 2], ValueError, "stride", stride=0),
        E([x, 2], ValueError, "padding", padding=2),
        E([x, 3], ValueError, "dilation", dilation=2**62),
        E([x, 2], ValueError, "padding", padding=BEYOND),
        E([T(5, 6), 2], ValueError, "input"),
        E([lambda rng: arr(rng, 2, 3, 5, 6), 2], TypeError, "input"),
        E([x, 2.5], TypeError, "kernel_size"),
    ]


@op("functional", "avg_pool2d")
def _(rng):
    x = T(2, 3, 5, 6)
    return [Call((x, 2)), Call((x, 2), dict(stride=10**12)), Call((x, 3), dict(padding=1, count_include_pad=False))], [
        E([x, 2], ValueError, "stride", stride=-1),
        E([x, 2], ValueError, "padding", padding=2),
        E([x, 2], ValueError, "divisor_override", divisor_override=-1),
        E([x, 9], ValueError, "output size"),
        E([T(5, 6), 2], ValueError, "input"),
    ]


@op("functional", "adaptive_avg_pool2d")
def _(rng):
    x = T(2, 3, 5, 6)
    return [Call((x, (2, 4))), Call((x, 1))], [
        E([x, (0, 2)], ValueError, "output_size"),
        E([x, (1, 2, 3)], ValueError, "output_size"),
        E([T(5, 6), 2], ValueError, "input"),
        E([x, 2**40], ValueError, "output_size (1099511627776, 1099511627776)"),  # checked before numpy allocates
        E([x, (2**62, None)], ValueError, "too large"),
    ]


@op("functional", "max_pool1d")
def _(rng):
    x = T(2, 3, 9)
    return [Call((x, 2)), Call((x, 3), dict(stride=1, padding=1))], [
        E([x, 2], ValueError, "stride", stride=0),
        E([x, 2], ValueError, "padding", padding=2),
        E([T(2, 3, 4, 5), 2], ValueError, "input"),
        E([x, (2, 2)], ValueError, "kernel_size"),
    ]


@op("functional", "avg_pool1d")
def _(rng):
    x = T(2, 3, 9)
    return [Call((x, 2)), Call((x, 3), dict(stride=1, padding=1))], [
        E([x, 2], ValueError, "stride", stride=0),
        E([x, 2], ValueError, "padding", padding=2),
        E([T(9), 2], ValueError, "input"),
    ]


@op("functional", "lstm_cell")
def _(rng):
    x, h, c, wi, wh = T(3, 5), T(3, 4), T(3, 4), T(16, 5), T(16, 4)
    return [Call((x, (h, c), wi, wh)), Call((x, (h, c), wi, wh, T(16), T(16)))], [
        E([x, (T(3, 5), c), wi, wh], ValueError, "hx"),
        E([x, (h, c), T(12, 5), wh], ValueError, "weight_ih"),
        E([x, (h, c), wi, T(16, 3)], ValueError, "weight_hh"),
        E([T(3, 5, dtype=np.float64), (h, c), wi, wh], TypeError, "dtype"),
        E([None, (h, c), wi, wh], TypeError, "input"),  # issue 13's wider probe: was AttributeError (.ndim)
        E([x, (h, None), wi, wh], TypeError, "hx[1]"),
    ]


@op("functional", "lstm")
def _(rng):
    x = T(4, 3, 5)
    params = lambda rng: [ten(rng, 16, 5), ten(rng, 16, 4), ten(rng, 16), ten(rng, 16)]  # noqa: E731
    return [Call((x, None, params)), Call((x, None, params), dict(lengths=[4, 2, 1]))], [
        E([T(4, 3, 5, 1), None, params], ValueError, "input"),
        E([x, None, params], ValueError, "dropout", dropout=1.5),
        E([x, None, params], ValueError, "weight_hh", num_layers=2),
        E([x, None, params], ValueError, "lengths", lengths=[4, 5, 1]),
        E([x, (T(1, 3, 5), T(1, 3, 4)), params], ValueError, "hx"),
        E([x, None, params], TypeError, "num_layers", num_layers=None),  # was "unsupported operand type(s)"
        E([x, None, params], TypeError, "dropout", dropout="0.1"),
        E([x, None, lambda rng: [None, *params(rng)[1:]]], TypeError, "params[0]"),
    ]


@op("functional", "scaled_dot_product_attention")
def _(rng):
    q, k, v = T(2, 2, 5, 4), T(2, 2, 6, 4), T(2, 2, 6, 4)
    mask = lambda rng: pf.tensor(rng.random((5, 6)) > 0.3)  # noqa: E731
    return [Call((q, k, v)), Call((q, k, v), dict(attn_mask=mask)), Call((q, k, v), dict(is_causal=True))], [
        E([q, T(2, 2, 6, 3), v], ValueError, "key"),
        E([q, k, T(2, 2, 5, 4)], ValueError, "value"),
        E([T(2, 2, 2, 5, 4), k, v], ValueError, "query"),
        E([q, k, v], ValueError, "is_causal", attn_mask=mask, is_causal=True),
        E([q, k, v], ValueError, "attn_mask", attn_mask=T(3, 5, 6)),
        E([q, k, v], ValueError, "scale", scale=float("inf")),
        E([q, k, v], ValueError, "scale", scale=1e300),
    ]


def _unary(name, extra_samples=(), extra_errors=()):
    """Elementwise ops: samples on a small tensor; a non-Tensor input is a TypeError."""

    @op("functional", name)
    def _(rng):
        x = T(3, 4)
        return [Call((x,)), *extra_samples], [E([[1.0, 2.0]], TypeError, "input"), *extra_errors]


_unary("relu")
_unary("sigmoid")
_unary("tanh")
# Integer inputs: torch refuses them for leaky_relu, gelu and glu (here they were computed in integers: wrong)
_INT = E([lambda rng: pf.tensor(rng.integers(-3, 3, (3, 4)))], TypeError, "floating-point")
_unary("leaky_relu", extra_errors=[E([T(3, 4)], TypeError, "negative_slope", negative_slope="0.1"), _INT])
_unary("gelu", extra_errors=[E([T(3, 4)], ValueError, "approximate", approximate="fast"), _INT])
_unary("glu", extra_errors=[E([T(3, 5)], ValueError, "dim"), E([T(3, 4)], IndexError, "dim", dim=2), _INT])
_unary("softmax", extra_samples=[Call((T(3, 4),), dict(dim=0))],
       extra_errors=[E([T(3, 4)], IndexError, "dim", dim=2), E([T(3, 4)], TypeError, "dim", dim=1.0)])
_unary("log_softmax", extra_samples=[Call((T(3, 4),), dict(dim=-1))],
       extra_errors=[E([T(3, 4)], IndexError, "dim", dim=-3)])


@op("functional", "dropout")
def _(rng):
    x = T(3, 4)
    return [Call((x,)), Call((x,), dict(p=0.0)), Call((x,), dict(training=False))], [
        E([x], ValueError, "p", p=1.5),
        E([x], ValueError, "p", p=-0.1),
        E([[1.0]], TypeError, "input"),
    ]


@op("functional", "embedding")
def _(rng):
    idx = lambda rng: pf.tensor(rng.integers(0, 7, (3, 4)))  # noqa: E731
    w = T(7, 5)
    return [Call((idx, w)), Call((idx, w), dict(padding_idx=0))], [
        E([lambda rng: pf.tensor(np.array([[0, 7]])), w], IndexError, "input"),
        E([lambda rng: pf.tensor(np.array([[0, -1]])), w], IndexError, "input"),
        E([T(3, 4), w], TypeError, "input"),
        E([idx, T(7)], ValueError, "weight"),
        E([idx, w], ValueError, "padding_idx", padding_idx=7),
        E([idx, w], TypeError, "padding_idx", padding_idx="0"),
    ]


@op("functional", "one_hot")
def _(rng):
    idx = lambda rng: pf.tensor(rng.integers(0, 5, (3, 4)))  # noqa: E731
    return [Call((idx,)), Call((idx, 6))], [
        E([idx, 3], IndexError, "tensor"),
        E([lambda rng: pf.tensor(np.array([-1, 2]))], IndexError, "tensor"),
        E([T(3)], TypeError, "tensor"),
        E([idx, 2**62], ValueError, "too large"),  # checked before numpy allocates
        E([idx, None], TypeError, "num_classes"),
    ]


@op("functional", "linear")
def _(rng):
    x, w = T(3, 5), T(4, 5)
    # in_features 0: torch's zeros + bias (numpy cannot reshape a size-0 input with -1); an empty batch
    return [Call((x, w)), Call((x, w, T(4))), Call((T(3, 0), T(4, 0), T(4))), Call((T(2, 0, 5), w))], [
        E([x, T(4, 6)], ValueError, "weight"),
        E([x, w, T(5)], ValueError, "bias"),
        E([x, T(4, 5, 1)], ValueError, "weight"),
        E([x, w, [0.0] * 4], TypeError, "bias"),  # was AttributeError (.shape)
    ]


@op("functional", "cross_entropy")
def _(rng):
    x, t = T(4, 5), (lambda rng: pf.tensor(rng.integers(0, 5, 4)))
    return [Call((x, t)), Call((x, t), dict(label_smoothing=0.1, reduction="sum"))], [
        E([x, lambda rng: pf.tensor(np.array([0, 1, 5, 2]))], IndexError, "target"),
        E([x, lambda rng: pf.tensor(rng.integers(0, 5, 3))], ValueError, "target"),
        E([x, t], ValueError, "reduction", reduction="avg"),
        E([x, t], ValueError, "label_smoothing", label_smoothing=1.5),
        E([x, t], ValueError, "weight", weight=T(4)),
        E([x, t], TypeError, "ignore_index", ignore_index=None),  # was int()'s message
        E([x, t], TypeError, "label_smoothing", label_smoothing="0.1"),
    ]


@op("functional", "nll_loss")
def _(rng):
    x, t = T(4, 5), (lambda rng: pf.tensor(rng.integers(0, 5, 4)))
    return [Call((x, t)), Call((x, t), dict(reduction="none"))], [
        E([x, lambda rng: pf.tensor(np.array([0, 1, -3, 2]))], IndexError, "target"),
        E([x, t], ValueError, "reduction", reduction="max"),
        E([x, T(4)], TypeError, "target"),
    ]


def _pointwise_loss(name, extra_errors=()):
    @op("functional", name)
    def _(rng):
        x, y = T(3, 4), T(3, 4)
        return [Call((x, y)), Call((x, y), dict(reduction="none"))], [
            E([x, T(3, 5)], ValueError, "target"),
            E([x, y], ValueError, "reduction", reduction="average"),
            E([x, T(3, 4, dtype=np.float64)], TypeError, "dtype"),  # was autograd's "PointwiseLoss: ..."
            *extra_errors,
        ]


_pointwise_loss("mse_loss")
_pointwise_loss("smooth_l1_loss", [E([T(3, 4), T(3, 4)], ValueError, "beta", beta=-1.0),
                                   E([T(3, 4), T(3, 4)], TypeError, "beta", beta=None)])
_pointwise_loss("binary_cross_entropy_with_logits", [E([T(3, 4), T(3, 4)], ValueError, "pos_weight",
                                                       pos_weight=T(5))])


@op("functional", "batch_norm")
def _(rng):
    x, m, v = T(4, 3, 2, 2), (lambda rng: pf.tensor(np.zeros(3, np.float32))), (lambda rng: pf.tensor(np.ones(3, np.float32)))
    return [Call((x, m, v)), Call((x, m, v), dict(training=True, weight=T(3), bias=T(3)))], [
        E([x, T(4), v], ValueError, "running_mean"),
        E([x, m, v], ValueError, "weight", weight=T(2)),
        E([T(1, 3), None, None], ValueError, "batch", training=True),
        E([x, m, v], TypeError, "momentum", momentum=None),  # was float()'s message
        E([x, m, v], ValueError, "eps", eps=float("nan")),
        E([x, lambda rng: np.zeros(3, np.float32), v], TypeError, "running_mean"),
    ]


@op("functional", "layer_norm")
def _(rng):
    x = T(2, 3, 4)
    return [Call((x, (4,))), Call((x, (3, 4), T(3, 4), T(3, 4)))], [
        E([x, (3,)], ValueError, "normalized_shape"),
        E([x, (4,), T(3)], ValueError, "weight"),
        E([x, (2, 3, 4, 5)], ValueError, "normalized_shape"),
        E([x, (4,)], ValueError, "eps", eps=-1.0),
        E([x, (4.0,)], TypeError, "normalized_shape"),
    ]


@op("functional", "pad")
def _(rng):
    x = T(2, 3, 4)
    return [Call((x, (1, 2))), Call((x, (1, 1, 2, 0)), dict(value=1.5))], [
        E([x, (1, 2, 3)], ValueError, "pad"),
        E([x, (1, 1, 1, 1, 1, 1, 1, 1)], ValueError, "pad"),
        E([x, (1, 1)], ValueError, "mode", mode="circular-ish"),
        E([x, (-5, 0)], ValueError, "pad"),
        E([x, (2**62, 0)], ValueError, "too large"),  # checked before numpy allocates ("array is too big")
        E([x, (0, BEYOND)], ValueError, "out of range"),
        E([x, (1, 1)], TypeError, "value", value="zero"),
        E([x, None], TypeError, "pad"),
    ]


# =============================================================================================
# pyfastdl.kernels: normalisation, softmax and cross-entropy, optimizer updates (CPU kernels)
# =============================================================================================


def _bn_args(rng, x=None, w=None):
    return [x if x is not None else arr(rng, 4, 3, 5, 5), w if w is not None else arr(rng, 3), arr(rng, 3),
            np.zeros(3, np.float32), np.ones(3, np.float32), True]


@op("kernels", "batch_norm_forward", ("batch_norm",))
def _(rng):
    return [Call(tuple(_bn_args(rng))), Call(tuple(_bn_args(rng)[:5] + [False]))], [
        E(_bn_args(rng, x=arr(rng, 4, 3, 5, 5).astype(np.float16)), TypeError, "input"),
        E(_bn_args(rng, w=arr(rng, 4)), ValueError, "weight"),
        E(_bn_args(rng, x=arr(rng, 5)), ValueError, "input"),
        E(_bn_args(rng), ValueError, "variant", variant="slow"),
        E(_bn_args(rng, w=[1.0, 2.0, 3.0]), TypeError, "weight"),  # issue 13's probe: named no op
        E(_bn_args(rng), TypeError, "eps", eps=None),
    ]


def _bn_backward_args(rng, g=None, mean=None):
    x = arr(rng, 4, 3, 5, 5)
    _, m, s = K.batch_norm_forward(x, arr(rng, 3), arr(rng, 3), None, None, True)
    return [g if g is not None else arr(rng, 4, 3, 5, 5), x, arr(rng, 3), m if mean is None else mean, s, True]


@op("kernels", "batch_norm_backward", ("batch_norm",))
def _(rng):
    return [Call(tuple(_bn_backward_args(rng)))], [
        E(_bn_backward_args(rng, g=arr(rng, 4, 3, 5, 4)), ValueError, "grad_output"),
        E(_bn_backward_args(rng, mean=arr(rng, 2)), ValueError, "mean"),
    ]


@op("kernels", "layer_norm_forward", ("layer_norm",))
def _(rng):
    return [Call((arr(rng, 4, 6), (6,))), Call((arr(rng, 2, 3, 6), (3, 6), arr(rng, 3, 6), arr(rng, 3, 6)))], [
        E((arr(rng, 4, 6), (5,)), ValueError, "normalized_shape"),
        E((arr(rng, 4, 6), (6,), arr(rng, 5)), ValueError, "weight"),
        E((arr(rng, 4, 6).astype(np.float16), (6,)), TypeError, "input"),
        E((arr(rng, 4, 6), None), TypeError, "normalized_shape"),  # was "'NoneType' object is not iterable"
    ]


def _ln_backward_args(rng, g=None, shape=(6,)):
    x = arr(rng, 4, 6)
    _, m, s = K.layer_norm_forward(x, (6,))
    return [g if g is not None else arr(rng, 4, 6), x, shape, None, m, s]


@op("kernels", "layer_norm_backward", ("layer_norm",))
def _(rng):
    return [Call(tuple(_ln_backward_args(rng)))], [
        E(_ln_backward_args(rng, g=arr(rng, 4, 5)), ValueError, "grad_output"),
        E(_ln_backward_args(rng, shape=(4,)), ValueError, "normalized_shape"),
    ]


for _name in ("softmax", "log_softmax"):

    @op("kernels", f"{_name}_forward", (_name,))
    def _(rng, _name=_name):
        return [Call((arr(rng, 3, 4),)), Call((arr(rng, 2, 3, 5, dtype=np.float64),))], [
            E((arr(rng, 3, 4).astype(np.float16),), TypeError, "input"),
            E((arr(rng, 3, 4),), ValueError, "variant", variant="slow"),
            E((np.ones((3, 0), np.float32),), ValueError, "dimension"),
        ]

    @op("kernels", f"{_name}_backward", (_name,))
    def _(rng, _name=_name):
        out = getattr(K, f"{_name}_forward")(arr(rng, 3, 4))
        return [Call((out, arr(rng, 3, 4)))], [
            E((out, arr(rng, 3, 5)), ValueError, "grad_output"),
            E((out, arr(rng, 3, 4, dtype=np.float64)), TypeError, "grad_output"),
        ]


@op("kernels", "cross_entropy_forward", ("cross_entropy",))
def _(rng):
    x = arr(rng, 3, 4)
    return [Call((x, [0, 1, 2])), Call((x, [0, -100, 3]), dict(label_smoothing=0.1, weight=arr(rng, 4)))], [
        E((x, [0, 1, 7]), IndexError, "target"),
        E((x, [0, 1]), ValueError, "target"),
        E((x, [0, 1, 2]), ValueError, "label_smoothing", label_smoothing=1.5),
        E((x, [0, 1, 2]), ValueError, "weight", weight=arr(rng, 3)),
        E((x, [0, 1, 2]), TypeError, "weight", weight=[1.0] * 4),  # was "expected a numpy or cupy array"
    ]


@op("kernels", "cross_entropy_backward", ("cross_entropy",))
def _(rng):
    x = arr(rng, 3, 4)
    _, lse = K.cross_entropy_forward(x, [0, 1, 2])
    return [Call((x, [0, 1, 2], lse))], [
        E((x, [0, 1, 2], arr(rng, 2)), ValueError, "lse"),
        E((x, [0, 1], lse), ValueError, "target"),
        E((x, [0, 1, 2], lse), TypeError, "scale", scale=None),  # was float()'s message
    ]


for _name, _slope in (("relu", ()), ("leaky_relu", (0.1,))):

    @op("kernels", f"{_name}_forward", (_name,))
    def _(rng, _name=_name, _slope=_slope):
        return [Call((arr(rng, 3, 4), *_slope)), Call((arr(rng, 1, dtype=np.float64), *_slope))], [
            E((arr(rng, 3, 4).astype(np.float16), *_slope), TypeError, "input"),
            E((arr(rng, 3, 4).astype(">f4"), *_slope), TypeError, "input"),
            E(([1.0, -1.0], *_slope), TypeError, "input"),
            E((arr(rng, 3, 4), *_slope), ValueError, "output", out=arr(rng, 4, 3)),
            E((arr(rng, 3, 4), *_slope), ValueError, "variant", variant="reference"),
        ] + ([E((arr(rng, 3, 4), float("inf")), ValueError, "negative_slope")] if _slope else [])

    @op("kernels", f"{_name}_backward", (_name,))
    def _(rng, _name=_name, _slope=_slope):
        return [Call((arr(rng, 3, 4), arr(rng, 3, 4), *_slope))], [
            E((arr(rng, 3, 4), arr(rng, 3, 5), *_slope), ValueError, "grad_output"),
            E((arr(rng, 3, 4), arr(rng, 3, 4, dtype=np.float64), *_slope), TypeError, "grad_output"),
            E((arr(rng, 3, 4).astype(np.int32), arr(rng, 3, 4), *_slope), TypeError, "ref"),
        ]


@op("kernels", "glu_forward", ("glu",))
def _(rng):
    return [Call((arr(rng, 3, 4),)), Call((arr(rng, 2, 6, 3, dtype=np.float64), 1))], [
        E((arr(rng, 3, 5),), ValueError, "dim"),
        E((arr(rng, 3, 4), 2), ValueError, "dim"),
        E((arr(rng, 3, 4), None), TypeError, "dim"),
        E((arr(rng, 3, 4), 1.5), TypeError, "dim"),
        E((arr(rng, 3, 4).astype(np.float16),), TypeError, "input"),
        E((arr(rng, 3, 4).astype(">f4"),), TypeError, "input"),
        E((arr(rng, 3, 4),), ValueError, "output", out=arr(rng, 3, 4)),
        E((arr(rng, 3, 4),), ValueError, "variant", variant="reference"),
    ]


@op("kernels", "glu_backward", ("glu",))
def _(rng):
    return [Call((arr(rng, 3, 4), arr(rng, 3, 2)))], [
        E((arr(rng, 3, 4), arr(rng, 3, 4)), ValueError, "grad_output"),
        E((arr(rng, 3, 4), arr(rng, 3, 2, dtype=np.float64)), TypeError, "grad_output"),
        E((arr(rng, 3, 4).astype(np.int32), arr(rng, 3, 2)), TypeError, "input"),
    ]


@op("kernels", "random_bits")
def _(rng):
    return [Call((5, (3, 4))), Call((2**64 - 1, ()))], [
        E((-1, (3, 4)), ValueError, "seed"),
        E((BEYOND, (3, 4)), ValueError, "seed"),
        E((1.5, (3, 4)), TypeError, "seed"),
        E((5, (3, -4)), ValueError, "shape"),
        E((5, (HUGE, HUGE)), ValueError, "shape"),
        E((5, 4), TypeError, "shape"),
        E((5, (3, 4)), TypeError, "out", out=np.ones((3, 4), np.int16)),
        E((5, (3, 4)), ValueError, "out", out=np.ones((4, 3), np.uint16)),
        E((5, (3, 4)), ValueError, "variant", variant="reference"),
    ]


@op("kernels", "dropout_forward", ("dropout",))
def _(rng):
    return [Call((arr(rng, 3, 4), 12345, 6554, 1 / 0.9)), Call((arr(rng, 5, dtype=np.float64), 0, 0, 1.0))], [
        E((arr(rng, 3, 4), 1, 65536, 1.0), ValueError, "threshold"),
        E((arr(rng, 3, 4), 1, 6554.0, 1.0), TypeError, "threshold"),
        E((arr(rng, 3, 4), -1, 6554, 1.0), ValueError, "seed"),
        E((arr(rng, 3, 4), BEYOND, 6554, 1.0), ValueError, "seed"),
        E((arr(rng, 3, 4), None, 6554, 1.0), TypeError, "seed"),
        E((arr(rng, 3, 4), rng.integers(0, 65536, size=(3, 4), dtype=np.uint16), 6554, 1.0), TypeError, "seed"),
        E((arr(rng, 3, 4).astype(">f4"), 1, 6554, 1.0), TypeError, "input"),
        E((arr(rng, 3, 4), 1, 6554, None), TypeError, "scale"),
        E((arr(rng, 3, 4), 1, 6554, 1.0), ValueError, "output", out=(arr(rng, 4, 3), np.ones((3, 4), np.uint8))),
        E((arr(rng, 3, 4), 1, 6554, 1.0), TypeError, "keep", out=(arr(rng, 3, 4), arr(rng, 3, 4))),
        E((arr(rng, 3, 4), 1, 6554, 1.0), ValueError, "variant", variant="reference"),
    ]


@op("kernels", "dropout_backward", ("dropout",))
def _(rng):
    keep = (rng.random((3, 4)) < 0.5).astype(np.uint8)
    return [Call((arr(rng, 3, 4), keep, 2.0))], [
        E((arr(rng, 3, 4), keep.astype(bool), 2.0), TypeError, "keep"),
        E((arr(rng, 3, 4), keep[:2], 2.0), ValueError, "keep"),
        E((arr(rng, 3, 4).astype(np.int64), keep, 2.0), TypeError, "grad_output"),
    ]


@op("kernels", "sgd_step", ("sgd", "SGD"))
def _(rng):
    return [Call(([arr(rng, 3)], [arr(rng, 3)], None, [False]), dict(lr=0.1)),
            Call(([arr(rng, 3)], [arr(rng, 3)], [arr(rng, 3)], [True]), dict(lr=0.1, momentum=0.9, nesterov=True))], [
        E(([], [], None, []), ValueError, "params", lr=0.1),
        E(([arr(rng, 3)], [arr(rng, 4)], None, [False]), ValueError, "grads", lr=0.1),
        E(([arr(rng, 3)], [arr(rng, 3)], None, [False]), ValueError, "lr", lr=float("nan")),
        E(([arr(rng, 3)], [arr(rng, 3)], None, [True]), ValueError, "momentum_buffers", lr=0.1, momentum=0.9),
        E(([None], [arr(rng, 3)], None, [False]), TypeError, "params[0]", lr=0.1),  # issue 13's probe: named no op
        E(([arr(rng, 3)], [arr(rng, 3)], None, [False]), TypeError, "lr", lr="0.1"),
    ]


@op("kernels", "adam_step", ("adam", "Adam"))
def _(rng):
    def args(g=None, dtype=np.float32):
        return ([arr(rng, 3, dtype=dtype)], [g if g is not None else arr(rng, 3, dtype=dtype)], [arr(rng, 3)],
                [np.abs(arr(rng, 3))], None)

    return [Call((*args(), [1]), dict(lr=0.1)), Call((*args(), [3]), dict(lr=0.1, decoupled=True, weight_decay=0.01))], [
        E((*args(g=arr(rng, 4)), [1]), ValueError, "grads", lr=0.1),
        E((*args(), [0]), ValueError, "steps", lr=0.1),
        E((*args(), [1]), ValueError, "beta1", lr=0.1, betas=(1.5, 0.9)),
        E((*args(dtype=np.float16), [1]), TypeError, "params", lr=0.1),
    ]
