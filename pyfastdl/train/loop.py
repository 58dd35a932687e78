"""The training loop every model shares.

``fit(recipe, args)`` builds the recipe's model and data, trains for ``args.epochs`` with the chosen
optimizer and learning-rate schedule, validates after every epoch, tests at the end and writes the
run's record into ``args.out``: ``metrics.json``, ``curves.png`` and ``checkpoint.safetensors``.
Nothing in here knows what the model is; the recipe (:mod:`pyfastdl.train.recipe`) says.

On the CPU a run is deterministic for a given ``--seed``: the seed fixes parameter initialisation
(``pyfastdl.manual_seed``), the shuffling order and the augmentation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time

import numpy as np

from .. import backend
from ..checkpoint import load_checkpoint, read_metadata, save_checkpoint
from ..data import DataLoader, Subset
from .metrics import Mean
from .plots import plot_history

__all__ = ["fit", "run_epoch", "evaluate", "evaluate_checkpoint", "predict_batch", "predict_checkpoint",
           "resolve_device", "build_optimizer", "build_scheduler", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle", "inverse_sqrt")

CHECKPOINT_NAME = "checkpoint.safetensors"
METRICS_NAME = "metrics.json"
PLOT_NAME = "curves.png"


def resolve_device(name: str) -> str:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda where a device and CUDA kernels are present)."""
    if name == "auto":
        return "cuda" if backend.cuda_is_available() else "cpu"
    if name == "cuda" and not backend.cuda_is_available():
        raise RuntimeError(f"--device cuda: no usable GPU ({backend.cuda_unavailable_reason()})")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or auto, got {name!r}")
    return name


def to_device(value, device: str):
    """numpy arrays inside a batch (tuples, lists, dicts) -> pyfastdl Tensors on ``device``."""
    from .. import tensor

    if isinstance(value, np.ndarray):
        return tensor(value, device=device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(v, device) for v in value)
    return value


def build_optimizer(name: str, params, lr: float, weight_decay: float, momentum: float):
    """``sgd`` (with Nesterov momentum when ``momentum`` > 0), ``adam`` or ``adamw``."""
    from .. import optim

    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def one_cycle(total_steps: int, warmup: float = 0.15, start: float = 0.04):
    """The one-cycle learning-rate factor (Smith & Topin 2019) as a function of the step: linear
    warm-up from ``start`` to 1 over the first ``warmup`` fraction of the run, then cosine decay to 0."""
    warmup_steps = max(1, int(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return start + (1.0 - start) * step / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))

    return factor


