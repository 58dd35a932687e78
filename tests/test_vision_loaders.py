"""CIFAR-10 binary and PASCAL VOC loaders on tiny fake copies of each format, and their errors."""

import numpy as np
import pytest
from PIL import Image

from pyfastdl.data.cifar import TEST_FILES, TRAIN_FILES, load_cifar10
from pyfastdl.data.voc import CLASSES, VOCDetection, VOCSegmentation


def write_cifar(folder, rng, n=3):
    folder.mkdir()
    expected = {}
    for name in TRAIN_FILES + TEST_FILES:
        labels = rng.integers(0, 10, n).astype(np.uint8)
        pixels = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        np.concatenate([labels[:, None], pixels], 1).tofile(folder / name)
        expected[name] = (labels, pixels)
    return expected


def test_cifar_binary(tmp_path, rng):
    expected = write_cifar(tmp_path / "cifar-10-batches-bin", rng)
    x, y = load_cifar10(tmp_path, "test")
    labels, pixels = expected["test_batch.bin"]
    assert x.shape == (3, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_allclose(x[1, 2, 0, :5], pixels[1, 2048:2053] / 255.0)  # blue plane, first row
    x, y = load_cifar10(tmp_path / "cifar-10-batches-bin", "train")
    assert len(x) == 15


def test_cifar_errors(tmp_path, rng):
    write_cifar(tmp_path / "c", rng)
    with open(tmp_path / "c" / "test_batch.bin", "ab") as f:
        f.write(b"\x01\x02")
    with pytest.raises(ValueError, match="not a whole number of 3073-byte records"):
        load_cifar10(tmp_path / "c", "test")
    with pytest.raises(FileNotFoundError, match="missing data_batch_1.bin"):
        load_cifar10(tmp_path / "nothing", "train")


def write_voc(root, rng):
    base = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Main", "ImageSets/Segmentation"):
        (base / d).mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)).save(base / "JPEGImages" / "a.jpg")
    (base / "Annotations" / "a.xml").write_text(
        "<annotation><object><name>dog</name><difficult>0</difficult><bndbox><xmin>3</xmin><ymin>4</ymin>"
        "<xmax>10</xmax><ymax>12</ymax></bndbox></object><object><name>cat</name><difficult>1</difficult>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>30</xmax><ymax>20</ymax></bndbox></object></annotation>")
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[2:8, 3:9] = CLASSES.index("dog") + 1
    mask[8, :] = 255
    im = Image.fromarray(mask, mode="P")
    im.putpalette([0, 0, 0] * 256)
    im.save(base / "SegmentationClass" / "a.png")
    (base / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    (base / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    return base, mask


def test_voc(tmp_path, rng):
    _, mask = write_voc(tmp_path, rng)
    image, (boxes, classes, difficult) = VOCDetection(tmp_path)[0]
    assert image.shape == (3, 20, 30)
    np.testing.assert_array_equal(boxes, [[2, 3, 10, 12], [0, 0, 30, 20]])
    assert [CLASSES[c] for c in classes] == ["dog", "cat"] and difficult.tolist() == [False, True]
    image, m = VOCSegmentation(tmp_path)[0]
    np.testing.assert_array_equal(m, mask)


def test_voc_errors(tmp_path, rng):
    base, _ = write_voc(tmp_path, rng)
    (base / "Annotations" / "a.xml").write_text("<annotation><object><name>unicorn</name></object></annotation>")
    with pytest.raises(ValueError, match="unknown class 'unicorn'"):
        VOCDetection(tmp_path)[0]
    (base / "Annotations" / "a.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match="malformed annotation"):
        VOCDetection(tmp_path)[0]
    (base / "JPEGImages" / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot decode image"):
        VOCSegmentation(tmp_path)[0]
    with pytest.raises(FileNotFoundError, match="no JPEGImages folder"):
        VOCDetection(tmp_path / "elsewhere")
