"""Boxes: intersection over union, non-maximum suppression and VOC-style mean average precision.

Boxes are (x1, y1, x2, y2) corner coordinates, as in torchvision. These run on numpy arrays:
detection post-processing handles a few hundred boxes per image and is not a hot path.
"""

from __future__ import annotations

import numpy as np


def _as_boxes(boxes, name):
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x1, y1, x2, y2), got {boxes.shape}")
    return boxes


def box_iou(a, b):
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4): an (N, M) array."""
    a, b = _as_boxes(a, "a"), _as_boxes(b, "b")
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
    boxes = _as_boxes(boxes, "boxes")
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
    boxes = _as_boxes(boxes, "boxes")
    classes = np.asarray(classes)
    keep = [np.flatnonzero(classes == c)[nms(boxes[classes == c], np.asarray(scores)[classes == c],
                                             iou_threshold)] for c in np.unique(classes)]
    keep = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
    return keep[np.argsort(-np.asarray(scores, dtype=np.float64)[keep], kind="stable")]


def average_precision(recall, precision):
    """Area under the precision-recall curve with precision made monotone (VOC 2010+ all points)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def mean_average_precision(detections, ground_truths, num_classes, iou_threshold=0.5):
    """VOC-style mAP@``iou_threshold``.

    ``detections``: per image, a tuple (boxes (N, 4), scores (N,), classes (N,)).
    ``ground_truths``: per image, a tuple (boxes (M, 4), classes (M,)) or (boxes, classes,
    difficult (M,) bool).
    Each detection, highest score first, is a true positive when it overlaps an unmatched ground
    truth of its class by at least the threshold, else a false positive; as in VOC's evaluation,
    a detection whose best overlap is a "difficult" object counts as neither, and difficult
    objects are not counted among those to find. Returns (mAP, per-class AP); classes without
    (non-difficult) ground truth are left out of the mean (their AP is None)."""
    if len(detections) != len(ground_truths):
        raise ValueError(f"detections cover {len(detections)} images but ground_truths {len(ground_truths)}")
    truths = []
    for gt in ground_truths:
        gb, gc = _as_boxes(gt[0], "ground-truth boxes"), np.asarray(gt[1])
        difficult = np.asarray(gt[2], dtype=bool) if len(gt) > 2 else np.zeros(len(gc), dtype=bool)
        truths.append((gb, gc, difficult))
    dets = [(_as_boxes(db, "detection boxes"), np.asarray(ds, dtype=np.float64), np.asarray(dc))
            for db, ds, dc in detections]
    per_class = []
    for c in range(num_classes):
        gts = [(gb[gc == c], d[gc == c]) for gb, gc, d in truths]
        n_gt = sum(int((~d).sum()) for _, d in gts)
        if n_gt == 0:
            per_class.append(None)
            continue
        # every detection of class c: its score, and whether it is a TP (1), FP (0) or ignored (-1)
        scores, outcome = [], []
        for (db, ds, dc), (gt, difficult) in zip(dets, gts):
            sel = dc == c
            boxes, s = db[sel], ds[sel]
            order = np.argsort(-s, kind="stable")
            boxes, s = boxes[order], s[order]
            result = np.zeros(len(s))
            if len(gt) and len(s):
                ious = box_iou(boxes, gt)
                matched = np.zeros(len(gt), dtype=bool)
                for k in range(len(s)):
                    j = int(np.argmax(ious[k]))
                    if ious[k, j] >= iou_threshold:
                        if difficult[j]:
                            result[k] = -1
                        elif not matched[j]:
                            matched[j] = True
                            result[k] = 1
            scores.append(s)
            outcome.append(result)
        scores, outcome = np.concatenate(scores), np.concatenate(outcome)
        order = np.argsort(-scores, kind="stable")
        outcome = outcome[order][outcome[order] >= 0]
        ctp = np.cumsum(outcome)
        recall = ctp / n_gt
        precision = ctp / np.arange(1, len(outcome) + 1)
        per_class.append(average_precision(recall, precision))
    present = [ap for ap in per_class if ap is not None]
    return (float(np.mean(present)) if present else 0.0), per_class
