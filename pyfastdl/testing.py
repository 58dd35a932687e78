"""Testing helpers: the finite-difference gradient check every backward is verified with."""

from __future__ import annotations

import numpy as np

from . import backend
from .autograd import no_grad
from .tensor import Tensor


def _scalar_objective(out, weights):
    """sum_i <out_i, w_i> as a Python float: one random projection of all outputs."""
    total = 0.0
    for o, w in zip(out, weights):
        total += float((o.data.astype(np.float64) * w).sum())
    return total


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Compare autograd's gradients of ``fn(*inputs)`` with central differences in float64.

    ``inputs`` is a sequence whose Tensors with ``requires_grad=True`` are checked (they must be
    float64); other items are passed through. ``fn`` returns a Tensor or a tuple of Tensors. The
    outputs are projected on fixed random weights so every output element contributes. Returns
    True, or raises AssertionError naming the input, the element and both values."""
    inputs = tuple(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise ValueError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64")

    def outputs():
        out = fn(*inputs)
        return out if isinstance(out, tuple) else (out,)

    out = [o for o in outputs() if isinstance(o, Tensor) and o.dtype.kind == "f"]
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(o.shape) for o in out]

    # analytic: backward of the projection
    for i in checked:
        inputs[i].grad = None
    projected = None
    for o, w in zip(out, weights):
        if not o.requires_grad:
            continue
        term = (o * Tensor(backend.get_array_module(o.data).asarray(w))).sum()
        projected = term if projected is None else projected + term
    if projected is None:
        raise AssertionError("gradcheck: no output depends on the inputs that require grad")
    projected.backward()

    for i in checked:
        t = inputs[i]
        analytic = np.zeros(t.shape) if t.grad is None else np.asarray(t.grad.numpy_view(), dtype=np.float64)
        numeric = np.zeros(t.shape)
        flat = t.data.reshape(-1)  # a view: perturb in place, restore after
        with no_grad():
            for j in range(flat.size):
                orig = flat[j].item()
                flat[j] = orig + eps
                plus = _scalar_objective(outputs(), weights)
                flat[j] = orig - eps
                minus = _scalar_objective(outputs(), weights)
                flat[j] = orig
                numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        err = np.abs(analytic - numeric)
        bad = err > atol + rtol * np.abs(numeric)
        if bad.any() or not np.isfinite(analytic).all():
            j = int(np.argmax(np.where(np.isfinite(err), err, np.inf)))
            idx = np.unravel_index(j, t.shape) if t.shape else ()
            raise AssertionError(
                f"gradcheck: gradient of input {i} (shape {t.shape}) is wrong at {tuple(int(v) for v in idx)}: "
                f"analytic {analytic.reshape(-1)[j]:.8g}, numeric {numeric.reshape(-1)[j]:.8g} "
                f"({int(bad.sum())} of {t.numel()} elements off; max abs error {float(np.nanmax(err)):.3g})"
            )
    return True