def build_scheduler(name: str, optimizer, total_steps: int, warmup_steps: int | None = None):
    """A learning-rate schedule stepped once per batch: ``constant``; ``cosine`` (decay to 0 over
    the run); ``onecycle`` (see :func:`one_cycle`); ``inverse_sqrt`` (the Transformer's linear
    warm-up over ``warmup_steps`` (default: 10% of the run) to the peak rate, then decay as
    1/sqrt(step); see :class:`pyfastdl.optim.lr_scheduler.InverseSqrtLR`)."""
    from ..optim import lr_scheduler

    if name == "constant":
        return None
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if name == "onecycle":
        return lr_scheduler.LambdaLR(optimizer, one_cycle(total_steps))
    if name == "inverse_sqrt":
        return lr_scheduler.InverseSqrtLR(optimizer, warmup_steps or max(1, total_steps // 10))
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {name!r}")


def run_epoch(recipe, model, loader, device: str, optimizer=None, scheduler=None, progress=None) -> dict:
    """One pass over ``loader``: trains when ``optimizer`` is given, else evaluates without a graph.
    Returns ``{"loss": mean loss, <metric>: value, ..., "samples_per_s": throughput}``.
    ``progress`` is a tqdm bar to advance (its postfix shows the running loss and samples/s)."""
    from .. import no_grad

    training = optimizer is not None
    model.train(training)
    loss_mean, metrics = Mean(), recipe.metrics()
    seen, start, step_losses = 0, time.perf_counter(), []
    for batch in loader:
        inputs, target = recipe.split_batch(batch)
        n = len(target)
        with contextlib.nullcontext() if training else no_grad():
            output = model(*to_device(inputs, device))
            loss = recipe.loss_fn(output, to_device(target, device))
        if training:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        step_loss = loss.item()
        loss_mean.update(step_loss, n)
        if training:
            step_losses.append(step_loss)
        output_np = output.detach().cpu().numpy()
        for metric in metrics.values():
            metric.update(output_np, target)
        seen += n
        if progress is not None:
            progress.update(1)
            rate = seen / (time.perf_counter() - start)
            progress.set_postfix(loss=f"{loss_mean.compute():.4f}", samples_s=f"{rate:.0f}")
    result = {"loss": loss_mean.compute()}
    result.update({name: metric.compute() for name, metric in metrics.items()})
    result["samples_per_s"] = seen / max(time.perf_counter() - start, 1e-9)
    if training:
        result["step_losses"] = step_losses
    return result


def evaluate(recipe, model, dataset, device: str, batch_size: int, args: argparse.Namespace | None = None) -> dict:
    """Loss and metrics of ``model`` (in eval mode, no graph) over ``dataset``, in order, plus the
    recipe's whole-model metrics (:meth:`Recipe.evaluate_model`, e.g. decoding accuracy)."""
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=recipe.collate_fn)
    result = run_epoch(recipe, model, loader, device)
    result.update(recipe.evaluate_model(model, dataset, device, batch_size, args))
    return result


def _limit(dataset, limit):
    return dataset if not limit or len(dataset) <= limit else Subset(dataset, np.arange(limit))


def _json_args(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items()
            if k != "func" and (v is None or isinstance(v, (bool, int, float, str)))}


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    # on a terminal only: sent to a file (CI, nohup, a cluster job) every redraw would be a line of the
    # log, which gets the one plain line per epoch that the loop prints anyway
    return tqdm(total=total, desc=desc, unit="batch", leave=False, disable=not (enabled and sys.stderr.isatty()),
                dynamic_ncols=True)


@contextlib.contextmanager
def kernel_threads(n: int | None):
    """Run the block with ``n`` CPU threads (``None``: unchanged) for the kernels, OpenBLAS and numpy's
    own BLAS (see :func:`pyfastdl.backend.set_num_threads`), then restore the previous count."""
    previous = backend.get_num_threads()
    if n:
        backend.set_num_threads(n)
    try:
        yield
    finally:
        backend.set_num_threads(previous)


def fit(recipe, args: argparse.Namespace, progress: bool = True, log=print) -> dict:
    """Train ``recipe``'s model as ``args`` says (see ``pyfastdl train <model> --help``) and write
    metrics.json, curves.png and checkpoint.safetensors into ``args.out``. Returns the metrics record.
    ``args.threads`` (if set) is the kernels' CPU thread count for the run; the previous one is restored."""
    with kernel_threads(getattr(args, "threads", None)):
        return _fit(recipe, args, progress, log)


def _fit(recipe, args, progress, log) -> dict:
    import pyfastdl

    wall_start = time.perf_counter()
    device = resolve_device(args.device)
    pyfastdl.manual_seed(args.seed)
    splits = {name: _limit(ds, args.limit) for name, ds in recipe.datasets(args).items() if ds is not None}
    train_loader = DataLoader(splits["train"], batch_size=args.batch_size, shuffle=True, drop_last=True,
                              seed=args.seed, collate_fn=recipe.collate_fn)
    if len(train_loader) == 0:
        raise ValueError(f"the training set ({len(splits['train'])} samples) is smaller than one batch "
                         f"of {args.batch_size}")
    model = recipe.build_model(args).to(device)
    optimizer = build_optimizer(args.optimizer, model.parameters(), args.lr, args.weight_decay, args.momentum)
    scheduler = build_scheduler(args.schedule, optimizer, args.epochs * len(train_loader),
                                getattr(args, "warmup_steps", None))
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    log(f"{recipe.name}: {n_params:,} parameters on {device}; train {len(splits['train'])}, "
        f"val {len(splits['val']) if 'val' in splits else 0}, test {len(splits['test'])} samples; "
        f"{args.optimizer} lr {args.lr} wd {args.weight_decay} {args.schedule}, "
        f"{args.epochs} epochs of {len(train_loader)} batches of {args.batch_size}; "
        f"{backend.get_num_threads()} CPU thread(s)")

    history, metric = [], recipe.main_metric
    for epoch in range(1, args.epochs + 1):
        epoch_start = time.perf_counter()
        with _progress_bar(len(train_loader), f"epoch {epoch}/{args.epochs}", progress) as bar:
            train = run_epoch(recipe, model, train_loader, device, optimizer, scheduler, bar)
        record = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
        record.update({f"train_{k}": v for k, v in train.items()})  # train_step_losses: one per batch
        if "val" in splits:
            val = evaluate(recipe, model, splits["val"], device, args.batch_size, args)
            record.update({f"val_{k}": v for k, v in val.items() if k != "samples_per_s"})
        record["seconds"] = time.perf_counter() - epoch_start
        history.append(record)
        log(f"epoch {epoch:3d}  train loss {train['loss']:.4f}"
            + (f" {metric} {train[metric]:.4f}" if metric in train else "")
            + (f"  val loss {record['val_loss']:.4f} {metric} {record['val_' + metric]:.4f}" if "val" in splits else "")
            + f"  {train['samples_per_s']:.0f} samples/s  {record['seconds']:.1f}s")

    test = evaluate(recipe, model, splits["test"], device, args.batch_size, args)
    wall = time.perf_counter() - wall_start
    log(f"test loss {test['loss']:.4f} {metric} {test[metric]:.4f}; wall time {wall:.1f}s")

    os.makedirs(args.out, exist_ok=True)
    record = {
        "model": recipe.name,
        "device": device,
        "device_name": _device_name(device),
        "parameters": n_params,
        "hyperparameters": _json_args(args),
        "epochs": history,
        "test": {k: v for k, v in test.items() if k != "samples_per_s"},
        f"test_{metric}": test[metric],
        "wall_time_s": wall,
        "pyfastdl_version": pyfastdl.__version__,
        "threads": backend.get_num_threads(),
    }
    with open(os.path.join(args.out, METRICS_NAME), "w") as f:
        json.dump(record, f, indent=2)
    plot_history(history, os.path.join(args.out, PLOT_NAME), title=f"{recipe.name} on {_dataset_name(args)}",
                 metric=metric)
    save_checkpoint(os.path.join(args.out, CHECKPOINT_NAME), model, optimizer,
                    metadata={"recipe": recipe.name, "args": _json_args(args), "test": record["test"],
                              **recipe.checkpoint_metadata(args)})
    recipe.after_fit(model, splits, args, device)
    return record


def _dataset_name(args) -> str:
    return getattr(args, "dataset", None) or "its dataset"


def _device_name(device: str) -> str:
    if device == "cuda":
        cp = backend.cupy_or_none()
        name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
        return name.decode() if isinstance(name, bytes) else name
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]} ({len(names)} logical CPUs)"
    except (OSError, IndexError):
        return platform.processor() or platform.machine()


