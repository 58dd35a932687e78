"""pyfastdl.data: DataLoader, datasets, transforms and the IDX parser (on tiny files written here)."""

import gzip
import os

import numpy as np
import pytest

from pyfastdl.data import (
    LECUN_BACKGROUND, ArrayDataset, DataLoader, Subset, default_collate, load_digits, load_mnist,
    pad_to, parse_idx, random_split_indices, read_idx, resize_bilinear,
)
from pyfastdl.tasks.classification import RandomShift
from pyfastdl.data.mnist import MNIST_FILES


# ---- DataLoader ----

@pytest.mark.parametrize("n,batch_size,drop_last", [(23, 5, False), (23, 5, True), (20, 5, False), (3, 8, False)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_loader_visits_every_sample_once_per_epoch(n, batch_size, drop_last, shuffle):
    ds = ArrayDataset(np.arange(n) * 10, np.arange(n))
    loader = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, seed=3)
    expected_batches = n // batch_size if drop_last else -(-n // batch_size)
    assert len(loader) == expected_batches
    orders = []
    for _ in range(3):
        batches = list(loader)
        assert len(batches) == expected_batches
        full = batches if drop_last else batches[:-1]
        assert all(len(b[1]) == batch_size for b in full)
        seen = np.concatenate([b[1] for b in batches])
        np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), seen * 10)  # rows stay paired
        if drop_last:
            assert len(seen) == expected_batches * batch_size and len(set(seen)) == len(seen)
        else:
            np.testing.assert_array_equal(np.sort(seen), np.arange(n))  # each sample exactly once
        orders.append(seen)
    if shuffle and n > batch_size:
        assert not all(np.array_equal(orders[0], o) for o in orders[1:])  # a new order each epoch
    if not shuffle:
        np.testing.assert_array_equal(orders[0], np.arange(len(orders[0])))


def test_loader_shuffle_is_seeded():
    ds = ArrayDataset(np.arange(50))
    a = [b[0].tolist() for _ in range(2) for b in DataLoader(ds, 7, shuffle=True, seed=11)]
    b = [b[0].tolist() for _ in range(2) for b in DataLoader(ds, 7, shuffle=True, seed=11)]
    c = [b[0].tolist() for b in DataLoader(ds, 7, shuffle=True, seed=12)]
    assert a == b and a[:len(c)] != c


def test_collate_structures(rng):
    samples = [{"image": rng.random((2, 3)), "label": i, "pair": (rng.random(4), float(i)), "name": f"s{i}"}
               for i in range(5)]
    batch = default_collate(samples)
    assert batch["image"].shape == (5, 2, 3) and batch["label"].tolist() == list(range(5))
    assert batch["pair"][0].shape == (5, 4) and batch["pair"][1].dtype == np.float64
    assert batch["name"] == ["s0", "s1", "s2", "s3", "s4"]
    np.testing.assert_array_equal(batch["image"][2], samples[2]["image"])


def test_collate_errors(rng):
    with pytest.raises(ValueError, match="share a shape"):
        default_collate([rng.random(3), rng.random(4)])
    with pytest.raises(TypeError, match="cannot batch samples of type object"):
        default_collate([object(), object()])


def test_loader_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ArrayDataset(np.arange(4)), batch_size=0)


def test_array_dataset_and_subset(rng):
    x, y = rng.random((6, 2)), np.arange(6)
    ds = ArrayDataset(x, y, transform=lambda a: a * 2)
    np.testing.assert_array_equal(ds[4][0], x[4] * 2)
    assert ds[4][1] == 4
    sub = Subset(ds, [5, 1])
    assert len(sub) == 2 and sub[0][1] == 5 and sub[1][1] == 1
    with pytest.raises(ValueError, match="same length"):
        ArrayDataset(x, np.arange(5))


