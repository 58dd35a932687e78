"""Image preprocessing in numpy (no image library needed); the augmentations are in each task's module
(:mod:`pyfastdl.tasks`).

Images are float arrays shaped (..., H, W); a batch of single-channel images is (N, 1, H, W).
"""

from __future__ import annotations

import numpy as np

from .voc import load_image

__all__ = ["resize_bilinear", "pad_to", "lecun_scale", "LECUN_BACKGROUND", "read_image", "load_npy"]

#: Background value after :func:`lecun_scale` (LeCun et al. 1998, sec. II-A: white -0.1, black 1.175).
LECUN_BACKGROUND = -0.1


def _interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of 1-D linear interpolation with pixel centres aligned
    (torch's ``align_corners=False``): output pixel o samples the input at (o + 0.5) * n_in / n_out - 0.5."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def resize_bilinear(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of ``images`` (..., H, W) to ``size`` = (H', W') by bilinear
    interpolation. Bilinear interpolation is separable: out = Rh @ image @ Rw^T."""
    rh = _interpolation_matrix(images.shape[-2], size[0])
    rw = _interpolation_matrix(images.shape[-1], size[1])
    return (rh @ images @ rw.T).astype(images.dtype, copy=False)


def pad_to(images: np.ndarray, size: tuple[int, int], value: float = 0.0) -> np.ndarray:
    """Centre ``images`` (..., H, W) in a (..., H', W') field filled with ``value``."""
    h, w = images.shape[-2:]
    top, left = (size[0] - h) // 2, (size[1] - w) // 2
    if top < 0 or left < 0:
        raise ValueError(f"pad_to: images of size {(h, w)} do not fit in {tuple(size)}")
    out = np.full(images.shape[:-2] + tuple(size), value, dtype=images.dtype)
    out[..., top:top + h, left:left + w] = images
    return out


def lecun_scale(images01: np.ndarray) -> np.ndarray:
    """Map intensities in [0, 1] (0 = background) to [-0.1, 1.175], the paper's input range, which
    makes the mean roughly 0 and the variance roughly 1 over MNIST."""
    return (images01 * 1.275 + LECUN_BACKGROUND).astype(np.float32)


def load_npy(path: str, dtype=np.float32) -> np.ndarray:
    """A numeric .npy file as ``dtype`` (no pickles): a ValueError naming the file for anything else
    (strings, objects, a file that is not .npy)."""
    try:
        a = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{path}: not a numeric .npy array ({e})") from None
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "fiub":
        raise ValueError(f"{path}: expected a numeric array, got {getattr(a, 'dtype', type(a).__name__)}")
    return a.astype(dtype)


def read_image(path: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image file (PNG/JPEG, read with Pillow) or a .npy array ((3, H, W) or (H, W, 3); values in
    [0, 1], or [0, 255] when larger than 1) -> (3, H, W) float32 in [0, 1], resized bilinearly to
    ``size`` (H', W') when given."""
    if str(path).endswith(".npy"):
        a = load_npy(path)
        if a.ndim == 3 and a.shape[-1] in (3, 4) and a.shape[0] not in (3, 4):
            a = a[..., :3].transpose(2, 0, 1)
        if a.ndim != 3 or a.shape[0] != 3:
            raise ValueError(f"{path}: expected an RGB image (3, H, W) or (H, W, 3), got shape {a.shape}")
        a = a / 255.0 if a.max() > 1.0 else a
    else:
        a = load_image(path)
    if size is not None and a.shape[1:] != tuple(size):
        a = resize_bilinear(a, size)
    return np.ascontiguousarray(np.clip(a, 0, 1), dtype=np.float32)
