"""End-to-end benchmark: one full training step (forward, loss, backward, optimizer step) of each
model family's CPU recipe against the same architecture written with PyTorch.

    pyfastdl bench models                      # every case, 1 and 2 threads, beside a busy process
    pyfastdl bench models resnet20 lenet       # some cases
    pyfastdl bench models --save               # also write JSON + markdown to benchmarks/results/

Each case builds pyfastdl's model from its training recipe with the recipe's default arguments
(shapes, widths, batch size, optimizer, learning rate, loss), takes one batch of the recipe's own
training data, and builds the twin in :mod:`pyfastdl.bench_torch_models` (equal parameter counts
are asserted) with torch's optimizer and loss of the same kind. Timing: a few warm-up steps each,
then rounds alternating one step of ours and one of torch's, so that both meet the same machine
(frequency, other load); medians. Conditions: 1 thread, 2 threads, and 2 threads beside a busy
process (a second Python process spinning on one core for the whole condition). Threads are set for
both libraries (:func:`pyfastdl.backend.set_num_threads`, ``torch.set_num_threads``).

Peak memory: in a separate fresh process per library and case, the peak resident set size over four
steps (1 thread) minus the resident size right after the imports -- model, optimizer state, the batch
and the step's transient arrays.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

#: case name -> (recipe name, overrides of the recipe's default arguments, batch size or None (default))
CASES = {
    "lenet": ("lenet", {"dataset": "mnist"}, 64),  # digits is bundled but its recipe's batch is 32; mnist's 64
    "nin": ("nin", {}, None),
    "resnet20": ("resnet20", {}, None),
    "fcn8s": ("fcn8s", {}, None),
    "yolov1": ("yolov1", {}, None),
    "char-lm": ("char-lm", {}, None),
    "seq2seq": ("seq2seq", {}, None),
    "bahdanau": ("bahdanau", {}, None),
    "convs2s": ("convs2s", {}, None),
    "transformer": ("transformer", {}, None),
    "resnet18": ("resnet18", {"image_size": 64}, None),
}
CONDITIONS = ("1 thread", "2 threads", "2 threads, busy")
MEMORY_STEPS = 4


# ---- building one case ----------------------------------------------------------------------------------


def recipe_args(recipe, overrides=None, batch_size=None) -> argparse.Namespace:
    """The recipe's default command-line arguments, with ``overrides`` applied, and its hyper-parameters."""
    parser = argparse.ArgumentParser()
    for name in ("seed", "limit", "device"):
        parser.add_argument(f"--{name}")
    recipe.add_arguments(parser)
    args = parser.parse_args([])
    args.seed, args.device = 0, "cpu"
    for key, value in (overrides or {}).items():
        setattr(args, key, value)
    for key, value in recipe.default_hparams(args).items():
        setattr(args, key, value)
    if batch_size:
        args.batch_size = batch_size
    args.limit = args.batch_size
    return args


def _first_batch(recipe, args):
    """One training batch of the recipe's own data (synthetic data where the recipe has no files)."""
    from .data import DataLoader

    if args.recipe == "lenet":  # MNIST files are not bundled: random digits at its shape
        rng = np.random.default_rng(0)
        return (rng.standard_normal((args.batch_size, 1, 32, 32)).astype(np.float32),
                rng.integers(0, 10, args.batch_size))
    if args.recipe == "yolov1":  # detection: generate just one batch of scenes
        args.train_size, args.val_size, args.test_size = args.batch_size, 0, 0
    dataset = recipe.datasets(args)["train"]
    loader = DataLoader(dataset, batch_size=args.batch_size, collate_fn=recipe.collate_fn)
    return next(iter(loader))


def _split_ours(recipe, batch):
    from .train.loop import to_device

    inputs, target = recipe.split_batch(batch)
    return to_device(inputs, "cpu"), target if hasattr(target, "encoded") else to_device(target, "cpu")


class Step:
    """A model, its batch, loss and optimizer: ``step()`` runs one training step."""

    def __init__(self, model, inputs, target, loss_fn, optimizer):
        self.model, self.inputs, self.target, self.loss_fn, self.optimizer = model, inputs, target, loss_fn, optimizer
        model.train()

    def __call__(self):
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(*self.inputs), self.target)
        loss.backward()
        self.optimizer.step()
        return loss

    def num_parameters(self):
        return sum(int(np.prod(p.shape)) for p in self.model.parameters())


class CaseData:
    """A case's recipe, its arguments and one batch of its training data (numpy)."""

    def __init__(self, case: str):
        import pyfastdl

        from .train import get_recipe

        name, overrides, batch = CASES.get(case, (case, {}, None))  # any recipe name works too
        self.recipe = get_recipe(name)
        self.args = recipe_args(self.recipe, overrides, batch)
        self.args.recipe = name
        pyfastdl.manual_seed(0)
        self.batch = _first_batch(self.recipe, self.args)


