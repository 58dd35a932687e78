"""The recipe the image classifiers share (NIN, ResNet): data, augmentation and input loading.

Datasets (``--dataset``):
  * ``shapes`` (default, generated, nothing to download): :func:`pyfastdl.data.shapes.make_classification`,
    one coloured shape of 6 kinds per image on a textured background, ``--image-size`` pixels square;
    ``--train-size`` training, ``--val-size`` (1,000) validation and ``--test-size`` (2,000) test
    images, each split its own scenes.
  * ``cifar10``: the binary CIFAR-10 files in ``--data-dir`` (:func:`pyfastdl.data.cifar.load_cifar10`);
    5,000 of the 50,000 training images held out for validation; augmentation by random
    translations of up to 4 pixels (zero fill, the paper's pad-4-and-crop) and horizontal flips.
Inputs are scaled as (x - 0.5) / 0.25 per channel (close to CIFAR-10's per-channel statistics).
"""

from __future__ import annotations

import argparse

import numpy as np

from ..train.options import add_option
from ..train.recipe import ClassificationRecipe

__all__ = ["ImageClassificationRecipe", "RandomFlipShift", "normalize", "denormalize"]

#: Seed of the fixed CIFAR-10 train/validation split (it never changes with --seed).
VAL_SPLIT_SEED = 1


def normalize(images01: np.ndarray) -> np.ndarray:
    """[0, 1] images -> (x - 0.5) / 0.25, float32."""
    return ((images01 - 0.5) * 4.0).astype(np.float32)


def denormalize(images: np.ndarray) -> np.ndarray:
    """The inverse of :func:`normalize`: back to [0, 1] (for pictures)."""
    return np.clip(np.asarray(images) * 0.25 + 0.5, 0.0, 1.0)


class RandomFlipShift:
    """Augmentation for one image (C, H, W): a horizontal flip with probability 1/2, then a random
    translation of up to ``max_shift`` pixels (zero fill) -- the paper's CIFAR "pad 4 and crop"."""

    def __init__(self, max_shift: int, seed: int | None = None):
        from ..data import RandomShift

        self.generator = np.random.default_rng(seed)
        self.shift = RandomShift(max_shift, fill=0.0, seed=self.generator.integers(2**31))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.generator.random() < 0.5:
            image = image[..., ::-1]
        return self.shift(image)


class ImageClassificationRecipe(ClassificationRecipe):
    """Base recipe for a classifier of (N, 3, H, W) images; subclasses set ``name``, ``description``,
    ``default_size`` and implement ``default_hparams`` and ``build_model``."""

    #: default --image-size for the shapes dataset (CIFAR-10 is always 32)
    default_size = 32
    #: default --train-size for the shapes dataset
    default_train_size = 10_000

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dataset", choices=["shapes", "cifar10"], default="shapes",
                            help="shapes: generated coloured shapes (default); cifar10: the binary files in --data-dir")
        parser.add_argument("--data-dir", help="directory holding cifar-10-batches-bin (cifar10)")
        add_option(parser, "image_size", self.default_size, "shapes: image side in pixels (cifar10: 32)")
        add_option(parser, "train_size", self.default_train_size, "shapes: training images")
        add_option(parser, "val_size", 1000, "shapes: validation images")
        add_option(parser, "test_size", 2000, "shapes: test images")

    def num_classes(self, args: argparse.Namespace) -> int:
        return len(self.class_names(args))

    def class_names(self, args: argparse.Namespace) -> tuple:
        from ..data import cifar, shapes

        return cifar.CLASSES if args.dataset == "cifar10" else shapes.SHAPES

    def input_size(self, args: argparse.Namespace) -> int:
        return 32 if args.dataset == "cifar10" else args.image_size

    def datasets(self, args: argparse.Namespace) -> dict:
        from ..data import ArrayDataset, Subset, random_split_indices

        if args.dataset == "cifar10":
            from ..data.cifar import load_cifar10

            x, y = load_cifar10(args.data_dir, "train")
            train_idx, val_idx = random_split_indices(len(y), [0.9, 0.1], VAL_SPLIT_SEED)
            x = normalize(x)
            return {
                "train": Subset(ArrayDataset(x, y, transform=RandomFlipShift(4, seed=args.seed)), train_idx),
                "val": Subset(ArrayDataset(x, y), val_idx),
                "test": ArrayDataset(*self._normalized(load_cifar10(args.data_dir, "test"))),
            }
        from ..data.shapes import make_classification

        sizes = {split: min(n, args.limit) if args.limit else n
                 for split, n in (("train", args.train_size), ("val", args.val_size), ("test", args.test_size))}
        return {split: ArrayDataset(*self._normalized(make_classification(n, args.image_size, split))) if n else None
                for split, n in sizes.items()}

    @staticmethod
    def _normalized(data):
        x, y = data
        return normalize(x), y

    def load_inputs(self, paths: list[str], args: argparse.Namespace) -> np.ndarray:
        """Colour images (PNG/JPEG, or .npy arrays (3, H, W) / (H, W, 3) in [0, 1]), any size ->
        (N, 3, S, S) inputs resized to the training size and scaled like the training data."""
        from ..vision.segmentation import read_image

        size = self.input_size(args)
        return np.stack([normalize(read_image(p, (size, size))) for p in paths])
