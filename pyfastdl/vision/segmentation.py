"""Semantic segmentation helpers: the bilinear upsampling kernel and mask pictures (the task's recipe,
metrics and crops are in :mod:`pyfastdl.tasks.segmentation`).

* :func:`bilinear_kernel` / :func:`init_bilinear_` -- the weights that make a stride-``f``
  ConvTranspose2d with kernel ``2f`` an exact bilinear upsampler (FCN's initialisation, Long et al.
  2015, section 3.3);
* :func:`overlay_masks` / :func:`save_overlay_grid` -- predicted masks blended over the inputs as a PNG.
"""

from __future__ import annotations

import numpy as np

from ..autograd import no_grad
from ..creation import tensor

__all__ = ["bilinear_kernel", "init_bilinear_", "palette", "overlay_masks", "save_overlay_grid"]


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
    with no_grad():
        weight.copy_(tensor(values, dtype=weight.dtype, device=weight.device))


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
