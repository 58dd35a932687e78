"""Flatten: merge dimensions start_dim..end_dim into one."""

from __future__ import annotations

from ...tensor import Tensor
from . import _factory
from .module import Module

__all__ = ["Flatten"]


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W) with the defaults start_dim=1, end_dim=-1."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = _factory.size(self, "start_dim", start_dim, minimum=None)
        self.end_dim = _factory.size(self, "end_dim", end_dim, minimum=None)

    def forward(self, input):  # noqa: A002
        if not isinstance(input, Tensor):
            raise TypeError(f"Flatten: input must be a Tensor, got {type(input).__name__}")
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
