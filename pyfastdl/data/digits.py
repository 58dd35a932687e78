"""scikit-learn's bundled 8x8 handwritten digits, laid out like MNIST in LeNet's 32x32 input.

The 1,797 images (UCI "optical recognition of handwritten digits": 32x32 bitmaps counted in 4x4
blocks, intensities 0..16) ship inside scikit-learn, so nothing is downloaded. Each image is scaled
to [0, 1], resampled bilinearly to 28x28 (MNIST's frame), centred in 32x32 as the paper centres
MNIST, and mapped to the paper's input range by :func:`lecun_scale`. The train/test split is fixed:
a seeded permutation puts 20% (359 images) in the test set.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from .dataset import random_split_indices
from .transforms import lecun_scale, pad_to, resize_bilinear

__all__ = ["load_digits", "DIGITS_SPLIT_SEED"]

#: Seed of the fixed train/test permutation (changing it changes the benchmark).
DIGITS_SPLIT_SEED = 0


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) in 0..16, labels (1797,)). Reads the CSV scikit-learn ships directly
    when it is where scikit-learn keeps it: importing sklearn.datasets takes seconds."""
    spec = importlib.util.find_spec("sklearn")
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz") if spec else ""
    if os.path.isfile(path):
        table = np.loadtxt(path, delimiter=",")
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    return bunch.images, bunch.target


def load_digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Returns ``{"train": (x, y), "test": (x, y)}``: x float32 (N, 1, 32, 32), y int64 (N,) in 0..9;
    1,438 training and 359 test images."""
    images, labels = _sklearn_digits()
    images01 = np.clip(resize_bilinear(images / 16.0, (28, 28)), 0.0, 1.0)
    x = lecun_scale(pad_to(images01, (32, 32)))[:, None]
    y = labels.astype(np.int64)
    train, test = random_split_indices(len(y), [0.8, 0.2], DIGITS_SPLIT_SEED)
    return {"train": (x[train], y[train]), "test": (x[test], y[test])}
