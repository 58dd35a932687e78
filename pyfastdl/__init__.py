"""pyfastdl: the classic deep-learning models from LeNet to Transformer, on hand-written C++ and
CUDA kernels (convolution, pooling, LSTM, attention) with a small PyTorch-style autograd."""

__version__ = "0.1.0"

import numpy as _np

from .autograd import Function, enable_grad, is_grad_enabled, no_grad  # noqa: E402,F401
from .backend import cuda_is_available, get_num_threads, set_num_threads  # noqa: E402,F401
from .creation import (  # noqa: E402,F401
    abs,
    arange,
    argmax,
    cat,
    clamp,
    exp,
    flatten,
    from_dlpack,
    from_numpy,
    full,
    log,
    matmul,
    max,
    mean,
    min,
    ones,
    ones_like,
    permute,
    pow,
    relu,
    reshape,
    sigmoid,
    sqrt,
    stack,
    sum,
    tanh,
    tensor,
    transpose,
    where,
    zeros,
    zeros_like,
)
from .random import manual_seed  # noqa: E402,F401
from .tensor import Tensor  # noqa: E402,F401

float16 = _np.dtype(_np.float16)
float32 = _np.dtype(_np.float32)
float64 = _np.dtype(_np.float64)
int32 = _np.dtype(_np.int32)
int64 = _np.dtype(_np.int64)
bool_ = _np.dtype(_np.bool_)

from . import kernels, nn, optim, testing  # noqa: E402,F401  (after the names above: they import them)
from . import memory  # noqa: E402
memory._install_default()


def __getattr__(name):
    """``pyfastdl.models`` and ``pyfastdl.utils`` on first use (``pyfastdl.models.resnet18()`` after a
    plain ``import pyfastdl``), so that importing the package does not import every model family."""
    if name in ("models", "utils"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
