"""YOLOv1's targets, loss and decoding (Redmon, Divvala, Girshick, Farhadi, "You Only Look Once:
Unified, Real-Time Object Detection", CVPR 2016, section 2).

The network's output is read as (N, S, S, B*5 + C): per grid cell, B boxes (x, y, w, h, confidence)
then C class probabilities. x, y are the box centre relative to its cell (0..1); w, h are relative
to the whole image (0..1).

The loss is the paper's sum of squared errors (eq. 3):

    λcoord Σ 1obj_ij [(x - x̂)² + (y - ŷ)²] + λcoord Σ 1obj_ij [(√w - √ŵ)² + (√h - √ĥ)²]
    + Σ 1obj_ij (C - Ĉ)² + λnoobj Σ 1noobj_ij (C - Ĉ)² + Σ 1obj_i Σ_c (p(c) - p̂(c))²

where predictor j of cell i is "responsible" (1obj_ij) for the object whose centre falls in cell i
when its predicted box has the highest IoU with that object's box, and the target confidence Ĉ of a
responsible predictor is that IoU (zero elsewhere). Departures, each a common choice:
the sum is divided by the batch size; √w of a negative prediction is taken as sign(w)·√|w| so
the gradient never vanishes; when two objects' centres fall in one cell, the larger one is kept.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..tensor import Tensor
from .boxes import batched_nms


def encode_targets(targets, image_size, S=7, C=20):
    """Per-image (boxes (k, 4) x1 y1 x2 y2 in pixels, classes (k,)) -> array (N, S, S, 5 + C):
    [x in cell, y in cell, w, h, object present, one-hot class]."""
    out = np.zeros((len(targets), S, S, 5 + C), dtype=np.float32)
    for n, (boxes, classes) in enumerate(targets):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / image_size
        order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
        for k in order[::-1]:  # smallest first, so a larger object in the same cell wins
            x1, y1, x2, y2 = boxes[k]
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            i, j = min(int(cy * S), S - 1), min(int(cx * S), S - 1)
            out[n, i, j, :5] = [cx * S - j, cy * S - i, x2 - x1, y2 - y1, 1.0]
            out[n, i, j, 5:] = 0
            out[n, i, j, 5 + int(classes[k])] = 1.0
    return out


def _corners(xywh, S):
    """(..., S, S, 4) cell-relative boxes -> (..., S, S, 4) image-relative corners."""
    col = np.arange(S).reshape(1, S)
    row = np.arange(S).reshape(S, 1)
    cx = (xywh[..., 0] + col) / S
    cy = (xywh[..., 1] + row) / S
    w, h = xywh[..., 2], xywh[..., 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def _iou_corners(a, b):
    lt = np.maximum(a[..., :2], b[..., :2])
    rb = np.minimum(a[..., 2:], b[..., 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda z: np.clip(z[..., 2] - z[..., 0], 0, None) * np.clip(z[..., 3] - z[..., 1], 0, None)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def yolo_v1_loss(pred, target, S=7, B=2, C=20, lambda_coord=5.0, lambda_noobj=0.5, rescore=True):
    """The YOLOv1 loss of ``pred`` (N, S, S, B*5 + C) Tensor against encoded ``target`` (N, S, S, 5 + C).

    ``rescore=True`` (the paper) makes a responsible predictor's target confidence its IoU with the
    object, held constant for the gradient; ``rescore=False`` uses 1."""
    if pred.shape[1:] != (S, S, B * 5 + C):
        raise ValueError(f"yolo_v1_loss: pred must have shape (N, {S}, {S}, {B * 5 + C}), got {pred.shape}")
    target = target.data if isinstance(target, Tensor) else target
    if target.shape != (pred.shape[0], S, S, 5 + C):
        raise ValueError(f"yolo_v1_loss: target must have shape ({pred.shape[0]}, {S}, {S}, {5 + C}), "
                         f"got {target.shape}")
    # the bookkeeping (IoUs, which predictor is responsible) is constant w.r.t. the gradient: numpy
    xp_target = np.asarray(backend.to_device(target, "cpu"), dtype=np.float64)
    p = np.asarray(backend.to_device(pred.data, "cpu"), dtype=np.float64)
    obj = xp_target[..., 4]  # (N, S, S)

    # the responsible predictor of each object cell: highest IoU with the object's box
    gt_corners = _corners(xp_target[..., :4], S)
    ious = np.stack([_iou_corners(_corners(p[..., 5 * b : 5 * b + 4], S), gt_corners) for b in range(B)], -1)
    best = ious.argmax(-1)
    resp = np.zeros(ious.shape)  # (N, S, S, B)
    np.put_along_axis(resp, best[..., None], 1.0, axis=-1)
    resp *= obj[..., None]
    conf_target = resp * ious if rescore else resp

    def const(a):
        return Tensor(backend.to_device(np.asarray(a, dtype=pred.dtype), pred.device))

    def signed_sqrt(t, values):  # sign(w)·√|w|, with the sign taken from the (constant) values
        sign = const(np.where(values < 0, -1.0, 1.0))
        return sign * (t * sign + 1e-9).sqrt()

    loss = None
    for b in range(B):
        box = pred[..., 5 * b : 5 * b + 5]
        r = const(resp[..., b])
        coord = (box[..., 0] - const(xp_target[..., 0])) ** 2 + (box[..., 1] - const(xp_target[..., 1])) ** 2
        size = ((signed_sqrt(box[..., 2], p[..., 5 * b + 2]) - const(np.sqrt(xp_target[..., 2]))) ** 2
                + (signed_sqrt(box[..., 3], p[..., 5 * b + 3]) - const(np.sqrt(xp_target[..., 3]))) ** 2)
        conf_err = (box[..., 4] - const(conf_target[..., b])) ** 2
        term = (lambda_coord * (r * (coord + size)) + r * conf_err
                + lambda_noobj * (const(1 - resp[..., b]) * conf_err)).sum()
        loss = term if loss is None else loss + term
    class_err = ((pred[..., B * 5 :] - const(xp_target[..., 5:])) ** 2).sum(-1)
    loss = loss + (const(obj) * class_err).sum()
    return loss / pred.shape[0]


def decode(pred, image_size, S=7, B=2, C=20, score_threshold=0.2, iou_threshold=0.5):
    """Boxes from one image's output (S, S, B*5 + C) array: class-specific confidence
    (box confidence × class probability), thresholded, then per-class NMS.
    Returns (boxes (k, 4) in pixels, scores (k,), classes (k,))."""
    p = np.asarray(backend.to_device(pred, "cpu"), dtype=np.float64)
    corners = np.stack([_corners(p[..., 5 * b : 5 * b + 4], S) for b in range(B)], 2)  # (S, S, B, 4)
    conf = np.stack([p[..., 5 * b + 4] for b in range(B)], 2)  # (S, S, B)
    class_scores = conf[..., None] * p[:, :, None, B * 5 :]  # (S, S, B, C)
    classes = class_scores.argmax(-1)
    scores = class_scores.max(-1)
    keep = scores.reshape(-1) > score_threshold
    boxes = np.clip(corners.reshape(-1, 4)[keep], 0, 1) * image_size
    scores, classes = scores.reshape(-1)[keep], classes.reshape(-1)[keep]
    if len(scores) == 0:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    k = batched_nms(boxes, scores, classes, iou_threshold)
    return boxes[k], scores[k], classes[k].astype(np.int64)
