"""Training curves and progress output as people read them: per-step (smoothed) losses with whole
epoch ticks, and no progress-bar redraws in a log."""

import numpy as np

from pyfastdl.train.plots import plot_history, smooth


def test_smooth_is_a_moving_average_that_keeps_every_step():
    y = np.arange(10.0)
    s = smooth(y, 3)
    assert len(s) == 10 and s[0] == 0 and s[1] == 0.5 and s[-1] == 8.0


def test_plot_with_step_losses(tmp_path, rng):
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "train_accuracy": 0.5, "val_accuracy": 0.6,
                "train_step_losses": list(rng.random(37))} for e in (1, 2, 3)]
    plot_history(history, str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 0
    plot_history([{k: v for k, v in h.items() if k != "train_step_losses"} for h in history], str(tmp_path / "d.png"))
    assert (tmp_path / "d.png").stat().st_size > 0


def test_training_into_a_log_has_no_progress_bar_redraws(tmp_path):
    import subprocess
    import sys

    log = tmp_path / "log.txt"
    with open(log, "w") as f:  # stdout and stderr into a file, as under nohup or a cluster job
        subprocess.run([sys.executable, "-m", "pyfastdl", "train", "lenet", "--epochs", "2", "--limit", "128",
                        "--out", str(tmp_path / "run")], stdout=f, stderr=subprocess.STDOUT, check=True)
    text = log.read_text()
    assert "\r" not in text and "batch/s" not in text
    assert sum(line.startswith("epoch ") for line in text.splitlines()) == 2
    metrics = __import__("json").loads((tmp_path / "run" / "metrics.json").read_text())
    steps = metrics["epochs"][0]["train_step_losses"]
    assert len(steps) == 4 and all(np.isfinite(steps))  # 128 samples in batches of 32, the last one dropped
