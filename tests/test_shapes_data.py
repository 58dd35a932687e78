"""The synthetic shapes datasets: deterministic, disjoint splits, consistent masks and boxes."""

import numpy as np
import pytest

from pyfastdl.data.shapes import SHAPES, make_classification, make_detection, make_segmentation, render_scene


def test_classification_deterministic_and_balanced():
    x, y = make_classification(120, seed=1)
    x2, y2 = make_classification(120, seed=1)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert x.shape == (120, 3, 32, 32) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert set(y.tolist()) == set(range(len(SHAPES)))
    xt, _ = make_classification(5, split="test", seed=1)
    assert not any(np.array_equal(a, b) for a in xt for b in x[:5])  # splits differ


def test_segmentation_masks_match_pixels():
    x, m = make_segmentation(6, size=48)
    assert x.shape == (6, 3, 48, 48) and m.shape == (6, 48, 48)
    assert m.min() >= 0 and m.max() <= len(SHAPES)
    assert all((mi > 0).any() and (mi == 0).any() for mi in m)


def test_detection_boxes_cover_visible_shapes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        img, mask, boxes, kinds = render_scene(rng, 64, 4)
        assert len(boxes) == len(kinds)
        for (x1, y1, x2, y2), k in zip(boxes.astype(int), kinds):
            assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64
            assert (mask[y1:y2, x1:x2] == k + 1).any()  # the box holds pixels of its kind
    _, targets = make_detection(30, objects=(2, 4))
    assert sum(len(b) >= 2 for b, _ in targets) > 15


def test_bad_split():
    with pytest.raises(ValueError, match="split must be one of"):
        make_classification(1, split="dev")
