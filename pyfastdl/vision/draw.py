"""Pictures of detections: images with labelled boxes and scores, as a PNG (matplotlib, Agg)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["draw_detections", "save_detection_grid"]


def draw_detections(ax, image, boxes, scores, classes, class_names=(), truth=None) -> None:
    """Show ``image`` (3, H, W) in [0, 1] on the matplotlib axes ``ax`` with the predicted ``boxes``
    (k, 4) x1 y1 x2 y2 in pixels as solid rectangles coloured by class and labelled "name score",
    and, when given, the ``truth`` (boxes (m, 4), classes (m,)) as dashed white rectangles."""
    from matplotlib.patches import Rectangle
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab10")
    ax.imshow(np.clip(np.asarray(image, dtype=np.float32).transpose(1, 2, 0), 0, 1), interpolation="nearest")
    ax.set_axis_off()
    if truth is not None:
        for (x1, y1, x2, y2) in np.asarray(truth[0], dtype=np.float64).reshape(-1, 4):
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor="white",
                                   linestyle="--", linewidth=1))
    for (x1, y1, x2, y2), score, c in zip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), scores, classes):
        colour = colours(int(c) % 10)
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5))
        name = class_names[int(c)] if len(class_names) > int(c) else str(int(c))
        ax.text(x1 - 0.5, y1 - 0.5, f"{name} {float(score):.2f}", color="white", fontsize=7, va="bottom",
                bbox=dict(facecolor=colour, edgecolor="none", pad=1, alpha=0.85))


def save_detection_grid(path: str, images, detections, class_names=(), truths=None, cols: int = 4,
                        title: str = "") -> None:
    """Write a grid of ``images`` (N, 3, H, W) with their ``detections`` (per image: boxes, scores,
    classes) and optional ``truths`` (per image: boxes, classes) to the PNG file ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows + (0.4 if title else 0)), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < n:
            draw_detections(ax, images[k], *detections[k], class_names=class_names,
                            truth=None if truths is None else truths[k])
        else:
            ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
