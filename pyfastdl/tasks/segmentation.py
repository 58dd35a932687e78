"""Semantic segmentation: the recipe base, its metrics and its augmentation.

* :class:`SegmentationRecipe` -- everything a segmentation model's recipe needs but the model: the
  datasets (synthetic shape scenes, default, 48x48, 7 classes incl. background, or PASCAL VOC 2012
  segmentation: random ``--image-size`` crops for training, padded with the ignore label; the val
  split, each image padded to 512x512 with the ignore label, as the test set), per-pixel cross
  entropy with VOC's ignore label (255) left out, the metrics, and the pictures (after training,
  ``predictions.png`` in the run directory shows test images with their predicted and true masks;
  ``pyfastdl predict`` writes the same picture for the images it is given). A model's recipe (FCN's,
  :mod:`pyfastdl.models.fcn`) adds its options, ``default_hparams`` and ``build_model``.
* :class:`MeanIoU` -- a confusion matrix accumulated over an epoch, then
  IoU_c = TP_c / (TP_c + FP_c + FN_c) per class, averaged over the classes that occur (in target or
  prediction), pixels with the ignore label skipped (FCN's Table 1 "mean IU"); :class:`PixelAccuracy`
  -- the fraction of labelled pixels classified right;
* :class:`RandomCrop`, :class:`SegmentationDataset` -- joint (image, mask) crops to a fixed size,
  padding with the ignore label, over a dataset of (image, mask) pairs (the augmentation).
"""

from __future__ import annotations

import argparse

import numpy as np

from ..data import ArrayDataset, DataLoader, read_image, shapes, voc
from ..data.shapes import make_segmentation
from ..data.voc import VOCSegmentation
from ..nn import functional as F
from ..train.loop import predict_batch
from ..train.metrics import Metric
from ..train.options import add_option
from ..train.recipe import Recipe
from ..vision.segmentation import save_overlay_grid
from .classification import denormalize, normalize

__all__ = ["SegmentationRecipe", "confusion_matrix", "iou_per_class", "MeanIoU", "PixelAccuracy",
           "SegmentationDataset", "RandomCrop", "IGNORE_INDEX"]

#: the label of pixels no class is scored on (VOC's object borders; the padding of crops)
IGNORE_INDEX = 255
OVERLAY_NAME = "predictions.png"
#: VOC images (at most 500x500) are padded to this size with the ignore label for evaluation
VOC_EVAL_SIZE = 512