def test_random_split_indices():
    parts = random_split_indices(101, [0.7, 0.2, 0.1], seed=5)
    assert [len(p) for p in parts] == [71, 20, 10]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(101))
    again = random_split_indices(101, [0.7, 0.2, 0.1], seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    with pytest.raises(ValueError, match="sum to 1"):
        random_split_indices(10, [0.5, 0.6], seed=0)


# ---- transforms ----

def test_resize_bilinear_matches_reference(rng):
    img = rng.random((3, 5, 7))
    out = resize_bilinear(img, (9, 4))
    # reference: per-pixel bilinear sampling, pixel centres aligned (align_corners=False)
    ref = np.empty((3, 9, 4))
    for i in range(9):
        for j in range(4):
            sy = min(max((i + 0.5) * 5 / 9 - 0.5, 0), 4)
            sx = min(max((j + 0.5) * 7 / 4 - 0.5, 0), 6)
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            y1, x1 = min(y0 + 1, 4), min(x0 + 1, 6)
            fy, fx = sy - y0, sx - x0
            ref[:, i, j] = ((1 - fy) * ((1 - fx) * img[:, y0, x0] + fx * img[:, y0, x1])
                            + fy * ((1 - fx) * img[:, y1, x0] + fx * img[:, y1, x1]))
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    constant = np.full((4, 4), 0.3)
    np.testing.assert_allclose(resize_bilinear(constant, (13, 13)), 0.3)


def test_pad_to(rng):
    img = rng.random((2, 3, 3))
    out = pad_to(img, (7, 6), value=-1.0)
    assert out.shape == (2, 7, 6)
    np.testing.assert_array_equal(out[:, 2:5, 1:4], img)
    assert (out[:, 0] == -1).all()
    with pytest.raises(ValueError, match="do not fit"):
        pad_to(img, (2, 8))


def test_random_shift(rng):
    img = rng.random((1, 8, 8)) + 1.0
    shift = RandomShift(2, fill=-5.0, seed=0)
    for _ in range(20):
        out = shift(img)
        assert out.shape == img.shape
        # the content is a translated copy: find the offset and check it
        rows = np.where((out[0] != -5.0).any(axis=1))[0]
        cols = np.where((out[0] != -5.0).any(axis=0))[0]
        dy = rows[0] if rows[0] > 0 else rows[-1] - 7
        dx = cols[0] if cols[0] > 0 else cols[-1] - 7
        assert abs(dy) <= 2 and abs(dx) <= 2
        np.testing.assert_array_equal(np.roll(out[0], (-dy, -dx), (0, 1))[max(-dy, 0):8 - max(dy, 0),
                                                                         max(-dx, 0):8 - max(dx, 0)],
                                      img[0][max(-dy, 0):8 - max(dy, 0), max(-dx, 0):8 - max(dx, 0)])
    np.testing.assert_array_equal(RandomShift(2, seed=4)(img), RandomShift(2, seed=4)(img))  # seeded


# ---- digits ----

def test_digits_layout():
    data = load_digits()
    xtr, ytr = data["train"]
    xte, yte = data["test"]
    assert xtr.shape == (1438, 1, 32, 32) and xte.shape == (359, 1, 32, 32)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    assert set(np.unique(yte)) == set(range(10))
    assert np.isclose(xtr.min(), LECUN_BACKGROUND) and np.isclose(xtr.max(), 1.175)
    assert (xtr[:, :, :2] == np.float32(LECUN_BACKGROUND)).all()  # 2-pixel border as for MNIST
    again = load_digits()["test"][1]
    np.testing.assert_array_equal(again, yte)  # the split is fixed


# ---- IDX files ----

def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[type_code]
    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(dtype).tobytes()


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, rng, gz):
    images = rng.integers(0, 256, size=(3, 5, 4)).astype(np.uint8)
    path = str(tmp_path / ("x.idx" + (".gz" if gz else "")))
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(idx_bytes(images))
    np.testing.assert_array_equal(read_idx(path), images)


def test_parse_idx_other_types(rng):
    a = rng.integers(-300, 300, size=(4, 2)).astype(np.int16)
    np.testing.assert_array_equal(parse_idx(idx_bytes(a, 0x0B)), a)
    f = rng.standard_normal(5).astype(np.float32)
    np.testing.assert_array_equal(parse_idx(idx_bytes(f, 0x0D)), f)


