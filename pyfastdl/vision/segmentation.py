"""Semantic segmentation helpers: the bilinear upsampling kernel, mean IoU, crops and mask pictures.

* :func:`bilinear_kernel` / :func:`init_bilinear_` -- the weights that make a stride-``f``
  ConvTranspose2d with kernel ``2f`` an exact bilinear upsampler (FCN's initialisation, Long et al.
  2015, section 3.3);
* :class:`MeanIoU` -- the training loop metric: a confusion matrix accumulated over an epoch, then
  IoU_c = TP_c / (TP_c + FP_c + FN_c) per class, averaged over the classes that occur (in target or
  prediction), pixels with the ignore label skipped (FCN's Table 1 "mean IU");
* :class:`PixelAccuracy` -- the fraction of labelled pixels classified right;
* :class:`RandomCrop`, :class:`SegmentationDataset` -- joint (image, mask) crops to a fixed size,
  padding with the ignore label, over a dataset of (image, mask) pairs;
* :func:`overlay_masks` / :func:`save_overlay_grid` -- predicted masks blended over the inputs as a PNG;
* :func:`read_image` -- an image file or .npy array as (3, H, W) float32 in [0, 1].
"""

from __future__ import annotations

import numpy as np

from ..train.metrics import Metric

__all__ = ["bilinear_kernel", "init_bilinear_", "confusion_matrix", "iou_per_class", "MeanIoU", "PixelAccuracy",
           "SegmentationDataset", "RandomCrop", "palette", "overlay_masks", "save_overlay_grid", "read_image"]


def bilinear_kernel(kernel_size: int) -> np.ndarray:
    """(k, k) weights of bilinear interpolation for upsampling by f = ceil(k / 2): the outer product
    of the tent 1 - |i - c| / f with centre c = f - 1 (k odd) or f - 1/2 (k even)."""
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    tent = 1 - np.abs(np.arange(kernel_size) - centre) / factor
    return np.outer(tent, tent)


def init_bilinear_(weight) -> None:
    """Fill a ConvTranspose2d weight (C_in, C_out, k, k) in place so that channel c maps to channel c
    by bilinear upsampling and other channel pairs are 0 (C_in == C_out, groups = 1)."""
    c_in, c_out, kh, kw = weight.shape
    if c_in != c_out or kh != kw:
        raise ValueError(f"init_bilinear_: weight must be (C, C, k, k), got {tuple(weight.shape)}")
    values = np.zeros((c_in, c_out, kh, kw))
    values[np.arange(c_in), np.arange(c_out)] = bilinear_kernel(kh)
    from .. import no_grad, tensor

    with no_grad():
        weight.copy_(tensor(values, dtype=weight.dtype, device=weight.device))


def confusion_matrix(prediction: np.ndarray, target: np.ndarray, num_classes: int,
                     ignore_index: int | None = None) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, row = target class, column = predicted class, over
    the pixels whose target is not ``ignore_index``. prediction, target: int arrays of one shape."""
    keep = target != ignore_index if ignore_index is not None else np.ones(target.shape, bool)
    t, p = target[keep].astype(np.int64), prediction[keep].astype(np.int64)
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU of each class from a confusion matrix; NaN for a class absent from target and prediction."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


class MeanIoU(Metric):
    """Mean intersection over union of dense predictions. ``update(output (N, C, H, W) scores,
    target (N, H, W) class ids)``; the number of classes is C; pixels labelled ``ignore_index`` are
    skipped. IoU is averaged over the classes present in the targets or the predictions."""

    def __init__(self, ignore_index: int | None = None):
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.confusion = None

    def update(self, output: np.ndarray, target: np.ndarray) -> None:
        counts = confusion_matrix(output.argmax(axis=1), target, output.shape[1], self.ignore_index)
        self.confusion = counts if self.confusion is None else self.confusion + counts

    def compute(self) -> float:
        if self.confusion is None:
            return float("nan")
        iou = iou_per_class(self.confusion)
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


class PixelAccuracy(Metric):
    """Fraction of pixels (not labelled ``ignore_index``) whose highest-scoring class is the target;
    ``update(output (N, C, H, W), target (N, H, W))``."""

    def __init__(self, ignore_index: int | None = None):
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.correct, self.count = 0, 0

    def update(self, output: np.ndarray, target: np.ndarray) -> None:
        keep = target != self.ignore_index if self.ignore_index is not None else np.ones(target.shape, bool)
        self.correct += int((output.argmax(axis=1) == target)[keep].sum())
        self.count += int(keep.sum())

    def compute(self) -> float:
        return self.correct / self.count if self.count else float("nan")


class SegmentationDataset:
    """(image, mask) samples of ``dataset`` passed through ``crop`` (a :class:`RandomCrop`) and then
    ``image_transform`` on the image (e.g. normalisation)."""

    def __init__(self, dataset, crop, image_transform=None):
        self.dataset, self.crop, self.image_transform = dataset, crop, image_transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        image, mask = self.crop(*self.dataset[i])
        if self.image_transform is not None:
            image = self.image_transform(image)
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)


class RandomCrop:
    """A joint random crop of (image (C, H, W), mask (H, W)) to ``size`` x ``size``; sides shorter than
    ``size`` are padded first (image with ``fill``, mask with ``ignore_index``). With ``random=False``
    the crop is centred (evaluation)."""

    def __init__(self, size: int, ignore_index: int, fill: float = 0.0, seed: int | None = None,
                 random: bool = True):
        self.size, self.ignore_index, self.fill, self.random = size, ignore_index, fill, random
        self.generator = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, mask: np.ndarray):
        s = self.size
        h, w = mask.shape
        ph, pw = max(s - h, 0), max(s - w, 0)
        if ph or pw:
            image = np.pad(image, ((0, 0), (0, ph), (0, pw)), constant_values=self.fill)
            mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=self.ignore_index)
            h, w = mask.shape
        if self.random:
            top, left = self.generator.integers(0, h - s + 1), self.generator.integers(0, w - s + 1)
        else:
            top, left = (h - s) // 2, (w - s) // 2
        return image[:, top:top + s, left:left + s], mask[top:top + s, left:left + s]


def palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) float colours in [0, 1]: class 0 (background) black, then PASCAL VOC's
    bit-interleaved palette."""
    colours = np.zeros((num_classes, 3))
    for c in range(num_classes):
        v, r, g, b = c, 0, 0, 0
        for shift in range(8):
            r |= ((v >> 0) & 1) << (7 - shift)
            g |= ((v >> 1) & 1) << (7 - shift)
            b |= ((v >> 2) & 1) << (7 - shift)
            v >>= 3
        colours[c] = (r, g, b)
    return colours / 255.0


