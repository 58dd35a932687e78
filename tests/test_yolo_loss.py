"""YOLOv1 target encoding, loss (against a hand-computed example and by gradcheck) and decoding."""

import numpy as np
import pytest

import pyfastdl as pf
from pyfastdl.testing import gradcheck
from pyfastdl.vision.yolo import decode, encode_targets, yolo_v1_loss

S, B, C = 2, 2, 2


def example():
    """One object, pixel box (0, 0, 1, 1) in a 2x2 image, class 1: its centre is in cell (0, 0)."""
    target = encode_targets([(np.array([[0, 0, 1, 1]]), np.array([1]))], image_size=2, S=S, C=C)
    pred = np.zeros((1, S, S, B * 5 + C))
    pred[0, 0, 0, 0:5] = [0.5, 0.5, 0.5, 0.5, 0.8]  # exactly the object's box: IoU 1, responsible
    pred[0, 0, 0, 5:10] = [0.5, 0.5, 0.25, 0.25, 0.6]  # same centre, a quarter of the area: IoU 0.25
    pred[0, 0, 0, 10:] = [0.3, 0.6]
    pred[0, 1, 1, 4] = 0.4  # a confident predictor in an empty cell
    return pred, target


def test_encode_targets():
    _, target = example()
    np.testing.assert_allclose(target[0, 0, 0], [0.5, 0.5, 0.5, 0.5, 1, 0, 1])
    assert target[0, 1:, :].sum() == 0 and target[0, 0, 1].sum() == 0


def test_loss_hand_computed():
    pred, target = example()
    # responsible predictor: (0.8 - IoU 1)^2 = 0.04, coordinates exact
    # other predictor of the object cell: 0.5 * 0.6^2 = 0.18;  the empty cell's: 0.5 * 0.4^2 = 0.08
    # classes of the object cell: 0.3^2 + (0.6 - 1)^2 = 0.25
    loss = yolo_v1_loss(pf.tensor(pred), target, S=S, B=B, C=C)
    assert loss.item() == pytest.approx(0.04 + 0.18 + 0.08 + 0.25)


def test_loss_coordinates_weighted():
    pred, target = example()
    pred[0, 0, 0, 0] = 0.6  # x off by 0.1 (IoU drops a little too: the target confidence follows it)
    pred[0, 0, 0, 2] = 0.64  # w: (sqrt .64 - sqrt .5)^2
    loss = yolo_v1_loss(pf.tensor(pred), target, S=S, B=B, C=C).item()
    box = np.array([0.6 / 2 - 0.32, 0.25 - 0.25, 0.6 / 2 + 0.32, 0.25 + 0.25])  # image-relative corners
    inter = (min(box[2], 0.5) - max(box[0], 0)) * (min(box[3], 0.5) - max(box[1], 0))
    iou = inter / (0.64 * 0.5 + 0.25 - inter)
    expected = 5 * (0.1**2 + (0.8 - np.sqrt(0.5)) ** 2) + (0.8 - iou) ** 2 + 0.18 + 0.08 + 0.25
    assert loss == pytest.approx(expected)


def test_loss_gradcheck(rng):
    # rescore=False: with the paper's IoU target the IoU is held constant, which finite differences
    # (rightly) do not do
    _, target = example()
    pred = pf.tensor(rng.uniform(0.1, 0.9, size=(1, S, S, B * 5 + C)), requires_grad=True)
    assert gradcheck(lambda p: yolo_v1_loss(p, target, S=S, B=B, C=C, rescore=False), (pred,))


def test_loss_shape_errors():
    pred, target = example()
    with pytest.raises(ValueError, match="pred must have shape"):
        yolo_v1_loss(pf.tensor(pred[..., :-1]), target, S=S, B=B, C=C)


def test_decode():
    pred, _ = example()
    boxes, scores, classes = decode(pred[0], image_size=2, S=S, B=B, C=C, score_threshold=0.2)
    np.testing.assert_allclose(boxes, [[0, 0, 1, 1], [0.25, 0.25, 0.75, 0.75]])
    np.testing.assert_allclose(scores, [0.48, 0.36])
    assert classes.tolist() == [1, 1]
