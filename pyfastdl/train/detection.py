"""Object detection in the shared training loop: datasets of boxes, their batches, mAP, pictures.

A detection sample is an image and a variable number of boxes, so batches need their own
collation: :class:`DetectionDataset` encodes each image's boxes into the model's fixed-shape
training target (the recipe's ``encode``; for YOLO the S x S grid) and :func:`detection_collate`
stacks those while keeping the raw boxes, in a :class:`DetectionTarget`, for the metric. The
metric, :class:`MeanAveragePrecision`, decodes every image's output into boxes (the recipe's
``decode``) and scores them with VOC's mAP@0.5 at the end of the epoch.

:class:`DetectionRecipe` holds everything that is not model-specific: the datasets (synthetic
shapes scenes, default, or PASCAL VOC from a directory), flips as augmentation, the metric, the
PNG grid of test predictions written after training and ``pyfastdl predict``'s pictures.
A model's recipe adds ``build_model``, ``encode``, ``loss_fn`` and ``decode``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from ..data import Dataset
from .metrics import Metric
from .options import add_option
from .recipe import Recipe

__all__ = ["DetectionTarget", "DetectionDataset", "SyntheticDetection", "detection_collate",
           "MeanAveragePrecision", "DetectionRecipe", "PICTURE_NAME"]

#: the picture of test predictions written into the run directory, and by ``pyfastdl predict``
PICTURE_NAME = "predictions.png"


class DetectionTarget:
    """A batch's ground truth: ``encoded`` (N, ...) the stacked training targets for the loss, and per
    image the raw ``boxes`` (k, 4) x1 y1 x2 y2 in pixels, ``classes`` (k,) and ``difficult`` (k,) for
    the metric; ``image_size`` (the side of the square inputs) and ``num_classes``.
    ``len()`` is the number of images; iterating yields each image's (boxes, classes)."""

    def __init__(self, encoded, boxes, classes, difficult, image_size, num_classes):
        self.encoded, self.boxes, self.classes, self.difficult = encoded, boxes, classes, difficult
        self.image_size, self.num_classes = int(image_size), int(num_classes)

    def __len__(self) -> int:
        return len(self.boxes)

    def __iter__(self):
        return iter(zip(self.boxes, self.classes))


def detection_collate(samples):
    """Samples ``(image (3, H, W), (encoded, boxes, classes, difficult, num_classes))`` ->
    ``(images (N, 3, H, W), DetectionTarget)``."""
    images = np.stack([s[0] for s in samples])
    encoded, boxes, classes, difficult, num_classes = zip(*(s[1] for s in samples))
    return images, DetectionTarget(np.stack(encoded), list(boxes), list(classes), list(difficult),
                                   images.shape[-1], num_classes[0])


