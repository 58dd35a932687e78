"""The training loop every model shares.

``fit(recipe, args)`` builds the recipe's model and data, trains for ``args.epochs`` with the chosen
optimizer and learning-rate schedule, validates after every epoch, tests at the end and writes the
run's record into ``args.out``: ``metrics.json``, ``curves.png`` and ``checkpoint.safetensors``.
Nothing in here knows what the model is; the recipe (:mod:`pyfastdl.train.recipe`) says.

On the CPU a run is deterministic for a given ``--seed``: the seed fixes parameter initialisation
(``pyfastdl.manual_seed``), the shuffling order and the augmentation (it also seeds Python's and
numpy's global generators, for code that draws from them).

Runs survive interruption. The checkpoint is saved at the end of every epoch and, when SIGINT
(Ctrl-C) or SIGTERM arrives, at the next step boundary (the run then raises
:class:`~pyfastdl.train.resume.TrainingInterrupted`). Besides the model and the optimizer it keeps
a ``training`` state: the epoch in progress and the global step, the data loader's place in the
epoch, the schedule, the epoch's running loss and metrics, the history and every random stream
(:mod:`pyfastdl.train.resume`). ``args.resume`` (``pyfastdl train MODEL --resume DIR``) continues
from it to the same final weights, bit for bit, as the uninterrupted run on the same machine and
thread count. A NaN or infinite training loss stops the run before the weights change
(:class:`~pyfastdl.train.resume.NonFiniteLossError`), leaving the last good checkpoint in place.
Arguments are checked (:func:`check_arguments`) before anything is built or written.

Data parallel: started by an MPI launcher (``mpiexec -n N pyfastdl train MODEL ...``, detected
from its environment variables, or with ``--distributed``), the loop joins a process group
(:mod:`pyfastdl.distributed`), converts batch norms to :class:`pyfastdl.nn.SyncBatchNorm` and wraps
the model in :class:`pyfastdl.nn.parallel.DistributedDataParallel`. ``--batch-size`` stays the
global batch: every rank draws the same shuffled batch (same seed), loads all of it (so that each
sample gets the augmentation it would get in one process) and collates its 1/N share
(:func:`rank_share`), so N ranks
train as one process would, to rounding. Validation and test split the data over the ranks and
merge the metrics; only rank 0 prints, writes files and checkpoints. Each rank runs
cores / (ranks on the machine) kernel threads unless ``--threads`` says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import numbers
import os
import platform
import random
import sys
import time

import numpy as np

from .. import backend
from .. import distributed as dist
from ..checkpoint import load_checkpoint, read_metadata, read_training_state, save_checkpoint
from ..data import DataLoader, Subset, default_collate
from .metrics import Mean, StepLosses
from .options import VOCABULARY, upgrade_args
from .plots import plot_history
from .registry import get_recipe, list_recipe_names
from .resume import NonFiniteLossError, StopOnSignal, TrainingInterrupted, random_state, set_random_state

__all__ = ["fit", "run_epoch", "evaluate", "evaluate_checkpoint", "predict_batch", "predict_checkpoint",
           "resolve_device", "build_optimizer", "build_scheduler", "check_arguments", "resume_arguments",
           "checkpoint_path", "run_metadata", "OPTIMIZERS", "SCHEDULES", "RESUME_MAY_CHANGE"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle", "inverse_sqrt")

CHECKPOINT_NAME = "checkpoint.safetensors"
METRICS_NAME = "metrics.json"
PLOT_NAME = "curves.png"

#: The options a resumed run may set anew: where it writes and how it runs, not what it computes.
RESUME_MAY_CHANGE = ("out", "device", "threads", "quiet", "distributed", "resume")


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


def epoch_totals(recipe, training: bool = True) -> dict:
    """Fresh accumulators of one epoch: ``{"loss": Mean(), <metric name>: Metric, ...}``, and for a
    training epoch ``"step_losses"``: every step's loss, in order (the per-step curve)."""
    totals = {"loss": Mean(), **recipe.metrics()}
    if training:
        totals["step_losses"] = StepLosses()
    return totals


