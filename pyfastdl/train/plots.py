"""Training curves: the loss per step (smoothed) and per epoch, and the main metric per epoch."""

from __future__ import annotations

import numpy as np


def smooth(values, window: int) -> np.ndarray:
    """Moving average over ``window`` steps (shorter at the start, so no step is dropped)."""
    values = np.asarray(values, dtype=float)
    csum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (csum[idx] - csum[lo]) / (idx - lo)


def plot_history(history: list[dict], path: str, title: str = "", metric: str = "accuracy") -> None:
    """Two panels: the loss (every training step, faint, and its moving average, with the per-epoch
    train and validation means at the epochs' ends) and ``metric`` per epoch. ``history`` is the
    list of per-epoch records the training loop writes (``train_loss``, ``val_loss``,
    ``train_<metric>``, ``val_<metric>``, ``train_step_losses``; absent keys are skipped). The x axis
    counts epochs, with a tick at each whole one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    steps = [h.get("train_step_losses") for h in history]
    if history and all(steps):
        x = np.concatenate([e - 1 + np.arange(1, len(s) + 1) / len(s) for e, s in zip(epochs, steps)])
        y = np.concatenate(steps)
        axes[0].plot(x, y, color="tab:blue", alpha=0.25, linewidth=0.8, label="train (each step)")
        axes[0].plot(x, smooth(y, max(1, len(y) // 50)), color="tab:blue", label="train (moving average)")
    for ax, quantity in zip(axes, ["loss", metric]):
        for split, color in (("train", "tab:blue"), ("val", "tab:orange")):
            key = f"{split}_{quantity}"
            if history and all(key in h for h in history):
                ax.plot(epochs, [h[key] for h in history], marker="o", color=color,
                        linestyle="none" if quantity == "loss" and split == "train" and all(steps) else "-",
                        label=f"{split} (epoch mean)" if quantity == "loss" else split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(quantity)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
