"""`pyfastdl sweep`: train every combination of a grid over a recipe's own options, several seeds each,
and compare them in one table and one picture.

A grid is a list of axes separated by spaces. An axis names one option and its values,
``norm=none,batch,layer``, or names a comparison whose values set several options at once,
``optim=sgd(optimizer=sgd,momentum=0),momentum(optimizer=sgd,momentum=0.9),adam(optimizer=adam)``:
the word before the brackets labels the value in the table and the options inside are passed to
``pyfastdl train``. Option names are the training command's, with ``_`` or ``-`` alike
(``weight_decay``). ``--set`` pins options for every run the same way (``"schedule=constant shift=0"``).

Every run is a ``pyfastdl train`` process of its own with its own folder, ``OUT/<cell>/seed<k>``,
run ``--jobs`` at a time. A run that finishes leaves ``done.json`` there; a rerun of the same sweep
skips those, so an interrupted sweep keeps what it finished and picks up where it stopped.
At the end ``OUT/sweep.md`` and ``sweep.json`` hold one row per cell (mean and standard deviation over
the seeds of the final validation and the test metric, and the seconds per epoch) and the mean of each
value of each axis over the rest of the grid; ``OUT/sweep.png`` overlays the validation curves, one
panel per axis, one line per value of that axis (mean over the other axes and the seeds, with a band
of one standard deviation).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

DONE = "done.json"


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple  # of (label, {option: value}) pairs


def _split_top(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            raise ValueError(f"unbalanced ')' in {text!r}")
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError(f"unbalanced '(' in {text!r}")
    return parts + [text[start:]]


def _option(name: str) -> str:
    return name.strip().replace("-", "_")


def _assignments(text: str, what: str) -> dict:
    """``"a=1,b=x"`` (or separated by spaces) -> {"a": "1", "b": "x"}."""
    out = {}
    for item in (t for part in _split_top(text) for t in part.split()):
        key, eq, value = item.partition("=")
        if not eq or not key or not value:
            raise ValueError(f"sweep: {what}: expected option=value, got {item!r}")
        out[_option(key)] = value
    return out


def parse_grid(text: str) -> list[Axis]:
    """The axes of a grid string (see the module docstring); ValueError naming the faulty part."""
    axes = []
    for token in text.split():
        name, eq, values = token.partition("=")
        if not eq or not name or not values:
            raise ValueError(f"sweep: --grid: each axis is name=value,value,...; got {token!r}")
        alternatives = []
        for alt in _split_top(values):
            if not alt:
                raise ValueError(f"sweep: --grid: empty value in {token!r}")
            if "(" in alt:
                label, _, inner = alt.partition("(")
                if not alt.endswith(")") or not label:
                    raise ValueError(f"sweep: --grid: expected label(option=value,...), got {alt!r}")
                alternatives.append((label, _assignments(inner[:-1], f"--grid value {alt!r}")))
            else:
                alternatives.append((alt, {_option(name): alt}))
        labels = [label for label, _ in alternatives]
        if len(set(labels)) != len(labels):
            raise ValueError(f"sweep: --grid: axis {name!r} repeats a value: {labels}")
        axes.append(Axis(_option(name), tuple(alternatives)))
    if not axes:
        raise ValueError("sweep: --grid is empty")
    if len({a.name for a in axes}) != len(axes):
        raise ValueError(f"sweep: --grid names an axis twice: {[a.name for a in axes]}")
    return axes


def parse_set(text: str | None) -> dict:
    return _assignments(text, "--set") if text else {}


def cells(axes: list[Axis]) -> list[tuple[dict, dict]]:
    """Every combination: (labels {axis: label}, options {option: value}), the first axis slowest."""
    out = []
    for combo in itertools.product(*(a.values for a in axes)):
        labels = {a.name: label for a, (label, _) in zip(axes, combo)}
        options = {}
        for _, opts in combo:
            options.update(opts)
        out.append((labels, options))
    return out


def cell_name(labels: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in labels.items()).replace("/", "_")


def train_argv(model: str, options: dict, seed: int, out: str, threads: int) -> list[str]:
    argv = ["train", model, "--seed", str(seed), "--out", out, "--quiet", "--threads", str(threads)]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", value]
    return argv


def _check_options(model: str, argv: list[str]) -> None:
    """The training command's own parser on ``argv``: a ValueError, not a sweep of failing runs."""
    import contextlib
    import io

    from .command import train_parser

    from .loop import check_arguments
    from .registry import get_recipe

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = train_parser(model).parse_args(argv[1:])
    except SystemExit:
        last = err.getvalue().strip().splitlines()
        raise ValueError(f"sweep: `pyfastdl {' '.join(argv)}` is not a valid training command: "
                         f"{last[-1] if last else 'argument error'}") from None
    for key, value in get_recipe(model).default_hparams(args).items():  # (fit fills these the same way)
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    try:
        check_arguments(args)  # the numbers every run would refuse (--lr nan, --epochs 0, ...)
    except ValueError as e:
        raise ValueError(f"sweep: `pyfastdl {' '.join(argv)}` is not a valid training command: {e}") from None


