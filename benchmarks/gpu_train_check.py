"""The ten models' training on the GPU, step for step against the CPU.

For each model the recipe's defaults (`pyfastdl train MODEL`), one seed, the same initial weights and
the same batches in the same order: STEPS optimizer steps. The CPU run is made ahead, on a CPU machine
(it is deterministic for a seed, and slow), and committed; the GPU run is compared with it. Losses are
averaged over the first and the last tenth of the run; the GPU run passes when its loss falls as the
CPU's does and its last tenth is within TOL of the CPU's (float32 sums in another order drift a little:
the two runs are not expected to be bitwise equal).

    python3 -P benchmarks/gpu_train_check.py --device cpu --out benchmarks/results/train-cpu-reference.jsonl
    python3 -P benchmarks/gpu_train_check.py --device cuda --reference benchmarks/results/train-cpu-reference.jsonl

One JSON line per model goes to --out (default stdout) as soon as that model is done, so a run cut by a
timeout keeps the models it finished; the last line printed is a summary table."""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

MODELS = ("lenet", "nin", "resnet20", "fcn8s", "yolov1", "char-lm", "seq2seq", "bahdanau", "convs2s", "transformer")
TOL = 0.15  # |GPU - CPU| / CPU of the last window's mean loss


def recipe_args(name: str, device: str, limit: int):
    """The recipe and its arguments as `pyfastdl train NAME --device DEVICE --limit LIMIT` builds them."""
    from pyfastdl.cli import build_parser
    from pyfastdl.train import get_recipe

    args = build_parser().parse_args(["train", name, "--device", device, "--limit", str(limit)])
    recipe = get_recipe(name)
    for key, value in recipe.default_hparams(args).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return recipe, args


def train_losses(name: str, device: str, steps: int, seed: int) -> tuple[list[float], float]:
    """The loss of each of ``steps`` training steps on ``device``, and the seconds they took."""
    import pyfastdl
    from pyfastdl.data import DataLoader
    from pyfastdl.train.loop import build_optimizer, build_scheduler, to_device

    recipe, args = recipe_args(name, device, limit=1 << 30)
    pyfastdl.manual_seed(seed)
    train = recipe.datasets(args)["train"]
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True, seed=seed,
                        collate_fn=recipe.collate_fn)
    model = recipe.build_model(args).to(device)
    model.train(True)
    optimizer = build_optimizer(args.optimizer, model.parameters(), args.lr, args.weight_decay, args.momentum)
    scheduler = build_scheduler(args.schedule, optimizer, steps, getattr(args, "warmup_steps", None))
    losses, start = [], time.perf_counter()
    while len(losses) < steps:
        for batch in loader:
            inputs, target = recipe.split_batch(batch)
            loss = recipe.loss_fn(model(*to_device(inputs, device)), to_device(target, device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(float(loss.item()))
            if len(losses) == steps:
                break
    return losses, time.perf_counter() - start


def check(name: str, steps: int, seed: int, device: str, reference: dict | None) -> dict:
    """One model's run on ``device``; with a ``reference`` row (the CPU's run), the comparison too."""
    row = {"model": name, "device": device, "steps": steps, "seed": seed}
    try:
        losses, seconds = train_losses(name, device, steps, seed)
    except Exception as exc:  # one model's failure must not hide the others'
        row.update(passed=False, error=f"{type(exc).__name__}: {exc}"[:500])
        return row
    w = max(1, steps // 10)
    row.update(losses=losses, seconds=seconds, first=float(np.mean(losses[:w])), last=float(np.mean(losses[-w:])))
    passed = bool(np.isfinite(losses).all()) and row["last"] < row["first"]
    if reference is not None:
        gap = abs(row["last"] - reference["last"]) / max(abs(reference["last"]), 1e-12)
        row.update(reference_first=reference["first"], reference_last=reference["last"], rel_gap=gap)
        passed = passed and reference["last"] < reference["first"] and gap <= TOL
    row["passed"] = passed
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--reference", help="JSON lines of a CPU run of this script (same steps and seed) to compare with")
    p.add_argument("--out", help="JSON lines file to append to (default: stdout)")
    args = p.parse_args(argv)
    reference = {}
    if args.reference:
        with open(args.reference) as f:
            reference = {r["model"]: r for r in map(json.loads, f) if "losses" in r}
    out = open(args.out, "a") if args.out else sys.stdout
    rows = []
    for name in args.models:
        ref = reference.get(name)
        if args.reference and (ref is None or ref["steps"] != args.steps or ref["seed"] != args.seed):
            print(f"{name}: no reference run of {args.steps} steps, seed {args.seed} in {args.reference}",
                  file=sys.stderr)
            ref = None
        row = check(name, args.steps, args.seed, args.device, ref)
        rows.append(row)
        out.write(json.dumps(row) + "\n")
        out.flush()
    print(f"\n{args.device}, {args.steps} steps: loss averaged over the first and the last tenth of the run")
    print(f"{'model':12s} {'passed':6s} {'first':>8s} {'last':>8s} {'cpu first':>9s} {'cpu last':>9s} {'gap':>6s} "
          f"{'seconds':>8s}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:12s} FAILED {r['error']}")
            continue
        ref = (f"{r['reference_first']:9.3f} {r['reference_last']:9.3f} {r['rel_gap']:6.3f}" if "rel_gap" in r
               else f"{'-':>9s} {'-':>9s} {'-':>6s}")
        print(f"{r['model']:12s} {str(r['passed']):6s} {r['first']:8.3f} {r['last']:8.3f} {ref} {r['seconds']:8.1f}")
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