def confusion_matrix(prediction: np.ndarray, target: np.ndarray, num_classes: int,
                     ignore_index: int | None = None) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, row = target class, column = predicted class, over
    the pixels whose target is not ``ignore_index``. prediction, target: int arrays of one shape."""
    keep = target != ignore_index if ignore_index is not None else np.ones(target.shape, bool)
    t, p = target[keep].astype(np.int64), prediction[keep].astype(np.int64)
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU of each class from a confusion matrix; NaN for a class absent from target and prediction."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


class MeanIoU(Metric):
    """Mean intersection over union of dense predictions. ``update(output (N, C, H, W) scores,
    target (N, H, W) class ids)``; the number of classes is C; pixels labelled ``ignore_index`` are
    skipped. IoU is averaged over the classes present in the targets or the predictions."""

    def __init__(self, ignore_index: int | None = None):
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.confusion = None

    def update(self, output: np.ndarray, target: np.ndarray) -> None:
        counts = confusion_matrix(output.argmax(axis=1), target, output.shape[1], self.ignore_index)
        self.confusion = counts if self.confusion is None else self.confusion + counts

    def compute(self) -> float:
        if self.confusion is None:
            return float("nan")
        iou = iou_per_class(self.confusion)
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


class PixelAccuracy(Metric):
    """Fraction of pixels (not labelled ``ignore_index``) whose highest-scoring class is the target;
    ``update(output (N, C, H, W), target (N, H, W))``."""

    def __init__(self, ignore_index: int | None = None):
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.correct, self.count = 0, 0

    def update(self, output: np.ndarray, target: np.ndarray) -> None:
        keep = target != self.ignore_index if self.ignore_index is not None else np.ones(target.shape, bool)
        self.correct += int((output.argmax(axis=1) == target)[keep].sum())
        self.count += int(keep.sum())

    def compute(self) -> float:
        return self.correct / self.count if self.count else float("nan")


class SegmentationDataset:
    """(image, mask) samples of ``dataset`` passed through ``crop`` (a :class:`RandomCrop`) and then
    ``image_transform`` on the image (e.g. normalisation)."""

    def __init__(self, dataset, crop, image_transform=None):
        self.dataset, self.crop, self.image_transform = dataset, crop, image_transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        image, mask = self.crop(*self.dataset[i])
        if self.image_transform is not None:
            image = self.image_transform(image)
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)


class RandomCrop:
    """A joint random crop of (image (C, H, W), mask (H, W)) to ``size`` x ``size``; sides shorter than
    ``size`` are padded first (image with ``fill``, mask with ``ignore_index``). With ``random=False``
    the crop is centred (evaluation)."""

    def __init__(self, size: int, ignore_index: int, fill: float = 0.0, seed: int | None = None,
                 random: bool = True):
        self.size, self.ignore_index, self.fill, self.random = size, ignore_index, fill, random
        self.generator = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, mask: np.ndarray):
        s = self.size
        h, w = mask.shape
        ph, pw = max(s - h, 0), max(s - w, 0)
        if ph or pw:
            image = np.pad(image, ((0, 0), (0, ph), (0, pw)), constant_values=self.fill)
            mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=self.ignore_index)
            h, w = mask.shape
        if self.random:
            top, left = self.generator.integers(0, h - s + 1), self.generator.integers(0, w - s + 1)
        else:
            top, left = (h - s) // 2, (w - s) // 2
        return image[:, top:top + s, left:left + s], mask[top:top + s, left:left + s]


class SegmentationRecipe(Recipe):
    """Base recipe for dense classifiers of (N, 3, H, W) images into (N, classes, H, W) scores.
    Subclasses set ``name``, ``description`` and implement ``default_hparams`` and ``build_model``
    (with :meth:`num_classes` outputs); their ``add_arguments`` calls this one first."""

    main_metric = "mean_iou"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dataset", choices=["shapes", "voc"], default="shapes",
                            help="shapes: generated scenes (default); voc: VOC2012 segmentation in --data-dir")
        parser.add_argument("--data-dir", help="VOC: the folder holding VOCdevkit/VOC2012")
        add_option(parser, "image_size", 48, "shapes: scene side; voc: training crop side (voc: try 320)")
        add_option(parser, "train_size", 6000, "shapes: training scenes")
        add_option(parser, "val_size", 500, "shapes: validation scenes")
        add_option(parser, "test_size", 500, "shapes: test scenes")

    def num_classes(self, args: argparse.Namespace) -> int:
        return len(self.class_names(args))

    def class_names(self, args: argparse.Namespace) -> tuple:
        return ("background",) + (voc.CLASSES if args.dataset == "voc" else shapes.SHAPES)

    def datasets(self, args: argparse.Namespace) -> dict:
        if args.dataset == "voc":
            # VOC2012 has no public test masks: its val split is the test set (as in the paper).
            return {
                "train": SegmentationDataset(VOCSegmentation(args.data_dir, "2012", "train"),
                                             RandomCrop(args.image_size, IGNORE_INDEX, seed=args.seed), normalize),
                "test": SegmentationDataset(VOCSegmentation(args.data_dir, "2012", "val"),
                                            RandomCrop(VOC_EVAL_SIZE, IGNORE_INDEX, random=False), normalize),
            }
        splits = {}
        for split, n in (("train", args.train_size), ("val", args.val_size), ("test", args.test_size)):
            n = min(n, args.limit) if args.limit else n
            x, y = make_segmentation(n, args.image_size, split) if n else (None, None)
            splits[split] = ArrayDataset(normalize(x), y) if n else None
        return splits

    def loss_fn(self, output, target):
        return F.cross_entropy(output, target, ignore_index=IGNORE_INDEX)

    def metrics(self) -> dict:
        return {"mean_iou": MeanIoU(IGNORE_INDEX), "pixel_accuracy": PixelAccuracy(IGNORE_INDEX)}

    def predict(self, output: np.ndarray) -> np.ndarray:
        return output.argmax(axis=1)

    def prediction_rows(self, inputs, output, names, targets, args, out_dir) -> list[dict]:
        """Writes ``predictions.png`` (predicted masks over the inputs, and the true masks where known)
        into ``out_dir``; each row gives the picture and the share of the image of each class found (and
        in the true mask, where known)."""
        import os

        masks = self.predict(output)
        labels = self.class_names(args)
        known = all(t is not None for t in targets)
        os.makedirs(out_dir, exist_ok=True)
        picture = os.path.join(out_dir, OVERLAY_NAME)
        save_overlay_grid(picture, denormalize(inputs), masks, np.stack(targets) if known else None,
                          class_names=labels, ignore_index=IGNORE_INDEX, titles=names)
        def found(mask):  # the share of the image of each class present, largest first
            mask = mask[mask != IGNORE_INDEX]
            shares = np.bincount(mask.ravel(), minlength=len(labels)) / max(mask.size, 1)
            return ", ".join(f"{labels[c]} {shares[c]:.0%}" for c in np.argsort(-shares)
                             if c > 0 and shares[c] > 0) or "background only"

        return [{"input": name, "prediction": found(mask), "picture": picture}
                | ({} if target is None else {"target": found(np.asarray(target))})
                for name, mask, target in zip(names, masks, targets)]

    def after_fit(self, model, datasets, args, device) -> None:
        """``predictions.png`` in the run directory: the first 8 test images, predicted and true masks."""
        loader = DataLoader(datasets["test"], batch_size=min(8, len(datasets["test"])))
        x, target = next(iter(loader))
        output = predict_batch(model, x, device)
        self.prediction_rows(x, output, [f"test[{i}]" for i in range(len(x))], list(target), args, args.out)

    def load_inputs(self, paths: list[str], args: argparse.Namespace) -> np.ndarray:
        """Colour images (PNG/JPEG or .npy), resized to the training --image-size for shapes, as they are for
        VOC (then all of one size) -> (N, 3, H, W) inputs scaled like the training data."""
        size = (args.image_size, args.image_size) if args.dataset == "shapes" else None
        return np.stack([normalize(read_image(p, size)) for p in paths])
