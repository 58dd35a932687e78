"""DataLoader: a dataset's samples in batches, in order or in a seeded random order.

Loading runs in the calling process (no workers): the small datasets here fit in memory and the
per-sample work is a slice and perhaps a shift, so the training step dominates.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["DataLoader", "default_collate"]


def default_collate(samples):
    """Stack a list of samples into a batch, keeping their structure.

    ndarrays -> one array with a new leading batch axis; Python or numpy numbers -> a 1-D array;
    tuples/lists -> a tuple of collated fields; dicts -> a dict of collated values; strings -> a list.
    Samples of other types, or fields of unequal shapes, raise a TypeError/ValueError saying which.
    """
    if not len(samples):
        raise ValueError("default_collate: samples (the batch) is empty")
    first = samples[0]
    if isinstance(first, np.ndarray):
        shapes = {s.shape for s in samples}
        if len(shapes) > 1:
            raise ValueError(f"default_collate: arrays in a batch must share a shape, got {sorted(shapes)}; "
                             "pass a collate_fn for ragged samples")
        return np.stack(samples)
    if isinstance(first, (numbers.Number, np.generic)):
        return np.asarray(samples)
    if isinstance(first, str):
        return list(samples)
    if isinstance(first, dict):
        return {key: default_collate([s[key] for s in samples]) for key in first}
    if isinstance(first, (tuple, list)):
        if any(len(s) != len(first) for s in samples):
            raise ValueError("default_collate: samples in a batch have different numbers of fields")
        return tuple(default_collate(list(field)) for field in zip(*samples))
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}; pass a collate_fn")


class DataLoader:
    """Iterate over ``dataset`` in batches of ``batch_size`` samples.

    Args:
        dataset: a :class:`pyfastdl.data.Dataset` (``len`` and integer indexing).
        batch_size: samples per batch; the last batch may be smaller unless ``drop_last``.
        shuffle: visit the samples in a new random order every epoch (every ``iter``). The orders
            come from a numpy Generator seeded with ``seed``, so a seed fixes every epoch's order.
        drop_last: drop the last batch when it has fewer than ``batch_size`` samples.
        seed: seed of the shuffling generator (``None``: fresh entropy).
        collate_fn: turns a list of samples into a batch (default :func:`default_collate`).
        sampler: an iterable of indices with a length (e.g. :class:`pyfastdl.data.DistributedSampler`)
            to visit instead of ``range(len(dataset))``; excludes ``shuffle``.

    Each epoch visits every sample exactly once (except the dropped tail with ``drop_last``).

    ``state_dict()`` / ``load_state_dict()`` (the names of torchdata's StatefulDataLoader) save and
    restore where the loader stands, mid-epoch included: the shuffling generator's state at the
    start of the current epoch and how many of its batches were handed out. A loader given that
    state redraws the same order and continues with the next batch.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = None, collate_fn=None, sampler=None):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"DataLoader: dataset must have len() and integer indexing (a Dataset), got "
                            f"{type(dataset).__name__}")
        if (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Real) or not math.isfinite(batch_size)
                or batch_size < 1 or batch_size != int(batch_size)):
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"DataLoader: seed must be None or a whole number >= 0, got {seed!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        self.dataset = dataset
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.collate_fn = collate_fn or default_collate
        self.generator = np.random.default_rng(seed)
        self._epoch_start = None  # the generator's state before the current epoch drew its order
        self._batches_yielded = 0  # of the current epoch
        self._resume_at = 0  # batches to skip in the next epoch (set by load_state_dict)

    def __len__(self) -> int:
        n = len(self.dataset) if self.sampler is None else len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batch_indices(self):
        """The index arrays of the next epoch's batches (draws a new order when shuffling)."""
        if self.sampler is not None:
            order = np.fromiter(self.sampler, dtype=np.int64)
        else:
            n = len(self.dataset)
            order = self.generator.permutation(n) if self.shuffle else np.arange(n)
        return [order[i:i + self.batch_size] for i in range(0, len(self) * self.batch_size, self.batch_size)]

    def __iter__(self):
        start, self._resume_at = self._resume_at, 0
        self._epoch_start = self.generator.bit_generator.state
        batches = self.batch_indices()
        self._batches_yielded = start
        for indices in batches[start:]:
            self._batches_yielded += 1
            yield self.collate_fn([self.dataset[int(i)] for i in indices])
        self._epoch_start, self._batches_yielded = None, 0

    def state_dict(self) -> dict:
        """``{"generator": <numpy bit generator state>, "batches_yielded": int}`` (JSON-friendly)."""
        in_epoch = self._epoch_start is not None
        return {"generator": self._epoch_start if in_epoch else self.generator.bit_generator.state,
                "batches_yielded": self._batches_yielded if in_epoch else 0}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`'s output: the next ``iter`` resumes that epoch."""
        if not isinstance(state, dict) or set(state) != {"generator", "batches_yielded"}:
            raise ValueError(f"DataLoader.load_state_dict: state must be a DataLoader's state_dict() (keys "
                             f"'generator' and 'batches_yielded'), got {type(state).__name__}"
                             + (f" with keys {sorted(map(str, state))}" if isinstance(state, dict) else ""))
        position = int(state["batches_yielded"])
        if not 0 <= position <= len(self):
            raise ValueError(f"DataLoader.load_state_dict: batches_yielded={position} is outside this "
                             f"loader's epoch of {len(self)} batches")
        self.generator.bit_generator.state = state["generator"]
        self._epoch_start, self._batches_yielded, self._resume_at = None, 0, position