def _run(argv: list[str], folder: str) -> dict:
    """One training process; its output goes to folder/log.txt. Returns {"ok", "seconds"}."""
    os.makedirs(folder, exist_ok=True)
    start = time.perf_counter()
    with open(os.path.join(folder, "log.txt"), "w") as log:
        rc = subprocess.call([sys.executable, "-m", "pyfastdl", *argv], stdout=log, stderr=subprocess.STDOUT,
                             # PYTHONSAFEPATH: the run imports the pyfastdl this process runs, not a
                             # source folder that happens to be the current directory
                             env=dict(os.environ, OMP_NUM_THREADS=argv[argv.index("--threads") + 1],
                                      PYTHONSAFEPATH="1"))
    seconds = time.perf_counter() - start
    if rc == 0 and os.path.exists(os.path.join(folder, "metrics.json")):
        with open(os.path.join(folder, DONE), "w") as f:
            json.dump({"argv": argv, "seconds": seconds}, f)
    return {"ok": rc == 0, "rc": rc, "seconds": seconds}


def run_sweep(model: str, grid: str, fixed: str | None = None, seeds: int = 3, out: str | None = None,
              jobs: int | None = None, threads: int = 1, log=print) -> dict:
    """Train every cell of ``grid`` with ``seeds`` seeds (0, 1, ...) and write the table and picture.
    Returns the summary written to sweep.json."""
    from .registry import get_recipe

    recipe = get_recipe(model)
    if seeds < 1:
        raise ValueError(f"sweep: --seeds must be at least 1, got {seeds}")
    if threads < 1:
        raise ValueError(f"sweep: --threads must be at least 1, got {threads}")
    jobs = jobs or max(1, (os.cpu_count() or 1) // threads)
    if jobs < 1:
        raise ValueError(f"sweep: --jobs must be at least 1, got {jobs}")
    axes, pinned = parse_grid(grid), parse_set(fixed)
    overlap = {o for a in axes for _, opts in a.values for o in opts} & set(pinned)
    if overlap:
        raise ValueError(f"sweep: {sorted(overlap)} both varied by --grid and pinned by --set")
    out = out or os.path.join("runs", f"sweep-{recipe.name}")
    runs = []
    for labels, options in cells(axes):
        for seed in range(seeds):
            folder = os.path.join(out, cell_name(labels), f"seed{seed}")
            argv = train_argv(model, {**pinned, **options}, seed, folder, threads)
            _check_options(model, argv)
            runs.append((labels, seed, folder, argv))
    todo = [r for r in runs if not os.path.exists(os.path.join(r[2], DONE))]
    log(f"sweep {model}: {len(runs) // seeds} cells x {seeds} seeds = {len(runs)} runs, "
        f"{len(runs) - len(todo)} already done; {jobs} at a time, {threads} thread(s) each; into {out}")
    start = time.perf_counter()
    failed = []

    def work(run):
        labels, seed, folder, argv = run
        result = _run(argv, folder)
        done = len(runs) - len(todo) + work.count + 1
        work.count += 1
        status = "ok" if result["ok"] else f"FAILED (exit {result['rc']}, see {folder}/log.txt)"
        log(f"[{done}/{len(runs)}] {cell_name(labels)} seed {seed}: {status} in {result['seconds']:.0f}s")
        if not result["ok"]:
            failed.append(folder)

    work.count = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(work, todo))
    summary = summarize(recipe.main_metric, axes, runs, out)
    summary.update(model=model, grid=grid, set=fixed or "", seeds=seeds, jobs=jobs, threads=threads,
                   wall_s=time.perf_counter() - start)
    with open(os.path.join(out, "sweep.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(out, "sweep.md"), "w") as f:
        f.write(format_table(summary))
    plot_sweep(summary, os.path.join(out, "sweep.png"))
    log(format_table(summary))
    log(f"wrote {out}/sweep.md, sweep.json, sweep.png")
    if failed:
        raise RuntimeError(f"sweep: {len(failed)} run(s) failed; their logs: " + ", ".join(failed[:5]))
    return summary


def _mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarize(metric: str, axes: list[Axis], runs: list, out: str) -> dict:
    """Per cell: val/test ``metric`` mean and standard deviation over seeds, seconds per epoch, and the
    mean validation curve; per axis value: the mean test metric over the cells having it."""
    by_cell = {}
    for labels, _, folder, _ in runs:
        path = os.path.join(folder, "metrics.json")
        if not os.path.exists(os.path.join(folder, DONE)):
            continue
        with open(path) as f:
            record = json.load(f)
        epochs = record["epochs"]
        by_cell.setdefault(cell_name(labels), {"labels": labels, "records": []})["records"].append({
            "test": record[f"test_{metric}"],
            "val": epochs[-1].get(f"val_{metric}", float("nan")),
            "val_curve": [e.get(f"val_{metric}", float("nan")) for e in epochs],
            "epoch_s": float(np.mean([e["seconds"] for e in epochs])),
        })
    rows = []
    for name, cell in by_cell.items():
        recs = cell["records"]
        test, val = _mean_std([r["test"] for r in recs]), _mean_std([r["val"] for r in recs])
        curves = np.array([r["val_curve"] for r in recs if len(r["val_curve"]) == len(recs[0]["val_curve"])])
        rows.append({"cell": name, "labels": cell["labels"], "seeds": len(recs), "test_mean": test[0],
                     "test_std": test[1], "val_mean": val[0], "val_std": val[1],
                     "epoch_s": float(np.mean([r["epoch_s"] for r in recs])),
                     "val_curves": curves.tolist()})
    marginals = {}
    for axis in axes:
        marginals[axis.name] = {}
        for label, _ in axis.values:
            vals = [r["test_mean"] for r in rows if r["labels"][axis.name] == label]
            if vals:
                marginals[axis.name][label] = float(np.mean(vals))
    return {"metric": metric, "axes": [a.name for a in axes], "rows": rows, "marginals": marginals,
            "runs": len(runs), "finished": sum(r["seeds"] for r in rows)}


def format_table(summary: dict) -> str:
    axes, metric = summary["axes"], summary["metric"]
    lines = [f"| {' | '.join(axes)} | seeds | val {metric} | test {metric} | s/epoch |",
             "|" + "---|" * len(axes) + "---:|---:|---:|---:|"]
    for r in summary["rows"]:
        val, test = (f"{r[k + '_mean']:.4f}" + (f" ± {r[k + '_std']:.4f}" if r["seeds"] > 1 else "")
                     for k in ("val", "test"))
        lines.append(f"| {' | '.join(r['labels'][a] for a in axes)} | {r['seeds']} | {val} | {test} | "
                     f"{r['epoch_s']:.2f} |")
    lines += ["", f"Mean test {metric} of each value over the rest of the grid:", ""]
    for axis, values in summary["marginals"].items():
        lines.append(f"- {axis}: " + ", ".join(f"{label} {v:.4f}" for label, v in values.items()))
    lines.append("")
    lines.append(f"± is the standard deviation over seeds; {summary['finished']} of {summary['runs']} runs finished.")
    return "\n".join(lines) + "\n"


def plot_sweep(summary: dict, path: str) -> None:
    """One panel per axis: the mean validation curve of each of its values, with a band of one
    standard deviation over the other axes' cells and the seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    axes = summary["axes"]
    fig, panels = plt.subplots(1, len(axes), figsize=(4.5 * len(axes), 3.8), squeeze=False)
    for panel, axis in zip(panels[0], axes):
        for label in summary["marginals"][axis]:
            curves = [c for r in summary["rows"] if r["labels"][axis] == label for c in r["val_curves"]]
            n = min(len(c) for c in curves)
            curves = np.array([c[:n] for c in curves], dtype=float)
            mean, std = np.nanmean(curves, axis=0), np.nanstd(curves, axis=0)
            epochs = np.arange(1, n + 1)
            panel.plot(epochs, mean, label=label)
            panel.fill_between(epochs, mean - std, mean + std, alpha=0.2)
        panel.set_title(f"by {axis}")
        panel.set_xlabel("epoch")
        panel.set_ylabel(f"validation {summary['metric']}")
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.grid(True, alpha=0.3)
        panel.legend(fontsize="small")
    fig.suptitle(f"{summary.get('model', '')} sweep: validation {summary['metric']}, mean ± std")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
