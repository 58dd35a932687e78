"""Data parallel training (torch.nn.parallel's names): :class:`DistributedDataParallel`."""

from .distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
