"""CIFAR-10 from its binary distribution (``cifar-10-batches-bin``), read with numpy alone.

The binary format is a sequence of 3,073-byte records: one label byte (0-9), then 1,024 red,
1,024 green and 1,024 blue bytes of a 32x32 image in row-major order. (The Python distribution is
pickled and is deliberately not supported: pyfastdl never unpickles.)
"""

from __future__ import annotations

import os

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
RECORD = 1 + 3 * 32 * 32


def read_cifar_batch(path):
    """One .bin file -> (images (n, 3, 32, 32) uint8, labels (n,) int64)."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD:
        raise ValueError(f"CIFAR-10: {path!r} holds {raw.size} bytes, not a whole number of {RECORD}-byte "
                         "records (truncated, or not a cifar-10-batches-bin file)")
    records = raw.reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CLASSES):
        raise ValueError(f"CIFAR-10: {path!r} has label {labels.max()}; labels are 0..9")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def load_cifar10(root, split="train"):
    """CIFAR-10 images (n, 3, 32, 32) float32 in [0, 1] and labels (n,) from ``root``, the folder
    ``cifar-10-batches-bin`` (or a folder that contains it). ``split`` is "train" or "test"."""
    if split not in ("train", "test"):
        raise ValueError(f"load_cifar10: split must be 'train' or 'test', got {split!r}")
    root = os.fspath(root)
    if os.path.isdir(os.path.join(root, "cifar-10-batches-bin")):
        root = os.path.join(root, "cifar-10-batches-bin")
    names = TRAIN_FILES if split == "train" else TEST_FILES
    missing = [n for n in names if not os.path.isfile(os.path.join(root, n))]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10: missing {', '.join(missing)} in {root!r}. Put the binary version's files "
            f"({', '.join(TRAIN_FILES + TEST_FILES)}, from cifar-10-binary.tar.gz) in that folder.")
    parts = [read_cifar_batch(os.path.join(root, n)) for n in names]
    images = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    return images, np.concatenate([p[1] for p in parts])
