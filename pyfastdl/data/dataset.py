"""Datasets: anything with ``__len__`` and ``__getitem__`` returning one sample.

A sample is an ndarray, a number, or a tuple/dict of them (``(image, label)`` for classification);
:class:`pyfastdl.data.DataLoader` stacks samples into batches.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["Dataset", "ArrayDataset", "Subset", "random_split_indices"]


class Dataset:
    """Base class (torch.utils.data.Dataset's protocol): ``len(ds)`` and ``ds[i]`` -> one sample."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index):
        raise NotImplementedError


def sample_index(owner: str, index, n: int) -> int:
    """``index`` as a sample number in [0, n) (negative counts from the end), or an error naming ``owner``."""
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise TypeError(f"{owner}: index must be an integer, got {type(index).__name__} {index!r}")
    if not -n <= index < n:
        raise IndexError(f"{owner}: index {index} is out of range for {n} samples")
    return int(index) % n


class ArrayDataset(Dataset):
    """Samples are the rows of equally long arrays: ``ds[i] == (arrays[0][i], arrays[1][i], ...)``.

    ``transform``, if given, is applied to the first array's row (the input), e.g. an augmentation
    such as :class:`pyfastdl.tasks.classification.RandomShift`; the other arrays (targets) are returned as they are.
    """

    def __init__(self, *arrays, transform=None):
        if not arrays:
            raise ValueError("ArrayDataset: give at least one array")
        for i, a in enumerate(arrays):
            if not (hasattr(a, "__len__") and hasattr(a, "__getitem__")) or isinstance(a, (str, bytes, dict)):
                raise TypeError(f"ArrayDataset: arrays[{i}] must be an array (or a sequence), got {type(a).__name__}")
        n = len(arrays[0])
        lengths = [len(a) for a in arrays]
        if any(length != n for length in lengths):
            raise ValueError(f"ArrayDataset: arrays must have the same length, got lengths {lengths}")
        self.arrays = arrays
        self.transform = transform

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index):
        index = sample_index("ArrayDataset", index, len(self))
        first = self.arrays[0][index]
        if self.transform is not None:
            first = self.transform(first)
        return (first,) + tuple(a[index] for a in self.arrays[1:])


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices)
        if self.indices.ndim != 1 or (self.indices.size and self.indices.dtype.kind not in "iu"):
            raise TypeError(f"Subset: indices must be a 1-D sequence of integers, got {self.indices.dtype} of shape "
                            f"{self.indices.shape}")
        self.indices = self.indices.astype(np.int64)
        n = len(dataset)
        if self.indices.size and not (-n <= self.indices.min() and self.indices.max() < n):
            raise IndexError(f"Subset: indices span [{self.indices.min()}, {self.indices.max()}], out of range for a "
                             f"dataset of {n} samples")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[sample_index("Subset", index, len(self))])]


def random_split_indices(n: int, fractions, seed: int) -> list[np.ndarray]:
    """Split ``range(n)`` at random (fixed by ``seed``) into parts of the given fractions.

    The fractions must sum to 1; the last part takes the rounding remainder. Returns the index
    arrays, each sorted so that a split's order does not depend on the permutation.
    """
    fractions = list(fractions)
    if not all(isinstance(f, numbers.Real) and f >= 0 for f in fractions) or not abs(sum(fractions) - 1.0) <= 1e-9:
        raise ValueError(f"random_split_indices: fractions must be >= 0 and sum to 1, got {fractions}")
    perm = np.random.default_rng(seed).permutation(n)
    sizes = [int(round(f * n)) for f in fractions[:-1]]
    bounds = np.cumsum([0] + sizes + [n - sum(sizes)])
    return [np.sort(perm[bounds[i]:bounds[i + 1]]) for i in range(len(fractions))]
