"""Boxes: intersection over union and non-maximum suppression (the detection task's mAP, which scores
boxes with them, is in :mod:`pyfastdl.tasks.detection`).

Boxes are (x1, y1, x2, y2) corner coordinates, as in torchvision. These run on numpy arrays:
detection post-processing handles a few hundred boxes per image and is not a hot path.
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_boxes", "box_iou", "nms", "batched_nms"]


def as_boxes(boxes, name):
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x1, y1, x2, y2), got {boxes.shape}")
    return boxes


def box_iou(a, b):
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4): an (N, M) array."""
    a, b = as_boxes(a, "a"), as_boxes(b, "b")
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clip(0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression: indices of the kept boxes, by decreasing score. A box is
    dropped when its IoU with a kept, higher-scoring box exceeds ``iou_threshold``."""
    boxes = as_boxes(boxes, "boxes")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(boxes),):
        raise ValueError(f"scores must have shape ({len(boxes)},), got {scores.shape}")
    order = np.argsort(-scores, kind="stable")
    iou = box_iou(boxes, boxes)
    keep = []
    suppressed = np.zeros(len(boxes), dtype=bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= iou[i] > iou_threshold
    return np.array(keep, dtype=np.int64)


def batched_nms(boxes, scores, classes, iou_threshold):
    """NMS within each class separately (boxes of different classes never suppress each other)."""
    boxes = as_boxes(boxes, "boxes")
    classes = np.asarray(classes)
    keep = [np.flatnonzero(classes == c)[nms(boxes[classes == c], np.asarray(scores)[classes == c],
                                             iou_threshold)] for c in np.unique(classes)]
    keep = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
    return keep[np.argsort(-np.asarray(scores, dtype=np.float64)[keep], kind="stable")]
