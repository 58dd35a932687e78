"""Datasets, a DataLoader and the datasets the models train on (nothing downloaded at run time).

Built in: ``load_digits`` (scikit-learn's bundled digits at 32x32). From files the user provides:
``load_mnist(root, "mnist" | "fashion-mnist")`` (IDX files).
"""

from .dataset import ArrayDataset, Dataset, Subset, random_split_indices
from .digits import load_digits
from .loader import DataLoader, default_collate
from .mnist import load_mnist, parse_idx, read_idx
from .sampler import DistributedSampler
from .transforms import LECUN_BACKGROUND, lecun_scale, load_npy, pad_to, read_image, resize_bilinear

__all__ = [
    "ArrayDataset", "Dataset", "Subset", "random_split_indices", "load_digits", "DataLoader",
    "default_collate", "DistributedSampler", "load_mnist", "parse_idx", "read_idx", "LECUN_BACKGROUND", "lecun_scale",
    "load_npy", "pad_to", "read_image", "resize_bilinear",
]