def build_ours(case, data: CaseData | None = None) -> Step:
    """pyfastdl's step of ``case`` (a name, or its :class:`CaseData`), from its recipe."""
    import pyfastdl

    from .train.loop import build_optimizer

    data = data or CaseData(case)
    recipe, args = data.recipe, data.args
    pyfastdl.manual_seed(0)
    model = recipe.build_model(args)
    inputs, target = _split_ours(recipe, data.batch)
    opt = build_optimizer(args.optimizer, model.parameters(), args.lr, args.weight_decay, args.momentum)
    step = Step(model, inputs, target, recipe.loss_fn, opt)
    step.args, step.data = args, data
    return step


def build_torch(data: CaseData) -> Step:
    """torch's step of a case: the twin of pyfastdl's (same arguments, same batch)."""
    import torch

    from . import bench_torch_models as tm

    args, batch, recipe = data.args, data.batch, data.recipe
    torch.manual_seed(0)
    tf = torch.nn.functional
    inputs, target = recipe.split_batch(batch)
    inputs = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs)
    if args.recipe in ("seq2seq", "bahdanau", "convs2s", "transformer"):
        builder = {"seq2seq": tm.Seq2Seq, "bahdanau": tm.Bahdanau, "convs2s": tm.ConvS2S,
                   "transformer": tm.Transformer}[args.recipe]
        model = builder(args, len(args.src_vocab), len(args.tgt_vocab))
        smoothing = args.label_smoothing

        def loss_fn(out, t):
            return tf.cross_entropy(out.reshape(-1, out.shape[-1]), t.reshape(-1), ignore_index=0,
                                    label_smoothing=smoothing)
    elif args.recipe == "char-lm":
        model = tm.CharLSTM(args, len(args.chars))

        def loss_fn(out, t):
            return tf.cross_entropy(out.reshape(-1, out.shape[-1]), t.reshape(-1))
    elif args.recipe == "yolov1":
        model = tm.YOLOv1(args, recipe.num_classes(args))
        S, B, C = args.grid, args.boxes, recipe.num_classes(args)

        def loss_fn(out, t):
            return tm.yolo_v1_loss(out, t, S, B, C)
        target = target.encoded
    elif args.recipe == "fcn8s":
        model = tm.FCN8s(args, recipe.num_classes(args))

        def loss_fn(out, t):
            return tf.cross_entropy(out, t, ignore_index=255)
    else:
        builder = {"lenet": tm.lenet, "nin": tm.nin, "resnet20": tm.resnet20, "resnet18": tm.resnet18}[args.recipe]
        model = builder(args, 10 if args.recipe == "lenet" else recipe.num_classes(args))
        loss_fn = tf.cross_entropy
    target = target if args.recipe == "yolov1" else torch.from_numpy(np.asarray(target)).long()
    params = [p for p in model.parameters() if p.requires_grad]
    if args.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                              nesterov=args.momentum > 0)
    else:
        opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[args.optimizer](
            params, lr=args.lr, weight_decay=args.weight_decay)
    return Step(model, inputs, target, loss_fn, opt)


def build_pair(case: str):
    """(ours, torch's) steps of ``case``, with equal parameter counts (AssertionError otherwise)."""
    data = CaseData(case)
    ours = build_ours(case, data)
    theirs = build_torch(data)
    n_ours, n_torch = ours.num_parameters(), theirs.num_parameters()
    assert n_ours == n_torch, f"{case}: pyfastdl's model has {n_ours:,} parameters, torch's twin {n_torch:,}"
    return ours, theirs


# ---- timing ---------------------------------------------------------------------------------------------


