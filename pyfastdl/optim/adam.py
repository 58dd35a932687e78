"""Adam (Kingma & Ba, 2015), optionally AMSGrad (Reddi et al., 2018), and AdamW (Loshchilov &
Hutter, 2019: weight decay decoupled from the gradient).

Per parameter at step t, in torch's order (g the gradient, m and v the moment estimates):
    AdamW: p = p * (1 - lr * weight_decay)       Adam: g = g + weight_decay * p
    m = m + (1 - beta1) * (g - m)                 (torch's lerp)
    v = beta2 * v + (1 - beta2) * g * g
    vmax = max(vmax, v)   (amsgrad; used in place of v below)
    denom = sqrt(v) / sqrt(1 - beta2^t) + eps
    p = p - lr / (1 - beta1^t) * m / denom
Memory: two (three with amsgrad) arrays the size of the parameter.
"""

from __future__ import annotations

import math

from .. import backend
from .optimizer import Optimizer

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    _decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        betas = tuple(betas) if isinstance(betas, list) else betas  # checked by Optimizer._check_group
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def _update(self, p, grad, group, state):
        xp = backend.get_array_module(grad)
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        step = state["step"]
        if wd != 0:
            if self._decoupled_weight_decay:
                p.data *= 1 - lr * wd
            else:
                grad = grad + wd * p.data
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg += (1 - beta1) * (grad - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * (grad * grad)
        second = exp_avg_sq
        if group["amsgrad"]:
            second = state["max_exp_avg_sq"]
            xp.maximum(second, exp_avg_sq, out=second)
        step_size = lr / (1 - beta1**step)
        denom = xp.sqrt(second) / math.sqrt(1 - beta2**step)
        denom += group["eps"]
        p.data -= step_size * exp_avg / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (default 1e-2, as torch)."""

    _decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
