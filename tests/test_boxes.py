"""IoU, NMS and VOC mAP against hand-computed cases."""

import numpy as np
import pytest

from pyfastdl.tasks.detection import mean_average_precision
from pyfastdl.vision import batched_nms, box_iou, nms


def test_iou_hand_computed():
    a = [[0, 0, 2, 2]]
    b = [[1, 1, 3, 3], [0, 0, 2, 2], [2, 2, 3, 3], [0, 0, 1, 2]]
    # overlap 1 of union 7; identical; touching corners only; half contained
    np.testing.assert_allclose(box_iou(a, b), [[1 / 7, 1.0, 0.0, 0.5]])


def test_iou_shape_error():
    with pytest.raises(ValueError, match=r"a must have shape \(N, 4\)"):
        box_iou([[0, 0, 1]], [[0, 0, 1, 1]])


def test_nms_hand_computed():
    boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]]
    scores = [0.9, 0.8, 0.7, 0.95]
    # box 3 (0.95) suppresses box 0 (IoU 0.9) but not box 1 (IoU 81/(90+100-81)=0.743 < 0.75)
    assert nms(boxes, scores, 0.75).tolist() == [3, 1, 2]
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert batched_nms(boxes, scores, [0, 1, 0, 1], 0.5).tolist() == [3, 0, 2]


def test_map_hand_computed():
    # one image, two ground truths of class 0, one of class 1
    gts = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]]), np.array([0, 0, 1]))]
    dets = [(np.array([[0, 0, 10, 10], [0, 0, 10, 10], [40, 40, 45, 45], [20, 20, 30, 30], [50, 50, 60, 60]]),
             np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([0, 0, 0, 0, 1]))]
    # class 0 by score: TP, FP (duplicate), FP (no overlap), TP -> recall .5,.5,.5,1 precision 1,.5,.33,.5
    # monotone precision: 1 up to recall .5, then .5 up to recall 1 -> AP = .5*1 + .5*.5 = .75
    m, per = mean_average_precision(dets, gts, num_classes=3)
    assert per[0] == pytest.approx(0.75) and per[1] == pytest.approx(1.0) and per[2] is None
    assert m == pytest.approx(0.875)


def test_map_counts_missed_objects():
    gts = [(np.array([[0, 0, 10, 10]]), np.array([0])), (np.array([[0, 0, 10, 10]]), np.array([0]))]
    dets = [(np.array([[0, 0, 10, 10]]), np.array([0.9]), np.array([0])),
            (np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int))]
    m, _ = mean_average_precision(dets, gts, num_classes=1)
    assert m == pytest.approx(0.5)


def test_map_ignores_difficult_objects():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    dets = [(np.array([[20, 20, 30, 30], [40, 40, 50, 50], [0, 0, 10, 10]]), np.array([0.9, 0.8, 0.7]),
             np.array([0, 0, 0]))]
    # object 1 difficult: the detection on it counts as neither, then FP, TP -> AP 0.5 (one object to find)
    m, _ = mean_average_precision(dets, [(boxes, np.array([0, 0]), np.array([False, True]))], num_classes=1)
    assert m == pytest.approx(0.5)
    # not difficult: TP, FP, TP over two objects -> 0.5 * 1 + 0.5 * 2/3
    m, _ = mean_average_precision(dets, [(boxes, np.array([0, 0]))], num_classes=1)
    assert m == pytest.approx(0.5 + 0.5 * 2 / 3)
