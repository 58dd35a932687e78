"""Image preprocessing and augmentation in numpy (no image library needed).

Images are float arrays shaped (..., H, W); a batch of single-channel images is (N, 1, H, W).
"""

from __future__ import annotations

import numpy as np

__all__ = ["resize_bilinear", "pad_to", "lecun_scale", "LECUN_BACKGROUND", "RandomShift"]

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


class RandomShift:
    """Augmentation: translate one image (..., H, W) by a random whole number of pixels in
    [-max_shift, max_shift] along each axis, filling the uncovered border with ``fill``.
    The offsets come from a numpy Generator seeded with ``seed`` (reproducible runs)."""

    def __init__(self, max_shift: int, fill: float = 0.0, seed: int | None = None):
        self.max_shift = int(max_shift)
        self.fill = fill
        self.generator = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        dy, dx = self.generator.integers(-self.max_shift, self.max_shift + 1, size=2)
        h, w = image.shape[-2:]
        out = np.full_like(image, self.fill)
        out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            image[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        return out
