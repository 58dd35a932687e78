"""Embedding: a lookup table of num_embeddings vectors."""

from __future__ import annotations

from .. import functional as F
from .. import init
from . import _factory
from .module import Module

__all__ = ["Embedding"]


class Embedding(Module):
    """Integer indices (*) -> vectors (*, embedding_dim). ``weight`` (num_embeddings, embedding_dim)
    starts N(0, 1); the row ``padding_idx`` (if given) starts at zero and is never updated."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, device=None, dtype=None):
        super().__init__()
        num_embeddings = _factory.size(self, "num_embeddings", num_embeddings)
        embedding_dim = _factory.size(self, "embedding_dim", embedding_dim)
        if padding_idx is not None:
            padding_idx = _factory.size(self, "padding_idx", padding_idx, minimum=None)
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} must be within num_embeddings "
                                 f"({num_embeddings})")
            padding_idx %= num_embeddings
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.weight = _factory.parameter(self, (num_embeddings, embedding_dim), device, dtype)
        self.reset_parameters()

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, input):  # noqa: A002
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")
