"""The one shape every family in :mod:`pyfastdl.kernels` takes: what a raw-kernel wrapper does
besides its family's own argument handling.

A wrapper (``pyfastdl/kernels/<family>.py``) builds its family's argument struct (``_C.<X>Args``,
validated in C++) through :func:`cached`, allocates its outputs with :func:`outputs` (or takes the
caller's ``out=``), and runs the kernel with :func:`launch`, which picks the variant's compiled
kernel and the device (through :mod:`pyfastdl.backend`, the only module that knows devices)::

    _conv_args = _dispatch.cached(_C.Conv2dArgs)

    def conv2d_forward(x, weight, bias=None, stride=1, ..., *, variant="fast", out=None):
        a = _conv_args(tuple(x.shape), tuple(weight.shape), ...)
        (y,) = _dispatch.outputs(out, x, a.out_shape)
        _dispatch.launch("conv2d_forward", variant, a, x, weight, bias, y)
        return y

Conventions, the same in every family: ``variant=`` and ``out=`` are keyword-only; the variants
are :data:`VARIANTS`, ``"fast"`` (the optimised kernel, the default) and ``"reference"`` (the
simple kernel kept beside it for study), plus any rungs of a family's ladder it keeps selectable
(convolution: "im2col", "winograd", "direct"), and the compiled kernel of a variant other than "fast" is the
fast one's name plus ``_<variant>``; ``out=`` is the output array, or the tuple of output arrays
in the order the function returns them, each of exactly the shape and dtype the function would
allocate (the binding checks).
"""

from __future__ import annotations

import functools
import math
import numbers
import operator

from .. import backend

__all__ = ["VARIANTS", "kernel_name", "launch", "cached", "outputs", "kernel_input", "int_arg", "pair_arg", "shape_arg",
           "float_arg"]

#: The variants of every kernel family: the default first.
VARIANTS = ("fast", "reference")


def kernel_name(op: str, variant: str, variants=VARIANTS) -> str:
    """The compiled kernel that runs ``variant`` (one of ``variants``: a family may have more than the
    shared two) of ``op``: ``op`` itself for "fast", else ``op`` + "_" + variant (e.g.
    "conv2d_forward_reference")."""
    if variant not in variants:
        raise ValueError(f"{op}: variant must be one of {variants}, got {variant!r}")
    return op if variant == "fast" else f"{op}_{variant}"


def launch(op: str, variant: str, args, *arrays, variants=VARIANTS) -> None:
    """Run ``variant`` (one of ``variants``) of kernel ``op`` with ``args`` (the family's Args) and
    ``arrays`` on the device of ``arrays[0]`` (an ndarray; any other array on another device is a
    TypeError saying so)."""
    backend.launch(kernel_name(op, variant, variants), backend.device_of(arrays[0]), args, *arrays)


def cached(factory, maxsize: int = 512):
    """``factory`` (an Args constructor: its results are immutable) memoised on its arguments,
    which must be hashable (shapes as tuples). A training loop calls each kernel with the same
    shapes every step, and building and validating the Args is most of a small call's cost; the
    backward, given the forward's arguments, finds the forward's Args here."""
    return functools.lru_cache(maxsize=maxsize)(factory)


def _empty(like, shape, dtype):
    """Every output the wrappers allocate comes from here (tests poison it with NaN)."""
    return backend.get_array_module(like).empty(tuple(shape), dtype)


def outputs(out, like, *shapes, dtype=None, op=None, what="output"):
    """The outputs of one call, as a tuple: ``out`` (one array, or a tuple of them) if given, else
    new uninitialised arrays of ``shapes`` on ``like``'s device, of ``dtype`` (default: like's).
    ``op``, given by the kernels whose output can outgrow their input (adaptive pooling), has the
    shapes checked first (:func:`pyfastdl.backend.check_size`) and is named, with ``what``, if an
    output is too large to exist or to fit in memory."""
    if out is not None:
        return out if isinstance(out, tuple) else (out,)
    dtype = like.dtype if dtype is None else dtype
    if op is not None:
        shapes = [backend.check_size(op, what, s, dtype) for s in shapes]
    return tuple(_allocated(like, s, dtype, op, what) for s in shapes)


def _allocated(like, shape, dtype, op, what):
    try:
        return _empty(like, shape, dtype)
    except MemoryError:
        if op is None:
            raise
        raise backend.out_of_memory(op, what, shape, dtype) from None


def kernel_input(x, op=None, name=None, optional=False):
    """``x`` as the compiled kernels take an input: C-contiguous and (numpy) writeable, copied if
    need be. Anything but a numpy or cupy array is a TypeError (naming ``op`` and the argument
    ``name`` when given); None stays None where ``optional`` (or no ``op`` is named)."""
    if x is None:
        if optional or op is None:
            return None
        raise TypeError(f"{op}: {name} must be a numpy or cupy array, got None")
    try:
        backend.device_of(x)
    except TypeError:
        if op is None:
            raise
        raise TypeError(f"{op}: {name} must be a numpy or cupy array, got {type(x).__name__}") from None
    x = backend.contiguous(x)
    if getattr(x.flags, "writeable", True):
        return x
    return x.copy()


def int_arg(op: str, name: str, value, what: str = "an int", lo: int = -(2**63), hi: int = 2**63) -> int:
    """An integer argument in [lo, hi) (default: a size that fits in 64 bits), or a TypeError/ValueError
    naming ``op`` and ``name`` (and saying it must be ``what``)."""
    if isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be {what}, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be {what}, got {value!r}") from None
    if not lo <= value < hi:
        why = "a size must fit in 64 bits" if (lo, hi) == (-(2**63), 2**63) else f"it must be {what}"
        raise ValueError(f"{op}: {name} = {value} is out of range ({why})")
    return value


_PAIR = "an int or a pair of ints"


def pair_arg(op: str, name: str, value) -> tuple:
    """torch's _pair: an int n means (n, n); a 1-sequence (n,) too."""
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            value = (value[0], value[0])
        if len(value) != 2:
            raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
        return (int_arg(op, name, value[0], _PAIR), int_arg(op, name, value[1], _PAIR))
    v = int_arg(op, name, value, _PAIR)
    return (v, v)


def shape_arg(op: str, name: str, value) -> tuple:
    """A shape argument (input_shape, weight_shape) as a tuple of non-negative ints whose product fits
    in 64 bits, or a TypeError/ValueError naming ``op`` and ``name``."""
    if type(value) is tuple and all(type(d) is int for d in value):  # the common case, kept cheap
        shape = value
    elif isinstance(value, (tuple, list)):
        shape = tuple(int_arg(op, name, d) for d in value)
    else:
        raise TypeError(f"{op}: {name} must be a tuple of ints, got {value!r}")
    if any(d < 0 for d in shape) or math.prod(shape) >= 2**63:
        raise ValueError(f"{op}: {name} {shape} is not a shape an array can have (sizes >= 0, fewer than "
                         "2**63 elements)")
    return shape


def float_arg(op: str, name: str, value) -> float:
    """A real-number argument (eps, momentum, label_smoothing) as a float, or a TypeError naming ``op``
    and ``name`` (float() would take a string, and say nothing of the op of a None)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a number, got {value!r}")
    return float(value)