def test_idx_errors(tmp_path, rng):
    good = idx_bytes(rng.integers(0, 256, size=(2, 3, 3)).astype(np.uint8))
    with pytest.raises(ValueError, match="not an IDX file"):
        parse_idx(b"\x01\x00" + good[2:], "bad.idx")
    with pytest.raises(ValueError, match="not an IDX file.*empty"):
        parse_idx(b"", "empty.idx")
    with pytest.raises(ValueError, match="unknown IDX type code 0x07"):
        parse_idx(good[:2] + b"\x07" + good[3:])
    with pytest.raises(ValueError, match="truncated IDX header"):
        parse_idx(good[:9], "short.idx")
    with pytest.raises(ValueError, match=r"cut\.idx: IDX file truncated: shape \(2, 3, 3\).*needs 18.*found 17"):
        parse_idx(good[:-1], "cut.idx")
    with pytest.raises(ValueError, match="longer than its header"):
        parse_idx(good + b"\x00")
    path = str(tmp_path / "broken.gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(good)[:-10])  # cut-off gzip stream
    with pytest.raises(ValueError, match="broken.gz: cannot read"):
        read_idx(path)


def write_mnist(root, rng, n_train=6, n_test=4, gz=True):
    os.makedirs(root, exist_ok=True)
    data = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        for stem, array in zip(MNIST_FILES[split], (images, labels)):
            name = os.path.join(root, stem + (".gz" if gz else ""))
            with (gzip.open if gz else open)(name, "wb") as f:
                f.write(idx_bytes(array))
        data[split] = (images, labels)
    return data


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist(tmp_path, rng, gz):
    raw = write_mnist(str(tmp_path), rng, gz=gz)
    data = load_mnist(str(tmp_path), "fashion-mnist")
    for split in ("train", "test"):
        x, y = data[split]
        assert x.shape == (len(raw[split][0]), 1, 32, 32) and x.dtype == np.float32
        np.testing.assert_array_equal(y, raw[split][1])
        np.testing.assert_allclose(x[:, 0, 2:30, 2:30], raw[split][0] / 255.0 * 1.275 - 0.1, rtol=1e-6, atol=1e-6)
        assert (x[:, 0, :2] == np.float32(-0.1)).all()


def test_load_mnist_missing_files(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="does not exist.*train-images-idx3-ubyte.*--data-dir"):
        load_mnist(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(None)
    write_mnist(str(tmp_path), rng)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match=f"missing in {tmp_path}: t10k-labels-idx1-ubyte "):
        load_mnist(str(tmp_path))
    with pytest.raises(ValueError, match="kind must be one of"):
        load_mnist(str(tmp_path), "kmnist")


def test_load_mnist_count_mismatch(tmp_path, rng):
    write_mnist(str(tmp_path), rng, gz=False)
    with open(tmp_path / "train-labels-idx1-ubyte", "wb") as f:
        f.write(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(ValueError, match=r"mnist train: expected images .* got \(6, 28, 28\) and \(5,\)"):
        load_mnist(str(tmp_path))


def test_load_mnist_bad_labels_or_pixel_type(tmp_path, rng):
    """Labels outside 0..9 and images that are not bytes (float IDX) would train on garbage: errors
    naming the file."""
    write_mnist(str(tmp_path), rng, gz=False)
    labels = tmp_path / "train-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(np.array([0, 1, 2, 3, 4, 200], np.uint8)))
    with pytest.raises(ValueError, match=rf"mnist train: {labels} holds labels in \[0, 200\]; the ten classes"):
        load_mnist(str(tmp_path))
    labels.write_bytes(idx_bytes(np.zeros(6, np.uint8)))
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(idx_bytes(rng.random((6, 28, 28)), 0x0D))
    with pytest.raises(ValueError, match=rf"expected unsigned-byte images and integer labels in {images} .* float32"):
        load_mnist(str(tmp_path))


def test_digits_csv_matches_sklearn():
    from sklearn.datasets import load_digits as sklearn_load_digits

    from pyfastdl.data.digits import _sklearn_digits

    images, labels = _sklearn_digits()
    bunch = sklearn_load_digits()
    np.testing.assert_array_equal(images, bunch.images)
    np.testing.assert_array_equal(labels, bunch.target)