def run_epoch(recipe, model, loader, device: str, optimizer=None, scheduler=None, progress=None, totals=None,
              after_step=None) -> dict:
    """One pass over ``loader``: trains when ``optimizer`` is given, else evaluates without a graph.
    Returns ``{"loss": mean loss, <metric>: value, ..., "samples_per_s": throughput}``.
    ``progress`` is a tqdm bar to advance (its postfix shows the running loss and samples/s).
    ``totals``: the epoch's accumulators (:func:`epoch_totals`) to update in place, e.g. those of a
    resumed epoch (fresh ones by default); ``after_step()`` is called after every batch (the step
    boundary). A NaN or infinite training loss raises :class:`NonFiniteLossError` before the
    weights are updated. Under a process group of several ranks each rank passes its own share of
    the data and the result is over all of them."""
    from .. import no_grad

    training = optimizer is not None
    model.train(training)
    totals = epoch_totals(recipe, training) if totals is None else totals
    seen, start = 0, time.perf_counter()
    for batch in loader:
        inputs, target = recipe.split_batch(batch)
        n = len(target)
        with contextlib.nullcontext() if training else no_grad():
            output = model(*to_device(inputs, device))
            loss = recipe.loss_fn(output, to_device(target, device))
        value = loss.item()
        if training:
            if not math.isfinite(value):
                raise NonFiniteLossError(f"the training loss is {value}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            totals["step_losses"].update(value)
        output_np = output.detach().cpu().numpy()
        totals["loss"].update(value, n)
        for name, metric in totals.items():
            if name not in ("loss", "step_losses"):
                metric.update(output_np, target)
        seen += n
        if progress is not None:
            progress.update(1)
            rate = seen / (time.perf_counter() - start)
            progress.set_postfix(loss=f"{totals['loss'].compute():.4f}", samples_s=f"{rate:.0f}")
        if after_step is not None:
            after_step()
    elapsed = max(time.perf_counter() - start, 1e-9)
    if dist.get_world_size() > 1:  # each rank saw its own share: merge them
        seen = _merge_over_ranks(totals, seen)
    result = {name: metric.compute() for name, metric in totals.items()}
    result["samples_per_s"] = seen / elapsed
    return result


def _merge_over_ranks(metrics: dict, seen: int) -> int:
    """Merge every rank's metric states into each rank's metrics; returns the samples seen by all."""
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, ({name: m.state() for name, m in metrics.items()}, seen))
    for name, metric in metrics.items():
        if isinstance(metric, StepLosses):  # each rank's own
            continue
        metric.reset()
        for state, _ in states:
            metric.merge(state[name])
    return sum(n for _, n in states)