def set_threads(n: int) -> None:
    from . import backend

    backend.set_num_threads(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def time_alternated(ours, theirs, rounds: int, warmup: int = 2):
    """Median seconds of ``ours()`` and ``theirs()`` (None when theirs is None), one call of each per
    round, alternating, after ``warmup`` calls of each."""
    for _ in range(warmup):
        ours()
        if theirs is not None:
            theirs()
    t_ours, t_theirs = [], []
    for _ in range(rounds):
        for fn, times in ((ours, t_ours), (theirs, t_theirs)):
            if fn is None:
                continue
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(t_ours), (statistics.median(t_theirs) if t_theirs else None)


class BusyProcess:
    """A second Python process spinning on one core while the block runs."""

    def __enter__(self):
        # spins while this process lives (so a killed benchmark leaves no spinner behind)
        self.proc = subprocess.Popen([sys.executable, "-c", f"import os\nwhile os.getppid() == {os.getpid()}: pass"])
        time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        return False


# ---- peak memory (a fresh process per library and case) ---------------------------------------------------


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    """The peak resident set size since the last :func:`_reset_peak_rss` (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status")


def _reset_peak_rss() -> None:
    """Give freed heap memory back to the system and restart the peak count (Linux >= 4.0)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _memory_child(case: str, library: str) -> None:
    """In this (fresh) process: import, note the RSS, build ``library``'s step (the data generated
    for it and then dropped is not counted: the peak count restarts after the build), run
    MEMORY_STEPS steps and print the peak RSS above the imports (MiB) as JSON."""
    import pyfastdl  # noqa: F401

    if library == "torch":
        import torch  # noqa: F401
    from . import models  # noqa: F401  (the recipes' imports are part of "the imports")

    set_threads(1)
    if os.environ.get("PYFASTDL_BENCH_ISA"):
        from ._core import _C

        _C.cpu.set_isa(os.environ["PYFASTDL_BENCH_ISA"])
    base = _rss_mib()
    data = CaseData(case)
    step = build_ours(case, data) if library == "pyfastdl" else build_torch(data)
    _reset_peak_rss()
    loss = None
    for _ in range(MEMORY_STEPS):
        loss = step()  # held until the next step's forward has run, as in a training loop
    del loss
    print(json.dumps({"peak_mib": _peak_rss_mib() - base}))


def peak_memory(case: str, library: str) -> float | None:
    """Peak RSS above the imports (MiB) of MEMORY_STEPS steps of ``case`` with ``library``, measured in
    a fresh process (None if that process failed)."""
    code = f"from pyfastdl.bench_models import _memory_child; _memory_child({case!r}, {library!r})"
    # PYTHONSAFEPATH: the child imports the pyfastdl this process runs, not a source folder in the cwd
    from ._core import _C

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONSAFEPATH="1", PYFASTDL_BENCH_ISA=_C.cpu.get_isa())
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(f"  memory of {case} ({library}) failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


# ---- the run ----------------------------------------------------------------------------------------------


def cpu_name() -> str:
    """The CPU's model name, with its family and model numbers where /proc/cpuinfo gives them
    (virtual machines often report only "AMD EPYC": family 25 model 1 is Zen 3, model 17 Zen 4)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if not line.strip():
                    break
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def cpu_device_name() -> str:
    """The CPU results' device name: cores and the widest instruction set the kernels have for this
    CPU (``cpu-2core-avx512``), so runs on machines of one size but another set do not share files."""
    from ._core import _C

    return f"cpu-{os.cpu_count()}core-{_C.cpu.best_isa()}"


def machine_meta() -> dict:
    from . import __version__
    from ._core import _C

    versions = {"python": platform.python_version(), "numpy": np.__version__, "pyfastdl": __version__}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except Exception:
        commit = os.environ.get("PYFASTDL_COMMIT", "unknown")
    return {"commit": commit, "device": cpu_device_name(), "date": datetime.date.today().isoformat(),
            "cpu": cpu_name(), "instruction_set": _C.cpu.get_isa(), "machine": platform.machine(),
            "versions": versions}


def run(cases, conditions=CONDITIONS, rounds=5, warmup=2, memory=True, with_torch=True, log=print) -> dict:
    """Time every case under every condition (and measure its memory); returns {"meta", "cases"}."""
    if with_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            log("torch is not installed: timing pyfastdl alone (pip install 'pyfastdl[bench]')")
            with_torch = False
    meta = machine_meta()
    meta["load_before"] = os.getloadavg()
    meta.update(rounds=rounds, warmup=warmup, conditions=list(conditions))
    rows = []
    for case in cases:
        ours, theirs = build_pair(case) if with_torch else (build_ours(case), None)
        row = {"case": case, "batch_size": ours.args.batch_size, "parameters": ours.num_parameters(), "times": {}}
        for cond in conditions:
            set_threads(1 if cond.startswith("1 ") else 2)
            if cond.endswith("busy"):
                with BusyProcess():
                    t = time_alternated(ours, theirs, rounds, warmup)
            else:
                t = time_alternated(ours, theirs, rounds, warmup)
            row["times"][cond] = {"ours_ms": t[0] * 1e3, "torch_ms": None if t[1] is None else t[1] * 1e3,
                                  "ratio": None if t[1] is None else t[1] / t[0]}
        del ours, theirs
        if memory:
            row["peak_mib"] = {"pyfastdl": peak_memory(case, "pyfastdl"),
                               "torch": peak_memory(case, "torch") if with_torch else None}
        rows.append(row)
        log(format_row(row, conditions))
    meta["load_after"] = os.getloadavg()
    return {"meta": meta, "cases": rows}


def _f(v, p=1):
    return "-" if v is None else f"{v:.{p}f}"


def format_row(row, conditions) -> str:
    cells = [f"{row['case']} ({row['batch_size']})"]
    for cond in conditions:
        t = row["times"][cond]
        cells.append(f"{_f(t['ours_ms'])} / {_f(t['torch_ms'])} = **{_f(t['ratio'], 2)}x**")
    mem = row.get("peak_mib") or {}
    cells.append(f"{_f(mem.get('pyfastdl'), 0)} / {_f(mem.get('torch'), 0)}")
    return "| " + " | ".join(cells) + " |"


def geomean(values):
    values = [v for v in values if v]
    return float(np.exp(np.mean(np.log(values)))) if values else None


def format_table(result, note="") -> str:
    meta, rows = result["meta"], result["cases"]
    conds = meta["conditions"]
    lines = [f"# End-to-end training steps on {meta['device']}, {meta['date']}, commit {meta['commit']}", "",
             f"CPU: {meta['cpu']} ({meta['instruction_set']} kernels). Versions: "
             + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
             f"Load average before/after: {', '.join(f'{x:.2f}' for x in meta['load_before'])} / "
             f"{', '.join(f'{x:.2f}' for x in meta['load_after'])}." + (f" {note}" if note else ""), "",
             "One step = forward, loss, backward, optimizer step, at the recipe's default shapes and batch size "
             f"(in brackets). Cells: pyfastdl ms / torch ms = ratio (torch time / ours; > 1: pyfastdl faster), "
             f"medians of {meta['rounds']} alternated rounds after {meta['warmup']} warm-up steps each. Memory: "
             f"peak RSS above the imports over {MEMORY_STEPS} steps, 1 thread, each library in its own process.", "",
             "| model (batch) | " + " | ".join(conds) + " | peak MiB pyfastdl / torch |",
             "|---|" + "---:|" * (len(conds) + 1)]
    lines += [format_row(r, conds) for r in rows]
    means = [geomean([r["times"][c]["ratio"] for r in rows]) for c in conds]
    lines.append("| geometric mean | " + " | ".join(f"{_f(m, 2)}x" for m in means) + " | |")
    return "\n".join(lines) + "\n"


def save(result, out_dir, note="") -> str:
    """Write ``<device>-<date>-models.json`` and ``.md`` into ``out_dir``; returns the stem."""
    meta = result["meta"]
    os.makedirs(out_dir, exist_ok=True)
    from ._core import _C

    narrower = meta["instruction_set"] != _C.cpu.best_isa()  # pyfastdl bench --isa
    stem = os.path.join(out_dir, f"{meta['device']}-{meta['date']}-models" + (f"-{meta['instruction_set']}" if narrower else ""))
    if note:
        meta["note"] = note
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(format_table(result, note))
    return stem


def default_results_dir() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(os.path.dirname(here), "benchmarks", "results")


def main(args) -> int:
    cases = args.cases or list(CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        print(f"pyfastdl bench models: unknown model {', '.join(unknown)}; choose from {', '.join(CASES)}")
        return 2
    from .train.loop import check_whole

    check_whole("bench models: --rounds", args.rounds)
    check_whole("bench models: --warmup", args.warmup, 0)
    conditions = [c for c in CONDITIONS if not args.conditions or c in args.conditions]
    result = run(cases, conditions, rounds=args.rounds, warmup=args.warmup, memory=not args.no_memory,
                 with_torch=not args.no_torch)
    print(format_table(result, args.note or ""))
    if args.save is not None:
        stem = save(result, args.save or default_results_dir(), args.note or "")
        print(f"results written to {stem}.json and .md")
    return 0


def add_arguments(p) -> None:
    p.add_argument("--rounds", type=int, default=5, help="alternated timed steps per library and condition (5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps of each library first (2)")
    p.add_argument("--conditions", nargs="*", choices=CONDITIONS, help="default: all of them")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument("--no-torch", action="store_true", help="time pyfastdl alone")
    p.add_argument("--save", nargs="?", const="", default=None, metavar="DIR",
                   help="write JSON + markdown (default DIR: benchmarks/results/)")
    p.add_argument("--note", help="conditions to record with the results (e.g. the machine's load)")


def parser() -> argparse.ArgumentParser:
    """The stand-alone command line (``python -m pyfastdl.bench_models``, ``benchmarks/bench_models.py``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cases", nargs="*", metavar="MODEL", help=f"default: all of {', '.join(CASES)}")
    add_arguments(p)
    return p


if __name__ == "__main__":
    sys.exit(main(parser().parse_args()))