def _restore(path: str, overrides: dict):
    """Rebuild the recipe, arguments and model saved in checkpoint ``path``."""
    from .recipe import get_recipe

    saved = read_metadata(path)
    recipe = get_recipe(saved["recipe"])
    args = argparse.Namespace(**saved["args"])
    for key, value in overrides.items():
        if value is not None:
            setattr(args, key, value)
    recipe.restore_metadata(args, saved)
    args.device = resolve_device(args.device)
    model = recipe.build_model(args)
    load_checkpoint(path, model)
    return recipe, args, model.to(args.device)


def evaluate_checkpoint(path: str, split: str = "test", device: str = "auto", data_dir: str | None = None,
                        batch_size: int | None = None) -> dict:
    """Loss and metrics of the model saved at ``path`` on one split of its recipe's dataset."""
    recipe, args, model = _restore(path, {"device": device, "data_dir": data_dir, "batch_size": batch_size})
    datasets = recipe.datasets(args)
    if datasets.get(split) is None:
        raise ValueError(f"split must be one of {[k for k, v in datasets.items() if v is not None]}, got {split!r}")
    with kernel_threads(getattr(args, "threads", None)):
        result = evaluate(recipe, model, datasets[split], args.device, args.batch_size, args)
    return {"model": recipe.name, "split": split, "samples": len(datasets[split]), **result}


def predict_batch(model, x: np.ndarray, device: str) -> np.ndarray:
    """``model``'s output (numpy) for the input batch ``x``, in eval mode and without a graph."""
    from .. import no_grad

    model.eval()
    with no_grad():
        return model(to_device(x, device)).detach().cpu().numpy()


def predict_checkpoint(path: str, inputs: list[str] | None = None, count: int = 10, device: str = "auto",
                       data_dir: str | None = None, out_dir: str | None = None) -> list[dict]:
    """Predictions of the model saved at ``path``: for the files in ``inputs`` (read by the
    recipe's ``load_inputs``), or else for the first ``count`` test samples (with their labels).
    Pictures a recipe draws of them go to ``out_dir`` (default: the checkpoint's directory)."""
    recipe, args, model = _restore(path, {"device": device, "data_dir": data_dir})
    if inputs:
        x, names, targets = recipe.load_inputs(inputs, args), list(inputs), [None] * len(inputs)
    else:
        test = recipe.datasets(args)["test"]
        batch = DataLoader(test, batch_size=min(count, len(test)), collate_fn=recipe.collate_fn)
        (x,), target = recipe.split_batch(next(iter(batch)))
        names, targets = [f"test[{i}]" for i in range(len(target))], list(target)
    with kernel_threads(getattr(args, "threads", None)):
        output = predict_batch(model, x, args.device)
    out_dir = out_dir or os.path.dirname(os.path.abspath(path))
    return recipe.prediction_rows(x, output, names, targets, args, out_dir)
