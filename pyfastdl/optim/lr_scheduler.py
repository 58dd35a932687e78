"""Learning-rate schedules with torch.optim.lr_scheduler's names and update rules.

A scheduler sets ``group["lr"]`` of its optimizer's groups; call ``scheduler.step()`` once per
epoch (or per iteration) after ``optimizer.step()``. Creating one applies the epoch-0 rate.
Where torch updates the rate recursively (StepLR, CosineAnnealingLR, LinearLR), so does this
code, so the rates agree with torch's to the last bit.
"""

from __future__ import annotations

import math
import numbers

from .optimizer import Optimizer, check_number

__all__ = ["LRScheduler", "StepLR", "CosineAnnealingLR", "LambdaLR", "LinearLR", "InverseSqrtLR"]


def _check_optimizer(owner: str, optimizer) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{owner}: optimizer must be an Optimizer, got {type(optimizer).__name__}")


def _check_steps(owner: str, name: str, value) -> None:
    """A count of steps (or a width) must be a whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: {name} must be a whole number >= 1, got {value!r}")


class LRScheduler:
    """Base class: subclasses define ``get_lr()`` for ``self.last_epoch`` from the current rates."""

    def __init__(self, optimizer, last_epoch=-1):
        owner = type(self).__name__
        _check_optimizer(owner, optimizer)
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, numbers.Integral) or last_epoch < -1:
            raise ValueError(f"{owner}: last_epoch must be a whole number >= -1 (-1: a new schedule), got "
                             f"{last_epoch!r}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise ValueError(f"{owner}: last_epoch={last_epoch} resumes a schedule, but param_groups[{i}] "
                                     "has no 'initial_lr' (load the optimizer's state_dict first)")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self.step()

    def get_lr(self):
        raise NotImplementedError

    def get_last_lr(self):
        """The rates the last step() set, one per parameter group."""
        return self._last_lr

    def step(self):
        self._step_count += 1
        self.last_epoch += 1
        lrs = self.get_lr()
        for lr in lrs:  # a schedule must not hand the optimizer a rate it would refuse (NaN, inf, < 0)
            check_number(f"{type(self).__name__} at epoch {self.last_epoch}", "lr", lr)
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """Everything but the optimizer (and functions, which cannot be saved)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer" and not callable(v)
                and k != "lr_lambdas"}

    def load_state_dict(self, state_dict: dict) -> None:
        own = self.state_dict()
        if not isinstance(state_dict, dict) or not set(state_dict) <= set(own):
            raise ValueError(f"{type(self).__name__}.load_state_dict: state_dict must be a {type(self).__name__}'s "
                             f"state_dict() (keys among {sorted(own)}), got {type(state_dict).__name__}"
                             + (f" with keys {sorted(map(str, state_dict))}" if isinstance(state_dict, dict) else ""))
        self.__dict__.update(state_dict)


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        _check_steps("StepLR", "step_size", step_size)
        check_number("StepLR", "gamma", gamma)
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lrs
        return [lr * self.gamma for lr in lrs]


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2 (SGDR without restarts),
    computed recursively from the previous rate as torch does."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):  # noqa: N803 (torch's name)
        _check_steps("CosineAnnealingLR", "T_max", T_max)
        check_number("CosineAnnealingLR", "eta_min", eta_min)
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups, t, T = self.optimizer.param_groups, self.last_epoch, self.T_max  # noqa: N806
        if t == 0:
            return [group["lr"] for group in groups]
        if self._step_count == 1 and t > 0:
            return [self.eta_min + (base - self.eta_min) * (1 + math.cos(t * math.pi / T)) / 2
                    for base in self.base_lrs]
        if (t - 1 - T) % (2 * T) == 0:
            return [group["lr"] + (base - self.eta_min) * (1 - math.cos(math.pi / T)) / 2
                    for base, group in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) * (group["lr"] - self.eta_min)
                + self.eta_min for group in groups]


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(epoch); ``lr_lambda`` is one function or one per parameter group."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        _check_optimizer("LambdaLR", optimizer)
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(f"LambdaLR: expected {n} lr_lambdas, got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        for fn in self.lr_lambdas:
            if not callable(fn):
                raise TypeError(f"LambdaLR: lr_lambda must be a function of the epoch (or one per parameter group), "
                                f"got {type(fn).__name__}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * fn(self.last_epoch) for fn, base in zip(self.lr_lambdas, self.base_lrs)]


class LinearLR(LRScheduler):
    """Linear warm-up (or decay): the factor on base_lr goes from start_factor to end_factor over
    ``total_iters`` steps, then stays at end_factor."""

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1):
        if (not all(isinstance(f, numbers.Real) for f in (start_factor, end_factor))
                or not 0 < start_factor <= 1 or not 0 <= end_factor <= 1):
            raise ValueError(f"LinearLR: start_factor must be in (0, 1] and end_factor in [0, 1], got "
                             f"start_factor={start_factor!r}, end_factor={end_factor!r}")
        _check_steps("LinearLR", "total_iters", total_iters)
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in lrs]
        if self.last_epoch > self.total_iters:
            return lrs
        step = self.end_factor - self.start_factor
        factor = 1.0 + step / (self.total_iters * self.start_factor + (self.last_epoch - 1) * step)
        return [lr * factor for lr in lrs]


class InverseSqrtLR(LRScheduler):
    """The Transformer's warm-up schedule (Vaswani et al. 2017, section 5.3): the rate rises
    linearly for ``warmup_steps`` steps, then decays with the inverse square root of the step.

    With ``d_model`` given it is the paper's formula, scaled by the optimizer's lr (lr=1 gives the
    paper's rates)::

        lr(step) = base_lr * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5)

    Without ``d_model`` it is normalised so that the peak, reached at ``step == warmup_steps``, is
    the optimizer's lr (fairseq's ``inverse_sqrt``)::

        lr(step) = base_lr * min(step / warmup_steps, sqrt(warmup_steps / step))

    ``step`` counts from 1 (the first ``scheduler.step()`` after the first update gives step 2);
    step it once per batch.
    """

    def __init__(self, optimizer, warmup_steps, d_model=None, last_epoch=-1):
        _check_steps("InverseSqrtLR", "warmup_steps", warmup_steps)
        if d_model is not None:
            _check_steps("InverseSqrtLR", "d_model", d_model)
        self.warmup_steps = warmup_steps
        self.d_model = d_model
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The multiplier of the base rate at ``step`` (>= 1)."""
        w = self.warmup_steps
        if self.d_model is None:
            return min(step / w, math.sqrt(w / step))
        return self.d_model ** -0.5 * min(step ** -0.5, step * w ** -1.5)

    def get_lr(self):
        return [base * self.factor(self.last_epoch + 1) for base in self.base_lrs]