def evaluate(recipe, model, dataset, device: str, batch_size: int, args: argparse.Namespace | None = None) -> dict:
    """Loss and metrics of ``model`` (in eval mode, no graph) over ``dataset``, in order, plus the
    recipe's whole-model metrics (:meth:`Recipe.evaluate_model`, e.g. decoding accuracy). Under a
    process group each rank evaluates every N-th sample and the metrics are merged; the whole-model
    metrics are computed by rank 0 and broadcast."""
    rank, world = dist.get_rank(), dist.get_world_size()
    shard = dataset if world == 1 else Subset(dataset, np.arange(rank, len(dataset), world))
    loader = DataLoader(shard, batch_size=max(1, batch_size // world), collate_fn=recipe.collate_fn)
    result = run_epoch(recipe, model, loader, device)
    extra = [recipe.evaluate_model(model, dataset, device, batch_size, args) if rank == 0 else None]
    if world > 1:
        dist.broadcast_object_list(extra)
    result.update(extra[0])
    return result


def rank_share(collate_fn, rank: int, world: int, batch_size: int):
    """A collate function for data parallel training: handed a whole global batch of samples (every
    rank loads all of them, so that the augmentation draws are those of a one-process run), it
    collates rank ``rank``'s contiguous 1/world of them with ``collate_fn``."""
    if batch_size % world:
        raise ValueError(f"the batch size {batch_size} is the global batch and must divide evenly over the "
                         f"{world} ranks")
    share = batch_size // world

    def collate(samples):
        return collate_fn(samples[rank * share:(rank + 1) * share])

    return collate


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


def fit(recipe, args: argparse.Namespace, progress: bool = True, log=print, on_step=None) -> dict:
    """Train ``recipe``'s model as ``args`` says (see ``pyfastdl train <model> --help``) and write
    metrics.json, curves.png and checkpoint.safetensors into ``args.out``. Returns the metrics record.
    ``args.threads`` (if set) is the kernels' CPU thread count for the run; the previous one is restored.
    ``args.resume`` (a run directory or checkpoint; see :func:`resume_arguments`) continues an
    interrupted run. ``on_step(step)`` is called after every optimizer step with the global step
    number (from 1), before the loop looks for a stop request (tests send signals from it).
    Raises :class:`TrainingInterrupted` after saving a checkpoint when SIGINT or SIGTERM arrives,
    :class:`NonFiniteLossError` when the loss is NaN or infinite.
    Under an MPI launcher (or with ``args.distributed``) the run is data parallel (see the module notes)."""
    check_arguments(args)
    world = _join_process_group(args)
    threads = getattr(args, "threads", None)
    if threads is None and world > 1:
        threads = max(1, (os.cpu_count() or 1) // dist.local_world_size())
    rank0 = dist.get_rank() == 0
    with kernel_threads(threads), StopOnSignal() as stop:
        return _fit(recipe, args, progress and rank0, log if rank0 else _silent, on_step, stop)


def _silent(*args, **kwargs):
    pass


def _join_process_group(args) -> int:
    """Join the ranks the MPI launcher started (or those of ``--distributed``); the world size."""
    if (getattr(args, "distributed", False) or dist.launched_by_mpi()) and not dist.is_initialized():
        dist.init_process_group("nccl" if resolve_device(args.device) == "cuda" else "mpi")
    return dist.get_world_size()


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_whole(what: str, value, low: int = 1) -> None:
    """A ValueError naming ``what`` (an option) unless ``value`` is a whole number >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{what} must be a whole number >= {low}, got {value!r}")


def check_arguments(args: argparse.Namespace) -> None:
    """Raise ValueError naming the option for numbers a run cannot use: epochs and batch size must
    be positive whole numbers (so are threads, limit, warm-up steps, window stride, beam and the shared
    sizes -- hidden, layers, heads, seq-len, image-size, ... -- where set; the seed, the augmentation
    shift and the held-out sizes are >= 0); heads divide d-model; the validation and test fractions lie
    in [0, 1), dropout and label smoothing in [0, 1]; the learning rate, weight decay and momentum are
    finite and >= 0; and every other floating-point option is finite."""
    for name in ("epochs", "batch_size"):
        check_whole(_flag(name), getattr(args, name, None))
    lows = [(name, option.least) for name, option in VOCABULARY.items() if option.least is not None]
    for name, low in (("threads", 1), ("limit", 1), ("warmup_steps", 1), ("seed", 0), ("shift", 0), ("stride", 1),
                      ("beam", 1), ("min_freq", 0), *lows):
        if getattr(args, name, None) is not None:
            check_whole(_flag(name), getattr(args, name), low)
    heads, width = getattr(args, "heads", None), getattr(args, "d_model", None)
    if heads and width and width % heads:
        raise ValueError(f"--heads {heads} must divide --d-model {width} (each head takes d_model / heads)")
    for name in ("lr", "weight_decay", "momentum"):
        value = getattr(args, name, None)
        if value is None and name != "lr":
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < math.inf:
            raise ValueError(f"{_flag(name)} must be a finite number >= 0, got {value!r}")
    for name in ("val_fraction", "test_fraction"):  # a share of the data held out: some must be left
        fraction = getattr(args, name, None)
        if fraction is not None and not 0.0 <= fraction < 1.0:
            raise ValueError(f"{_flag(name)} must be in [0, 1), got {fraction!r}")
    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{_flag(name)} must be a finite number, got {value!r}")
    for name in ("dropout", "label_smoothing"):  # probabilities
        value = getattr(args, name, None)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"{_flag(name)} must be in [0, 1], got {value!r}")


def run_metadata(path: str) -> dict:
    """The metadata of a checkpoint written by :func:`fit`: a clear error naming the file where
    the recipe's name or the run's options (``args``) are missing."""
    metadata = read_metadata(path)
    for key, kind in (("recipe", str), ("args", dict)):
        if not isinstance(metadata.get(key), kind):
            raise ValueError(f"{path}: checkpoint metadata has no {key!r} ({kind.__name__}); was it written by "
                             "`pyfastdl train`?")
    return metadata


def checkpoint_path(path: str) -> str:
    """A run directory's checkpoint, or ``path`` itself if it names a file."""
    return os.path.join(path, CHECKPOINT_NAME) if os.path.isdir(path) else path


def saved_arguments(metadata: dict, path: str) -> argparse.Namespace:
    """The options of the run whose checkpoint (at ``path``) ``metadata`` is, under today's names
    (:func:`pyfastdl.train.options.upgrade_args`); an option its recipe gained since takes its default.
    Options that fail :func:`check_arguments` are a damaged file: an error naming it."""
    parser = argparse.ArgumentParser()
    if metadata["recipe"] in list_recipe_names():  # (an unknown recipe is reported where it is used)
        get_recipe(metadata["recipe"]).add_arguments(parser)
    args = argparse.Namespace(**{**vars(parser.parse_args([])), **upgrade_args(metadata["args"])})
    try:
        check_arguments(args)
    except ValueError as e:
        raise ValueError(f"{path}: damaged checkpoint: the run's saved options fail a check ({e})") from None
    return args


def build_model(recipe, args: argparse.Namespace, path: str | None = None):
    """``recipe``'s model for ``args``; where the options came from the checkpoint at ``path``, an
    error building it names the file (its options are damaged)."""
    try:
        return recipe.build_model(args)
    except (ValueError, TypeError) as e:
        if path is None:
            raise
        raise ValueError(f"{path}: damaged checkpoint: the run's saved options do not build a {recipe.name} model "
                         f"({e})") from None


def resume_arguments(path: str, given: dict | None = None) -> argparse.Namespace:
    """The arguments to resume the run saved at ``path`` (a run directory or its checkpoint): the
    run's own, with the options in ``given`` (name -> value; ``None`` means not given) set over
    them. ``out`` defaults to the run's directory. :func:`fit` refuses options that change what the
    run computes (all but :data:`RESUME_MAY_CHANGE`)."""
    checkpoint = checkpoint_path(path)
    args = saved_arguments(run_metadata(checkpoint), checkpoint)
    for key, value in (given or {}).items():
        if value is not None:
            setattr(args, key, value)
    args.resume = checkpoint
    if not (given or {}).get("out"):
        args.out = os.path.dirname(os.path.abspath(checkpoint))
    return args


def _check_resumable(path: str, recipe, args) -> dict:
    """The training state saved at ``path``, after checking that it is ``recipe``'s unfinished run
    and that ``args`` changes only what :data:`RESUME_MAY_CHANGE` allows."""
    metadata = run_metadata(path)
    if metadata["recipe"] != recipe.name:
        raise ValueError(f"{path}: a checkpoint of {metadata['recipe']!r}, not of {recipe.name!r}")
    saved_args = upgrade_args(metadata["args"])
    current = _json_args(args)
    changed = [f"{_flag(k)} {current[k]!r} (the run has {v!r})" for k, v in saved_args.items()
               if k not in RESUME_MAY_CHANGE and k in current and current[k] != v]
    if changed:
        raise ValueError(f"{path}: a resumed run keeps the options it started with; these differ: "
                         f"{', '.join(changed)} (only {', '.join(map(_flag, RESUME_MAY_CHANGE[:-1]))} may change)")
    state = read_training_state(path)
    if state is None:
        raise ValueError(f"{path}: holds no training state to resume from")
    if state.get("finished"):
        raise ValueError(f"{path}: the run finished all its {args.epochs} epochs; there is nothing to resume")
    return state


def _resume(path: str, state: dict, recipe, model, optimizer, scheduler, loader, roots) -> tuple[dict, dict]:
    """Load the checkpoint at ``path`` and its training ``state`` into the freshly built run; returns
    ``(run, totals)``: the loop's counters and history, and the epoch in progress's running metrics."""
    try:
        load_checkpoint(path, model, optimizer)
        if (scheduler is None) != (state["scheduler"] is None):
            raise ValueError("the schedule does not match")
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        loader.load_state_dict(state["loader"])
        totals = epoch_totals(recipe)
        for name, metric in totals.items():
            metric.load_state_dict(state["totals"][name])
        set_random_state(roots, state["random"], path)
        run = {key: state[key] for key in ("epoch", "step", "history", "wall_time_s")}
        run["saved_step"] = run["step"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: damaged training state ({type(e).__name__}: {e})") from e
    return run, totals


def _fit(recipe, args, progress, log, on_step, stop) -> dict:
    import pyfastdl
    from ..nn import SyncBatchNorm
    from ..nn.parallel import DistributedDataParallel

    wall_start = time.perf_counter()
    resume = getattr(args, "resume", None)
    state = _check_resumable(resume, recipe, args) if resume else None
    device = resolve_device(args.device)
    rank, world = dist.get_rank(), dist.get_world_size()
    pyfastdl.manual_seed(args.seed)
    random.seed(args.seed)  # for recipes and augmentations that draw from the global streams
    np.random.seed(args.seed % 2**32)
    splits = {name: _limit(ds, args.limit) for name, ds in recipe.datasets(args).items() if ds is not None}
    collate = recipe.collate_fn or default_collate
    train_loader = DataLoader(splits["train"], batch_size=args.batch_size, shuffle=True, drop_last=True, seed=args.seed,
                              collate_fn=rank_share(collate, rank, world, args.batch_size) if world > 1 else collate)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(f"the training set ({len(splits['train'])} samples) is smaller than one batch "
                         f"of {args.batch_size} (--batch-size)")
    model = build_model(recipe, args, resume).to(device)
    trained = model
    if world > 1:
        model = SyncBatchNorm.convert_sync_batchnorm(model)
        trained = DistributedDataParallel(model)
        if rank:
            pyfastdl.manual_seed(args.seed + 7919 * rank)  # dropout masks differ between ranks
    optimizer = build_optimizer(args.optimizer, model.parameters(), args.lr, args.weight_decay, args.momentum)
    scheduler = build_scheduler(args.schedule, optimizer, args.epochs * steps_per_epoch,
                                getattr(args, "warmup_steps", None))
    # where the run's random generators live (besides Python's and numpy's global ones)
    roots = {"pyfastdl": pyfastdl.random.default_generator, "model": model, "datasets": splits, "recipe": recipe}
    checkpoint = os.path.join(args.out, CHECKPOINT_NAME)
    # the epoch in progress (or next), optimizer steps so far, finished epochs' records, earlier sessions' time
    run, totals = {"epoch": 1, "step": 0, "history": [], "wall_time_s": 0.0}, epoch_totals(recipe)
    if resume:
        run, totals = _resume(resume, state, recipe, model, optimizer, scheduler, train_loader, roots)
        if rank:  # rank 0's checkpoint holds the epoch's metrics merged over the ranks, and its random state
            totals = epoch_totals(recipe)
            pyfastdl.manual_seed(args.seed + 7919 * rank + run["step"])
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    log(f"{recipe.name}: {n_params:,} parameters on {device}; train {len(splits['train'])}, "
        f"val {len(splits['val']) if 'val' in splits else 0}, test {len(splits['test'])} samples; "
        f"{args.optimizer} lr {args.lr} wd {args.weight_decay} {args.schedule}, "
        f"{args.epochs} epochs of {steps_per_epoch} batches of {args.batch_size}; "
        f"{backend.get_num_threads()} CPU thread(s)" + (f" on each of {world} ranks" if world > 1 else "")
        + (f"; resumed at step {run['step']} (epoch {run['epoch']})" if run["step"] else ""))

    def save(test=None):
        """The checkpoint: model, optimizer and the training state (see the module docstring). Data
        parallel: every rank calls it (but for the final save, rank 0's alone) and rank 0 writes it,
        with the epoch's running metrics merged over the ranks."""
        if world > 1 and test is None:
            _merge_over_ranks(totals, 0)
        if rank != 0:
            return
        state = {"epoch": run["epoch"], "step": run["step"], "history": run["history"],
                 "wall_time_s": run["wall_time_s"] + time.perf_counter() - wall_start,
                 "finished": test is not None, "loader": train_loader.state_dict(),
                 "scheduler": scheduler.state_dict() if scheduler is not None else None,
                 "totals": {name: metric.state_dict() for name, metric in totals.items()},
                 "random": random_state(roots)}
        metadata = {"recipe": recipe.name, "args": _json_args(args), **recipe.checkpoint_metadata(args)}
        if test is not None:
            metadata["test"] = test
        save_checkpoint(checkpoint, model, optimizer, metadata=metadata, training_state=state)
        run["saved_step"] = run["step"]

    def where() -> str:
        batch = run["step"] - (run["epoch"] - 1) * steps_per_epoch
        return f"step {run['step']} (epoch {run['epoch']}, batch {batch} of {steps_per_epoch})"

    def stop_requested():
        """The signal that asks the run to stop, if any; data parallel: if any rank got one, so that
        every rank stops at the same step."""
        if world == 1:
            return stop.requested
        signal = pyfastdl.tensor(np.array([stop.requested or 0]))
        dist.all_reduce(signal, dist.ReduceOp.MAX)
        return int(signal.item()) or None

    def after_step():
        run["step"] += 1
        if on_step is not None:
            on_step(run["step"])
        requested = stop_requested()
        if requested is not None:
            save()
            raise _interrupted(requested, where(), checkpoint, recipe.name)

    history, metric = run["history"], recipe.main_metric
    for epoch in range(run["epoch"], args.epochs + 1):
        run["epoch"] = epoch
        epoch_start = time.perf_counter()
        try:
            with _progress_bar(steps_per_epoch, f"epoch {epoch}/{args.epochs}", progress) as bar:
                bar.update(run["step"] - (epoch - 1) * steps_per_epoch)
                train = run_epoch(recipe, trained, train_loader, device, optimizer, scheduler, bar, totals,
                                  after_step)
        except NonFiniteLossError as e:
            run["step"] += 1
            kept = (f"the last good checkpoint, from step {run['saved_step']}, is {checkpoint}"
                    if "saved_step" in run else "this run saved no checkpoint yet")
            raise NonFiniteLossError(f"{where()}: {e}; stopped before updating the weights "
                                     f"(lower --lr?); {kept}") from e
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
        run["epoch"], totals = epoch + 1, epoch_totals(recipe)
        save()  # every epoch: the last good checkpoint
        requested = stop_requested()
        if requested is not None:
            raise _interrupted(requested, f"the end of epoch {epoch} (step {run['step']})", checkpoint,
                               recipe.name)

    test = evaluate(recipe, model, splits["test"], device, args.batch_size, args)
    wall = run["wall_time_s"] + time.perf_counter() - wall_start
    log(f"test loss {test['loss']:.4f} {metric} {test[metric]:.4f}; wall time {wall:.1f}s")
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
        "world_size": dist.get_world_size(),
    }
    if rank == 0:  # every rank has the record; one writes it
        os.makedirs(args.out, exist_ok=True)
        metrics_path = os.path.join(args.out, METRICS_NAME)
        with open(metrics_path + ".tmp", "w") as f:  # renamed into place: never a half-written record
            json.dump(record, f, indent=2)
        os.replace(metrics_path + ".tmp", metrics_path)
        plot_history(history, os.path.join(args.out, PLOT_NAME), title=f"{recipe.name} on {_dataset_name(args)}",
                     metric=metric)
        save(test=record["test"])
        recipe.after_fit(model, splits, args, device)
    if world > 1:
        dist.barrier()  # the other ranks return once rank 0's files are there
    return record


def _interrupted(signum: int, at: str, checkpoint: str, name: str) -> TrainingInterrupted:
    import signal

    run_dir = os.path.dirname(os.path.abspath(checkpoint))
    return TrainingInterrupted(signum, f"{signal.Signals(signum).name} at {at}: saved {checkpoint}; continue "
                                       f"with `pyfastdl train {name} --resume {run_dir}`")


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
    saved = run_metadata(path)
    recipe = get_recipe(saved["recipe"])
    args = saved_arguments(saved, path)
    for key, value in overrides.items():
        if value is not None:
            setattr(args, key, value)
    recipe.restore_metadata(args, saved)
    args.device = resolve_device(args.device)
    model = build_model(recipe, args, path)
    load_checkpoint(path, model)
    return recipe, args, model.to(args.device)


def evaluate_checkpoint(path: str, split: str = "test", device: str = "auto", data_dir: str | None = None,
                        batch_size: int | None = None, limit: int | None = None) -> dict:
    """Loss and metrics of the model saved at ``path`` (a run directory or its checkpoint) on one split
    of its recipe's dataset (its first ``limit`` samples where given)."""
    if batch_size is not None:
        check_whole("eval: --batch-size", batch_size)
    recipe, args, model = _restore(checkpoint_path(path), {"device": device, "data_dir": data_dir,
                                                            "batch_size": batch_size})
    datasets = recipe.datasets(args)
    if datasets.get(split) is None:
        raise ValueError(f"split must be one of {[k for k, v in datasets.items() if v is not None]}, got {split!r}")
    if limit is not None:
        check_whole("eval: --limit", limit)
    dataset = _limit(datasets[split], limit)
    with kernel_threads(getattr(args, "threads", None)):
        result = evaluate(recipe, model, dataset, args.device, args.batch_size, args)
    return {"model": recipe.name, "split": split, "samples": len(dataset), **result}


def predict_batch(model, x, device: str) -> np.ndarray:
    """``model``'s output (numpy) for the input batch ``x`` (an array, or a tuple of the model's
    inputs), in eval mode and without a graph."""
    from .. import no_grad

    model.eval()
    with no_grad():
        inputs = x if isinstance(x, tuple) else (x,)
        return model(*(to_device(a, device) for a in inputs)).detach().cpu().numpy()


def first_test_samples(recipe, args: argparse.Namespace, count: int) -> tuple:
    """``(inputs, target)`` of the first ``count`` test samples of ``recipe``'s dataset: ``inputs``
    the model's one input array, or a tuple of them."""
    test = recipe.datasets(args)["test"]
    loader = DataLoader(test, batch_size=min(count, len(test)), collate_fn=recipe.collate_fn)
    inputs, target = recipe.split_batch(next(iter(loader)))
    return (inputs[0] if len(inputs) == 1 else tuple(inputs)), target


def predict_checkpoint(path: str, inputs: list[str] | None = None, count: int = 10, device: str = "auto",
                       data_dir: str | None = None, out_dir: str | None = None) -> list[dict]:
    """Predictions of the model saved at ``path`` (a run directory or its checkpoint), one dict per
    input (:meth:`Recipe.predictions`): for ``inputs`` (files, sentences or text, as the recipe
    reads them), or else for the first ``count`` test samples (with their targets). Pictures a
    recipe draws of them go to ``out_dir`` (default: the checkpoint's directory)."""
    check_whole("predict: --count", count)
    path = checkpoint_path(path)
    recipe, args, model = _restore(path, {"device": device, "data_dir": data_dir})
    out_dir = out_dir or os.path.dirname(os.path.abspath(path))
    with kernel_threads(getattr(args, "threads", None)):
        return recipe.predictions(model, args, list(inputs or []), count, out_dir)
