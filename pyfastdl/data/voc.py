"""PASCAL VOC (2007/2012 layout) for detection and segmentation, from a folder the user names.

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg           images
    VOCdevkit/VOC2012/Annotations/<id>.xml          boxes and classes (detection)
    VOCdevkit/VOC2012/SegmentationClass/<id>.png    palette PNG of class indices, 255 = "void" border
    VOCdevkit/VOC2012/ImageSets/{Main,Segmentation}/<split>.txt   ids of each split

Images decode with Pillow. Boxes are returned as (x1, y1, x2, y2) in pixels with VOC's 1-based
inclusive corners converted to 0-based exclusive ones; "difficult" objects are kept apart (a flag)
so an evaluation can ignore them as VOC's does.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import numpy as np

CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
           "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
IGNORE_INDEX = 255


def _find_year_dir(root, year):
    for cand in (os.path.join(root, "VOCdevkit", f"VOC{year}"), os.path.join(root, f"VOC{year}"), root):
        if os.path.isdir(os.path.join(cand, "JPEGImages")):
            return cand
    raise FileNotFoundError(f"VOC: no JPEGImages folder under {root!r}; expected VOCdevkit/VOC{year}/JPEGImages, "
                            "Annotations, SegmentationClass and ImageSets (the VOCtrainval tar, extracted)")


def _read_ids(base, task, split):
    path = os.path.join(base, "ImageSets", task, f"{split}.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VOC: no split file {path!r}")
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def load_image(path):
    """An image file as (3, H, W) float32 in [0, 1]."""
    from PIL import Image  # noqa: PLC0415

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"cannot decode image {path!r}: {exc}") from exc
    return arr.transpose(2, 0, 1).copy()


def parse_annotation(path):
    """A VOC XML file -> (boxes (k, 4) float32, classes (k,) int64, difficult (k,) bool)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"VOC: malformed annotation {path!r}: {exc}") from exc
    boxes, classes, difficult = [], [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in CLASSES:
            raise ValueError(f"VOC: {path!r} has an object of unknown class {name!r}")
        bb = obj.find("bndbox")
        try:
            x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"VOC: {path!r} has an object without a valid bndbox") from exc
        boxes.append([x1 - 1, y1 - 1, x2, y2])
        classes.append(CLASSES.index(name))
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    return (np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(classes, dtype=np.int64),
            np.array(difficult, dtype=bool))


class VOCDetection:
    """``ds[i]`` -> (image (3, H, W) float32, (boxes (k, 4), classes (k,), difficult (k,)))."""

    def __init__(self, root, year="2012", split="train"):
        self.base = _find_year_dir(os.fspath(root), year)
        self.ids = _read_ids(self.base, "Main", split)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        name = self.ids[i]
        image = load_image(os.path.join(self.base, "JPEGImages", f"{name}.jpg"))
        return image, parse_annotation(os.path.join(self.base, "Annotations", f"{name}.xml"))


class VOCSegmentation:
    """``ds[i]`` -> (image (3, H, W) float32, mask (H, W) int64 with 255 on the void border)."""

    def __init__(self, root, year="2012", split="train"):
        self.base = _find_year_dir(os.fspath(root), year)
        self.ids = _read_ids(self.base, "Segmentation", split)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        from PIL import Image  # noqa: PLC0415

        name = self.ids[i]
        image = load_image(os.path.join(self.base, "JPEGImages", f"{name}.jpg"))
        path = os.path.join(self.base, "SegmentationClass", f"{name}.png")
        try:
            with Image.open(path) as im:
                if im.mode != "P":
                    raise ValueError(f"VOC: {path!r} is a {im.mode} image; class masks are palette (P) PNGs")
                mask = np.asarray(im, dtype=np.int64)
        except OSError as exc:
            raise ValueError(f"VOC: cannot decode mask {path!r}: {exc}") from exc
        if mask.shape != image.shape[1:]:
            raise ValueError(f"VOC: mask {path!r} is {mask.shape} but its image is {image.shape[1:]}")
        bad = (mask >= len(CLASSES) + 1) & (mask != IGNORE_INDEX)
        if bad.any():
            raise ValueError(f"VOC: mask {path!r} has class index {int(mask[bad][0])}; expected 0..20 or 255")
        return image, mask
