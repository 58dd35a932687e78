"""Synthetic vision data with no download: coloured shapes on textured backgrounds.

One scene generator serves the three vision tasks of the reading list:

* classification (NIN, ResNet): one shape per image, the label is its kind;
* segmentation (FCN): several shapes, a per-pixel mask of kinds (0 is background);
* detection (YOLOv1): the same scenes with a box and a class per shape, several per image,
  some overlapping (later shapes occlude earlier ones, as objects do in photographs).

Everything is deterministic: sample ``i`` of a split is drawn from ``numpy.random.default_rng((seed,
split, i))``, so a dataset is the same on every machine and the splits never share a scene.
Backgrounds are smooth random colour fields plus pixel noise, so a model has to find edges and
shapes rather than threshold a flat colour.
"""

from __future__ import annotations

import numbers

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
SPLITS = {"train": 0, "val": 1, "test": 2}


def _shape_mask(kind, yy, xx, cy, cx, r):
    """Boolean mask of one shape of half-size ``r`` centred at (cy, cx) on the pixel grid."""
    dy, dx = yy - cy, xx - cx
    if kind == "circle":
        return dy * dy + dx * dx <= r * r
    if kind == "square":
        return (np.abs(dy) <= 0.85 * r) & (np.abs(dx) <= 0.85 * r)
    if kind == "triangle":  # apex up: below the two slanted edges and above the base
        return (dy <= 0.8 * r) & (dy >= -r + 2 * np.abs(dx))
    if kind == "diamond":
        return np.abs(dy) + np.abs(dx) <= r
    if kind == "cross":
        arm = 0.35 * r
        return ((np.abs(dy) <= arm) & (np.abs(dx) <= r)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= r))
    if kind == "ring":
        d2 = dy * dy + dx * dx
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPES}")


def _background(rng, size):
    """A smooth random colour field (a few low-frequency waves per channel) plus pixel noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.empty((3, size, size))
    for c in range(3):
        field = rng.uniform(0.2, 0.8)
        for _ in range(3):
            fy, fx = rng.uniform(0.5, 3.0, size=2)
            field = field + 0.12 * np.sin(2 * np.pi * (fy * yy + fx * xx) + rng.uniform(0, 2 * np.pi))
        img[c] = field
    return img + rng.normal(0, 0.04, size=img.shape)


def render_scene(rng, size, n_objects, radius=(0.18, 0.38), min_visible=0.5):
    """One scene: image (3, size, size) float32 in [0, 1], mask (size, size) int64 of kind + 1 (0 is
    background), boxes (n, 4) as (x1, y1, x2, y2) of each shape's visible pixels, and kinds (n,).

    ``radius`` is the half-size range as a fraction of ``size``. A shape that ends up less than
    ``min_visible`` visible (covered by later ones) is dropped from the boxes and the mask keeps
    what is visible of it."""
    img = _background(rng, size)
    mask = np.zeros((size, size), dtype=np.int64)
    owner = np.full((size, size), -1)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    kinds, areas = [], []
    for k in range(n_objects):
        kind = int(rng.integers(len(SHAPES)))
        r = rng.uniform(*radius) * size
        cy, cx = rng.uniform(r * 0.6, size - r * 0.6, size=2)
        m = _shape_mask(SHAPES[kind], yy, xx, cy, cx, r)
        if not m.any():
            continue
        colour = rng.uniform(0, 1, size=3)
        while np.abs(colour - img[:, m].mean(axis=1)).max() < 0.3:  # keep shapes distinguishable
            colour = rng.uniform(0, 1, size=3)
        img[:, m] = colour[:, None] + rng.normal(0, 0.03, size=(3, int(m.sum())))
        mask[m] = kind + 1
        owner[m] = len(kinds)
        kinds.append(kind)
        areas.append(int(m.sum()))
    boxes, kept = [], []
    for j, kind in enumerate(kinds):
        ys, xs = np.nonzero(owner == j)
        if len(ys) >= min_visible * areas[j]:
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            kept.append(kind)
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    return np.clip(img, 0, 1).astype(np.float32), mask, boxes, np.array(kept, dtype=np.int64)


def _check_sizes(owner, n, size):
    """n >= 0 scenes of size >= 4: a shape drawn on fewer pixels may never show (make_classification
    redraws until it does)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"{owner}: n (the number of images) must be a whole number >= 0, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 4:
        raise ValueError(f"{owner}: image_size must be a whole number >= 4 (pixels a side), got {size!r}")


def _rng(seed, split, i):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    return np.random.default_rng((seed, SPLITS[split], i))


def make_classification(n, size=32, split="train", seed=0):
    """``n`` images (n, 3, size, size) float32 with one shape each, and their kinds (n,) int64."""
    _check_sizes("make_classification", n, size)
    images = np.empty((n, 3, size, size), dtype=np.float32)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        rng = _rng(seed, split, i)
        kind = -1
        while kind < 0:  # one shape: retry the (rare) draw that came out invisible
            img, _, _, kinds = render_scene(rng, size, 1, radius=(0.22, 0.42))
            kind = int(kinds[0]) if len(kinds) else -1
        images[i], labels[i] = img, kind
    return images, labels


def make_segmentation(n, size=64, split="train", seed=0, objects=(1, 4)):
    """``n`` scenes (n, 3, size, size) float32 and masks (n, size, size) int64 (0 background,
    kind + 1 for each shape's pixels): ``len(SHAPES) + 1`` classes."""
    _check_sizes("make_segmentation", n, size)
    images = np.empty((n, 3, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=np.int64)
    for i in range(n):
        rng = _rng(seed, split, i)
        images[i], masks[i], _, _ = render_scene(rng, size, int(rng.integers(objects[0], objects[1] + 1)))
    return images, masks


def make_detection(n, size=64, split="train", seed=0, objects=(1, 4)):
    """``n`` scenes (n, 3, size, size) float32 and, per scene, (boxes (k, 4) x1 y1 x2 y2 in pixels,
    kinds (k,)) with ``len(SHAPES)`` classes."""
    _check_sizes("make_detection", n, size)
    images = np.empty((n, 3, size, size), dtype=np.float32)
    targets = []
    for i in range(n):
        rng = _rng(seed, split, i)
        images[i], _, boxes, kinds = render_scene(rng, size, int(rng.integers(objects[0], objects[1] + 1)),
                                                  radius=(0.12, 0.3))
        targets.append((boxes, kinds))
    return images, targets
