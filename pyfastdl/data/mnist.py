"""MNIST and Fashion-MNIST from the standard IDX files in a directory the user names.

Nothing is downloaded: put the four files (gzipped or not) in one directory and pass it as
``root``. A missing file is an error listing what to put where.

IDX format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number -- two zero bytes, a type
code, the number of dimensions -- then one big-endian uint32 per dimension, then the data in
row-major order, big-endian.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

from .transforms import lecun_scale, pad_to

__all__ = ["read_idx", "parse_idx", "load_mnist", "MNIST_FILES", "MNIST_SOURCES"]

# IDX type code -> numpy dtype (big-endian where it matters)
_IDX_TYPES = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}

#: The four files of a split pair, the same names for MNIST and Fashion-MNIST.
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: Where users can fetch the files themselves (shown in the error for a missing directory).
MNIST_SOURCES = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/ (mirror of yann.lecun.com/exdb/mnist)",
    "fashion-mnist": "https://github.com/zalandoresearch/fashion-mnist (data/fashion/)",
}


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of one IDX file into an ndarray (native byte order). ``name`` is used in
    errors: wrong magic number, unknown type code, or a file shorter/longer than its header says."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{name}: not an IDX file (magic number must start with two zero bytes, "
                         f"got {data[:4].hex() or 'an empty file'})")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_TYPES:
        raise ValueError(f"{name}: unknown IDX type code 0x{type_code:02x} "
                         f"(known: {', '.join(f'0x{c:02x}' for c in _IDX_TYPES)})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header ({len(data)} bytes, {ndim} dimensions need {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize  # Python integers: sizes cannot wrap
    found = len(data) - header
    if found != expected:
        problem = "truncated" if found < expected else "longer than its header says"
        raise ValueError(f"{name}: IDX file {problem}: shape {shape} of {dtype.name} needs "
                         f"{expected} data bytes, found {found}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file, gzipped (``.gz``) or not."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip raises these for corrupt or cut-off archives
        raise ValueError(f"{path}: cannot read: {e}") from e
    return parse_idx(data, path)


def _find(root: str, stem: str) -> str | None:
    for name in (stem, stem + ".gz"):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return path
    return None


def load_mnist(root: str | None, kind: str = "mnist") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load MNIST or Fashion-MNIST (``kind``) from the IDX files in ``root``.

    Returns ``{"train": (x, y), "test": (x, y)}``: x float32 (N, 1, 32, 32) -- the 28x28 images
    centred in 32x32 and scaled to the paper's [-0.1, 1.175] -- and y int64 (N,).
    """
    if kind not in MNIST_SOURCES:
        raise ValueError(f"load_mnist: kind must be one of {sorted(MNIST_SOURCES)}, got {kind!r}")
    stems = [stem for pair in MNIST_FILES.values() for stem in pair]
    if root is None or not os.path.isdir(root):
        raise FileNotFoundError(
            f"{kind}: the data directory {root!r} does not exist. Nothing is downloaded at run time: "
            f"create a directory holding the four IDX files {', '.join(stems)} (each may end in .gz), "
            f"from {MNIST_SOURCES[kind]}, and pass it with --data-dir.")
    missing = [stem for stem in stems if _find(root, stem) is None]
    if missing:
        raise FileNotFoundError(
            f"{kind}: missing in {root}: {', '.join(missing)} (each may end in .gz). Put the four IDX files "
            f"from {MNIST_SOURCES[kind]} in that directory; nothing is downloaded at run time.")
    out = {}
    for split, (image_stem, label_stem) in MNIST_FILES.items():
        images = read_idx(_find(root, image_stem))
        labels = read_idx(_find(root, label_stem))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{kind} {split}: expected images (N, H, W) and labels (N,), got "
                             f"{images.shape} and {labels.shape}")
        if images.dtype != np.uint8 or labels.dtype.kind not in "iu":  # (pixels 0..255, as /255 below reads them)
            raise ValueError(f"{kind} {split}: expected unsigned-byte images and integer labels in "
                             f"{_find(root, image_stem)} and {_find(root, label_stem)}, got {images.dtype} and "
                             f"{labels.dtype}")
        if labels.size and not 0 <= labels.min() <= labels.max() < 10:
            raise ValueError(f"{kind} {split}: {_find(root, label_stem)} holds labels in [{labels.min()}, "
                             f"{labels.max()}]; the ten classes are 0..9")
        x = lecun_scale(pad_to(images.astype(np.float32) / 255.0, (32, 32)))[:, None]
        out[split] = (x, labels.astype(np.int64))
    return out