def overlay_masks(images01: np.ndarray, masks: np.ndarray, alpha: float = 0.6,
                  ignore_index: int | None = None) -> np.ndarray:
    """Class colours blended over greyscale copies of the images (so the colours read clearly):
    images (N, 3, H, W) in [0, 1], masks (N, H, W) class ids -> (N, H, W, 3) RGB in [0, 1].
    Background (0) and ``ignore_index`` pixels show the greyscale image alone."""
    masks = np.asarray(masks)
    valid = masks != ignore_index if ignore_index is not None else np.ones(masks.shape, bool)
    n_classes = int(masks[valid].max(initial=0)) + 1
    colours = palette(n_classes)[np.where(valid, masks, 0)]
    grey = np.clip(np.asarray(images01, dtype=np.float64).transpose(0, 2, 3, 1), 0, 1) @ [0.299, 0.587, 0.114]
    grey = np.repeat(grey[..., None], 3, axis=-1)
    blend = (valid & (masks > 0))[..., None]
    return np.where(blend, (1 - alpha) * grey + alpha * colours, grey)


def save_overlay_grid(path: str, images01: np.ndarray, predictions: np.ndarray, targets: np.ndarray | None = None,
                      class_names=(), ignore_index: int | None = None, titles=None) -> None:
    """A PNG grid: one column per image, rows "input", "prediction" (mask over the input) and, when
    ``targets`` is given, "target". images01 (N, 3, H, W) in [0, 1]; predictions, targets (N, H, W)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    images01 = np.clip(np.asarray(images01, dtype=np.float64), 0, 1)
    rows = [("input", images01.transpose(0, 2, 3, 1)), ("prediction", overlay_masks(images01, predictions))]
    if targets is not None:
        rows.append(("target", overlay_masks(images01, targets, ignore_index=ignore_index)))
    n = len(images01)
    width = max(1.8 * n + 0.5, 7.0 if class_names else 0.0)  # room for the legend below
    fig, axes = plt.subplots(len(rows), n, figsize=(width, 1.9 * len(rows)), squeeze=False)
    for r, (label, pictures) in enumerate(rows):
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(pictures[i], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(label)
            if r == 0 and titles is not None:
                ax.set_title(str(titles[i]), fontsize=7)
    if class_names:
        colours = palette(len(class_names))
        fig.legend(handles=[Patch(color=colours[c], label=name) for c, name in enumerate(class_names) if c > 0],
                   loc="lower center", ncol=min(len(class_names), 8), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06 if class_names else 0, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def read_image(path: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image file (PNG/JPEG, read with Pillow) or a .npy array ((3, H, W) or (H, W, 3); values in
    [0, 1], or [0, 255] when larger than 1) -> (3, H, W) float32 in [0, 1], resized bilinearly to
    ``size`` (H', W') when given."""
    if str(path).endswith(".npy"):
        a = np.load(path, allow_pickle=False).astype(np.float32)
        if a.ndim == 3 and a.shape[-1] in (3, 4) and a.shape[0] not in (3, 4):
            a = a[..., :3].transpose(2, 0, 1)
        if a.ndim != 3 or a.shape[0] != 3:
            raise ValueError(f"{path}: expected an RGB image (3, H, W) or (H, W, 3), got shape {a.shape}")
        a = a / 255.0 if a.max() > 1.0 else a
    else:
        from ..data.voc import load_image

        a = load_image(path)
    if size is not None and a.shape[1:] != tuple(size):
        from ..data import resize_bilinear

        a = resize_bilinear(a, size)
    return np.ascontiguousarray(np.clip(a, 0, 1), dtype=np.float32)
