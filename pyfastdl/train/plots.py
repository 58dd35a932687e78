"""Training curves as a PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

__all__ = ["plot_history"]


def plot_history(history: list[dict], path: str, title: str = "", metric: str = "accuracy") -> None:
    """Two panels over epochs: train/val loss, and train/val ``metric``. ``history`` is the list of
    per-epoch records the training loop writes (keys ``train_loss``, ``val_loss``, ``train_<metric>``,
    ``val_<metric>``; absent keys are skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, quantity in zip(axes, ["loss", metric]):
        for split in ("train", "val"):
            key = f"{split}_{quantity}"
            if all(key in h for h in history):
                ax.plot(epochs, [h[key] for h in history], marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(quantity)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
