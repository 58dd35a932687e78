"""Raw fused optimizer updates on numpy arrays: SGD and Adam/AdamW over a list of parameters, in
place, no autograd (CPU; on the GPU pyfastdl.optim keeps its cupy array code).

One call updates every parameter of the list (all of one dtype, float32 or float64) in one pass
over each parameter's arrays, with torch's formulas (see pyfastdl/optim). The hyper-parameters are
validated in C++ (``_C.SgdArgs``, ``_C.AdamArgs``). ``variant=`` is keyword-only as in every
family (:mod:`._dispatch`); this family has the "fast" variant only. The arrays are updated in
place, so they must be C-contiguous and writeable (the binding checks).
"""

from __future__ import annotations

from .. import backend
from .._core import _C
from . import _dispatch

__all__ = ["sgd_step", "adam_step"]


def _launch(name, variant, args, params, *lists):
    """The launch of a list kernel: the device is that of the first parameter."""
    if not params:
        raise ValueError(f"{name}: params is empty")
    for i, p in enumerate(params):
        if not backend.is_array(p):
            raise TypeError(f"{name}: params[{i}] must be a numpy or cupy array, got {type(p).__name__}")
    grads = [_dispatch.kernel_input(g, name, f"grads[{i}]") for i, g in enumerate(lists[0])]
    backend.launch(_dispatch.kernel_name(name, variant), backend.device_of(params[0]), args, params, grads, *lists[1:])


def _numbers(op, **values):
    """The hyper-parameters as floats, in order (a TypeError naming a non-number)."""
    return [_dispatch.float_arg(op, name, v) for name, v in values.items()]


def sgd_step(params, grads, momentum_buffers, new_buffers, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, variant="fast"):
    """SGD update of ``params`` in place. momentum_buffers: one array per parameter (None without
    momentum); new_buffers[i] True means buffer i is new and becomes the (decayed) gradient."""
    a = _C.SgdArgs(*_numbers("sgd_step", lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay),
                   bool(nesterov))
    _launch("sgd_step", variant, a, list(params), list(grads),
            None if momentum_buffers is None else list(momentum_buffers), [bool(b) for b in new_buffers])


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, betas=(0.9, 0.999), eps=1e-8,
              weight_decay=0.0, decoupled=False, amsgrad=False, variant="fast"):
    """Adam (``decoupled``: AdamW) update of ``params`` and their moments in place; steps[i] is
    parameter i's step count including this update; max_exp_avg_sqs only with ``amsgrad``."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"adam_step: betas must be a pair of numbers, got {betas!r}")
    a = _C.AdamArgs(*_numbers("adam_step", lr=lr, beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=weight_decay),
                    bool(decoupled), bool(amsgrad))
    _launch("adam_step", variant, a, list(params), list(grads), list(exp_avgs), list(exp_avg_sqs),
            None if max_exp_avg_sqs is None else list(max_exp_avg_sqs), [int(s) for s in steps])
