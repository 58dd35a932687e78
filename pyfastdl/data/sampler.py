"""Samplers: the order in which a DataLoader visits a dataset's indices.

:class:`DistributedSampler` gives each rank of a data parallel job its own shard (torch's
semantics): every epoch one permutation of the indices, drawn from ``seed + epoch`` so that all
ranks draw the same one, padded by repeating its start until it divides evenly (or cut, with
``drop_last``), and rank r takes positions r, r + N, r + 2N, ... The shards are disjoint apart from
the padding, cover the dataset, and have equal lengths, so every rank runs the same number of steps.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DistributedSampler"]


class DistributedSampler:
    """Iterate over rank ``rank``'s shard of ``range(len(dataset))`` out of ``num_replicas``
    (default: the process group's rank and world size). ``shuffle``: a new order every epoch
    (call :meth:`set_epoch` before each one); ``seed``: must be the same on every rank."""

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False):
        from .. import distributed

        num_replicas = distributed.get_world_size() if num_replicas is None else num_replicas
        rank = distributed.get_rank() if rank is None else rank
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank} for num_replicas {num_replicas} "
                             "(rank must be in [0, num_replicas - 1])")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.seed, self.drop_last, self.epoch = shuffle, seed, drop_last, 0
        n = len(dataset)
        if drop_last and n % num_replicas:
            self.num_samples = n // num_replicas
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Use the order of epoch ``epoch`` (all ranks must set the same epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def indices(self) -> np.ndarray:
        n = len(self.dataset)
        order = np.random.default_rng(self.seed + self.epoch).permutation(n) if self.shuffle else np.arange(n)
        if self.total_size > n:
            order = np.resize(order, self.total_size)  # repeats the start of the order as padding
        return order[:self.total_size][self.rank::self.num_replicas]

    def __iter__(self):
        return iter(self.indices().tolist())
