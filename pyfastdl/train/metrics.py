"""Metrics accumulated over an epoch: ``reset()``, ``update(output, target)`` per batch, ``compute()``.

``output`` and ``target`` are numpy arrays (the loop copies them off the device); ``state_dict()``
and ``load_state_dict()`` carry a half-finished epoch through a checkpoint. Classification
has :class:`Accuracy`; a task with other needs (mean IoU from a confusion matrix, detection mAP
from all predictions) adds a Metric subclass with the same three methods.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Metric", "Mean", "StepLosses"]


class Metric:
    """Base class: accumulate per batch, report one number per epoch."""

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, output: np.ndarray, target: np.ndarray) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError

    def state(self) -> dict:
        """What the metric has accumulated: the attributes ``reset()`` assigns, by name (found by
        running ``reset`` on a stand-in that only records the names)."""
        names = []

        class Recorder(type(self)):
            def __setattr__(self, name, value):
                names.append(name)

        probe = object.__new__(Recorder)
        probe.__dict__.update(vars(self))
        probe.reset()
        return {name: getattr(self, name) for name in names}

    def merge(self, state: dict) -> None:
        """Add another shard's :meth:`state` (from another rank) into this metric: numbers and arrays
        are summed, lists concatenated, None taken over. Override where that is not the rule."""
        for name, theirs in state.items():
            mine = getattr(self, name)
            if mine is None:
                setattr(self, name, theirs)
            elif theirs is not None:
                setattr(self, name, mine + theirs)

    def state_dict(self) -> dict:
        """What the metric has accumulated (its attributes other than functions), for resuming an
        epoch from a checkpoint: numbers, strings, arrays and lists/tuples/dicts of them."""
        return {k: v for k, v in vars(self).items() if not callable(v)}

    def load_state_dict(self, state: dict) -> None:
        vars(self).update(state)


class Mean(Metric):
    """Weighted mean of per-batch values (the loop's running loss): ``update(value, count)``."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, value, count) -> None:
        self.total += float(value) * int(count)
        self.count += int(count)

    def compute(self) -> float:
        return self.total / self.count if self.count else float("nan")


class StepLosses(Metric):
    """The loss of every training step of the epoch, in order, for the per-step curve:
    ``update(value)``. Each rank keeps its own (data parallel: the curve is rank 0's share), so
    nothing is merged over ranks; a resumed epoch carries on the list from its checkpoint."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.values = []

    def update(self, value) -> None:
        self.values.append(float(value))

    def compute(self) -> list:
        return list(self.values)

    def state(self) -> dict:
        return {}