class SyntheticDetection(Dataset):
    """The synthetic shapes scenes (:func:`pyfastdl.data.shapes.make_detection`) of one split:
    ``ds[i]`` -> (image (3, size, size), (boxes (k, 4), classes (k,)))."""

    def __init__(self, n: int, size: int, split: str, seed: int = 0):
        from ..data.shapes import make_detection

        self.images, self.targets = make_detection(n, size=size, split=split, seed=seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.targets[i]


class DetectionDataset(Dataset):
    """Wraps a dataset of (image (3, H, W), (boxes, classes[, difficult])) for training.

    Each image is resized to ``image_size`` x ``image_size`` (bilinear; the boxes scaled with it),
    flipped left-right with probability 1/2 when ``flip_seed`` is given (the flips drawn from a
    Generator with that seed), and its boxes encoded by ``encode(boxes, classes, image_size)``.
    ``ds[i]`` -> (image, (encoded, boxes, classes, difficult, num_classes)), for
    :func:`detection_collate`."""

    def __init__(self, base, image_size: int, encode, num_classes: int, flip_seed: int | None = None):
        self.base, self.image_size, self.encode, self.num_classes = base, int(image_size), encode, num_classes
        self.flips = np.random.default_rng(flip_seed) if flip_seed is not None else None

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        from ..data import resize_bilinear

        image, annotation = self.base[i]
        boxes, classes = np.asarray(annotation[0], np.float32).reshape(-1, 4), np.asarray(annotation[1], np.int64)
        difficult = np.asarray(annotation[2], bool) if len(annotation) > 2 else np.zeros(len(classes), bool)
        h, w = image.shape[-2:]
        if (h, w) != (self.image_size, self.image_size):
            image = resize_bilinear(np.asarray(image, np.float32), (self.image_size, self.image_size))
            boxes = boxes * np.array([self.image_size / w, self.image_size / h] * 2, np.float32)
        if self.flips is not None and self.flips.random() < 0.5:
            image = image[..., ::-1].copy()
            boxes = np.stack([self.image_size - boxes[:, 2], boxes[:, 1], self.image_size - boxes[:, 0],
                              boxes[:, 3]], axis=1)
        encoded = self.encode(boxes[~difficult], classes[~difficult], self.image_size)
        return image, (encoded, boxes, classes, difficult, self.num_classes)


class MeanAveragePrecision(Metric):
    """VOC mAP@``iou_threshold`` over an epoch: ``update`` decodes every image's output with
    ``decode(output, num_classes, image_size, score_threshold)`` -> [(boxes, scores, classes)] and
    keeps it with the ground truth (difficult objects are ignored, as VOC's evaluation does);
    ``compute`` runs :func:`pyfastdl.vision.mean_average_precision` over all of them."""

    def __init__(self, decode, iou_threshold: float = 0.5, score_threshold: float = 0.01):
        self.decode, self.iou_threshold, self.score_threshold = decode, iou_threshold, score_threshold
        self.reset()

    def reset(self) -> None:
        self.detections, self.truths, self.num_classes = [], [], 0

    def update(self, output: np.ndarray, target: DetectionTarget) -> None:
        self.detections += self.decode(output, target.num_classes, target.image_size, self.score_threshold)
        self.truths += list(zip(target.boxes, target.classes, target.difficult))
        self.num_classes = target.num_classes

    def merge(self, state: dict) -> None:
        num_classes = max(self.num_classes, state["num_classes"])  # a count of classes, not a sum
        super().merge(state)
        self.num_classes = num_classes

    def compute(self) -> float:
        from ..vision import mean_average_precision

        if not self.truths:
            return float("nan")
        return mean_average_precision(self.detections, self.truths, self.num_classes, self.iou_threshold)[0]


class DetectionRecipe(Recipe):
    """Base recipe for detectors. Subclasses set ``name``, ``description``, ``default_image_size``
    and implement ``default_hparams``, ``build_model``, ``loss_fn`` (against a
    :class:`DetectionTarget`) and:

    * ``encode(boxes, classes, image_size, args)`` -> one image's training target (fixed shape);
    * ``decode(output, num_classes, image_size, score_threshold)`` -> per image of the numpy
      batch ``output``, (boxes (k, 4) in pixels, scores (k,), classes (k,)) after NMS.

    Data: ``--dataset shapes`` (default; synthetic scenes, 1-4 shapes each, six classes, drawn at
    ``--image-size``) or ``--dataset voc`` (PASCAL VOC in ``--data-dir``: its ``train`` split for
    training and ``val`` for testing, resized to ``--image-size``). Training images are flipped
    left-right at random (``--no-flip`` to turn off).
    """

    main_metric = "mAP"
    collate_fn = staticmethod(detection_collate)
    default_image_size = 448
    #: synthetic training scenes generated by default (``--train-size``)
    default_train_size = 4000
    #: decoded boxes below this class-specific confidence are not drawn or printed
    display_threshold = 0.25

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dataset", choices=["shapes", "voc"], default="shapes",
                            help="shapes: synthetic scenes, generated (default); voc: PASCAL VOC in --data-dir")
        parser.add_argument("--data-dir", help="VOC: the folder holding VOCdevkit/VOC<year> (or VOC<year>)")
        parser.add_argument("--year", default="2012", help="VOC: which year's folder (default 2012)")
        add_option(parser, "image_size", self.default_image_size, "side of the square network input")
        add_option(parser, "train_size", self.default_train_size, "shapes: training scenes")
        add_option(parser, "val_size", 0, "shapes: validation scenes")
        add_option(parser, "test_size", 500, "shapes: test scenes")
        parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                            help="augmentation: random left-right flips")

    def num_classes(self, args: argparse.Namespace) -> int:
        return len(self.class_names(args))

    def class_names(self, args: argparse.Namespace) -> tuple:
        from ..data.shapes import SHAPES
        from ..data.voc import CLASSES

        return CLASSES if args.dataset == "voc" else SHAPES

    def datasets(self, args: argparse.Namespace) -> dict:
        if args.dataset == "voc":
            from ..data.voc import VOCDetection

            if not args.data_dir:
                raise ValueError("--dataset voc needs --data-dir (the folder holding VOCdevkit)")
            base = {"train": VOCDetection(args.data_dir, args.year, "train"), "val": None,
                    "test": VOCDetection(args.data_dir, args.year, "val")}
        else:
            sizes = {"train": args.train_size, "val": args.val_size, "test": args.test_size}
            base = {split: SyntheticDetection(n, args.image_size, split) if n else None for split, n in sizes.items()}

        def encode(boxes, classes, image_size):
            return self.encode(boxes, classes, image_size, args)

        n_classes = self.num_classes(args)
        return {split: None if ds is None else
                DetectionDataset(ds, args.image_size, encode, n_classes,
                                 flip_seed=args.seed if split == "train" and args.flip else None)
                for split, ds in base.items()}

    def metrics(self) -> dict[str, Metric]:
        return {"mAP": MeanAveragePrecision(self.decode)}

    def _draw(self, images, output, targets, args, path, title) -> list:
        from ..vision.draw import save_detection_grid

        detections = self.decode(output, self.num_classes(args), images.shape[-1], self.display_threshold)
        save_detection_grid(path, images, detections, self.class_names(args), truths=targets, title=title)
        return detections

    def after_fit(self, model, datasets: dict, args: argparse.Namespace, device: str) -> None:
        """Draw the first 16 test images with their predicted boxes (solid, labelled with class and
        score) and ground truth (dashed) into ``<out>/predictions.png``."""
        from ..data import DataLoader
        from .loop import predict_batch

        test = datasets["test"]
        images, target = next(iter(DataLoader(test, batch_size=min(16, len(test)), collate_fn=self.collate_fn)))
        self._draw(images, predict_batch(model, images, device), list(target), args,
                   os.path.join(args.out, PICTURE_NAME), f"{self.name}: test predictions (dashed: ground truth)")

    def prediction_rows(self, inputs, output, names, targets, args, out_dir) -> list[dict]:
        """Per input, the detections above ``display_threshold`` (class, label, score, box in input
        pixels) and the ground truth where known; draws them all into ``<out_dir>/predictions.png``."""
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, PICTURE_NAME)
        known = [t for t in targets if t is not None]
        detections = self._draw(inputs, output, known if len(known) == len(targets) else None, args, path,
                                f"{self.name} predictions")
        labels = self.class_names(args)
        rows = []
        for name, (boxes, scores, classes), t in zip(names, detections, targets):
            row = {"input": name, "picture": path,
                   "prediction": [{"class": int(c), "label": labels[int(c)], "score": round(float(s), 4),
                                   "box": [round(float(v), 1) for v in b]} for b, s, c in zip(boxes, scores, classes)]}
            if t is not None:
                row["target"] = [{"class": int(c), "label": labels[int(c)], "box": [round(float(v), 1) for v in b]}
                                 for b, c in zip(*t)]
            rows.append(row)
        return rows

    def load_inputs(self, paths: list[str], args: argparse.Namespace) -> np.ndarray:
        """Colour images (PNG/JPEG, or .npy arrays (3, H, W) or (H, W, 3), 0..1 or 0..255), any size
        -> (N, 3, image_size, image_size) float32 in [0, 1]."""
        from ..data import resize_bilinear
        from ..data.voc import load_image

        out = []
        for path in paths:
            if path.endswith(".npy"):
                a = np.load(path, allow_pickle=False).astype(np.float32)
                if a.ndim == 3 and a.shape[-1] == 3 and a.shape[0] != 3:
                    a = a.transpose(2, 0, 1)
                if a.ndim != 3 or a.shape[0] != 3:
                    raise ValueError(f"{path}: expected a colour image (3, H, W) or (H, W, 3), got shape {a.shape}")
                a = a / 255.0 if a.max() > 1.0 else a
            else:
                a = load_image(path)
            out.append(resize_bilinear(a, (args.image_size, args.image_size)))
        return np.stack(out).astype(np.float32)
