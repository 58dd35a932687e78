"""The `pyfastdl` command line: info, train, sweep, eval, predict, translate, sample, bench, profile."""

from __future__ import annotations

import argparse
import json
import math
import sys

from . import bench


def _cmd_info(args) -> int:
    from .info import collect, format_info

    info = collect()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _cmd_train(args) -> int:
    from .train import fit, get_recipe
    from .train.command import TRAIN_DEFAULTS
    from .train.loop import resume_arguments

    recipe = get_recipe(args.model)
    if args.resume:
        defaults = TRAIN_DEFAULTS.get(recipe.name, {})
        args = resume_arguments(args.resume, {k: v for k, v in vars(args).items()
                                              if k in defaults and v != defaults[k]})
    else:
        for key, value in recipe.default_hparams(args).items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        if args.out is None:
            args.out = f"runs/{recipe.name}"
    fit(recipe, args, progress=not args.quiet)
    from .distributed import get_rank

    if get_rank() == 0:
        print(f"wrote {args.out}/metrics.json, curves.png, checkpoint.safetensors")
    return 0


def _cmd_eval(args) -> int:
    from .train import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, split=args.split, device=args.device, data_dir=args.data_dir,
                                 batch_size=args.batch_size, limit=args.limit)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        values = "  ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float))
        print(f"{result['model']} on {result['split']} ({result['samples']} samples): {values}")
    return 0


def _cmd_predict(args) -> int:
    from .train import predict_checkpoint

    rows = predict_checkpoint(args.checkpoint, args.inputs, count=args.count, device=args.device,
                              data_dir=args.data_dir, out_dir=args.out)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            label = f" ({row['label']})" if "label" in row and row["label"] != str(row["prediction"]) else ""
            target = f"  target {row['target']}" if "target" in row else ""
            print(f"{row['input']}: {row['prediction']}{label}{target}")
    return 0


def _cmd_sweep(args) -> int:
    from .train.sweep import run_sweep

    run_sweep(args.model, args.grid, args.set, seeds=args.seeds, out=args.out, jobs=args.jobs, threads=args.threads)
    return 0


def _cmd_translate(args) -> int:
    from .tasks.translation import translate_checkpoint

    for line in translate_checkpoint(args.checkpoint, args.sentences, beam=args.beam, alpha=args.length_penalty,
                                     device=args.device, alignment=args.alignment):
        print(line)
    if args.alignment:
        print(f"wrote {args.alignment}", file=sys.stderr)
    return 0


def _cmd_sample(args) -> int:
    import os

    from .checkpoint import read_metadata
    from .models.gpt import GPTRecipe
    from .models.gpt import sample_checkpoint as sample_gpt
    from .models.lstm import sample_checkpoint as sample_char_lm
    from .train.loop import CHECKPOINT_NAME

    for name, low in (("length", 0), ("top_k", 1), ("seed", 0)):
        value = getattr(args, name)
        if value is not None and value < low:
            raise ValueError(f"sample: --{name.replace('_', '-')} must be >= {low}, got {value}")
    if args.temperature < 0:
        raise ValueError(f"sample: --temperature must be >= 0 (0: greedy), got {args.temperature}")
    path = os.path.join(args.checkpoint, CHECKPOINT_NAME) if os.path.isdir(args.checkpoint) else args.checkpoint
    if read_metadata(path).get("recipe") == GPTRecipe.name:
        text = sample_gpt(path, args.length, args.temperature, args.prime, args.seed, args.device,
                         args.top_k)
    else:
        if args.top_k is not None:
            raise ValueError("sample: --top-k is for GPT checkpoints (a char-lm samples from every character)")
        text = sample_char_lm(path, args.length, args.temperature, args.prime, args.seed, args.device)
    print(args.prime + text)
    return 0


def _cmd_profile(args) -> int:
    from . import bench_models
    from .profiler import profile, record_function
    from .train.loop import check_whole
    from .train.registry import list_recipe_names

    if args.model not in bench_models.CASES and args.model not in list_recipe_names():
        print(f"pyfastdl profile: unknown model {args.model!r}; try one of {', '.join(bench_models.CASES)}")
        return 2
    for name, low in (("steps", 1), ("warmup", 0), ("rows", 1), ("threads", 1)):
        check_whole(f"profile: --{name}", getattr(args, name), low)
    bench_models.set_threads(args.threads)
    step = bench_models.build_ours(args.model)
    for _ in range(args.warmup):
        step()
    with profile() as prof:
        for _ in range(args.steps):
            with record_function("training step"):
                step()
    print(f"pyfastdl profile {args.model}: {args.steps} training step(s), batch {step.args.batch_size}, "
          f"{args.threads} thread(s)")
    print(prof.table(args.rows))
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"trace written to {args.trace} (open in https://ui.perfetto.dev or chrome://tracing)")
    return 0


def _add_profile_parser(sub) -> None:
    p = sub.add_parser("profile", help="where a training step's time goes: ops, kernels, Python/autograd",
                       description="Profile training steps of a model's CPU recipe (the cases of `pyfastdl "
                                   "bench models`, or any recipe name): self time per op and kernel family, "
                                   "the Python/autograd share, and optionally a Chrome trace.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--steps", type=int, default=3, help="profiled steps (3)")
    p.add_argument("--warmup", type=int, default=1, help="unprofiled steps first (1)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1)")
    p.add_argument("--rows", type=int, default=20, help="rows of the table (20)")
    p.add_argument("--trace", metavar="FILE", help="write a Chrome trace-event JSON file")
    p.set_defaults(func=_cmd_profile)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line. ``train`` has one sub-command per recipe; given ``argv`` (the
    arguments about to be parsed), only the recipe it trains is added (none for another command),
    so that ``pyfastdl train lenet`` imports LeNet-5's module alone."""
    from . import __version__
    from .train import get_recipe
    from .train.command import add_train_parser
    from .train.options import HelpFormatter, add_checkpoint, add_device
    from .train.registry import list_recipe_names

    parser = argparse.ArgumentParser(prog="pyfastdl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pyfastdl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="version, compiled kernels, threads and GPUs")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("train", help="train a model; writes metrics.json, curves.png, checkpoint.safetensors")
    models = p.add_subparsers(dest="model", required=True, metavar="MODEL")
    names = list_recipe_names()
    if argv is not None and argv[:1] != ["train"]:
        names = []  # another command: it imports the one recipe it needs, if any, itself
    elif argv is not None and len(argv) > 1 and argv[1] in names:
        names = [argv[1]]
    for name in names:
        add_train_parser(models, get_recipe(name)).set_defaults(func=_cmd_train)

    for name, func, text in [("eval", _cmd_eval, "loss and metrics of a saved checkpoint on its dataset"),
                             ("predict", _cmd_predict, "predictions of a saved checkpoint: classes, masks, boxes, "
                                                       "translations, continued text, ...")]:
        p = sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)
        add_checkpoint(p)
        add_device(p)
        p.add_argument("--data-dir", help="where the dataset's files are (default: as when trained)")
        p.add_argument("--json", action="store_true", help="print as JSON")
        p.set_defaults(func=func)
    eval_p, predict_p = sub.choices["eval"], sub.choices["predict"]
    eval_p.add_argument("--split", default="test", choices=["train", "val", "test"], help="which split")
    eval_p.add_argument("--batch-size", type=int, help="default: the run's")
    eval_p.add_argument("--limit", type=int, help="evaluate the first N samples of the split only (default: all)")
    predict_p.add_argument("inputs", nargs="*",
                           help="images (PNG/JPEG) or .npy arrays, sentences to translate, texts to continue or "
                                "with [MASK]s to fill in, Reber strings (as the model reads); none: test samples")
    predict_p.add_argument("--count", type=int, default=10, help="test samples to predict when no inputs are given")
    predict_p.add_argument("--out", help="where pictures of the predictions go (default: the checkpoint's folder)")

    p = sub.add_parser("sweep", help="train every combination of a grid of options, several seeds each, and "
                                     "compare them in one table and one picture",
                       description="Train every combination of a grid over a recipe's options, several seeds "
                                   "each, in parallel processes; writes sweep.md, sweep.json and sweep.png. "
                                   "A rerun skips the runs that finished.",
                       epilog='e.g. pyfastdl sweep lenet --grid "optimizer=sgd,adam norm=none,batch,layer '
                              'dropout=0,0.5" --seeds 3; a value can set several options: '
                              '"optim=sgd(optimizer=sgd,momentum=0),adam(optimizer=adam)"')
    p.add_argument("model", help="a model that `pyfastdl train` lists")
    p.add_argument("--grid", required=True, help="axes separated by spaces: option=value,value,... or "
                                                 "name=label(option=value,...),...")
    p.add_argument("--set", help="options pinned for every run, e.g. \"schedule=constant shift=0\"")
    p.add_argument("--seeds", type=int, default=3, help="seeds per cell (3)")
    p.add_argument("--jobs", type=int, help="runs at a time (default: CPU cores / --threads)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per run (1)")
    p.add_argument("--out", help="output directory (default runs/sweep-<model>)")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("translate", help="translate sentences with a trained translation model",
                       description="translate sentences with a trained translation model",
                       formatter_class=HelpFormatter)
    add_checkpoint(p, "translation model's")
    p.add_argument("sentences", nargs="+", help="source sentences, e.g. \"forty-two\"")
    p.add_argument("--beam", type=int, default=1, help="beam size (1: greedy, the default)")
    p.add_argument("--length-penalty", type=float, default=0.6, help="beam search length penalty alpha")
    p.add_argument("--alignment", metavar="PNG", help="save the attention heat map of the first sentence "
                                                       "(models that expose attention weights)")
    add_device(p)
    p.set_defaults(func=_cmd_translate)

    p = sub.add_parser("sample", help="sample text from a trained language model (char-lm, gpt)",
                       description="sample text from a trained language model (char-lm, gpt)",
                       formatter_class=HelpFormatter)
    add_checkpoint(p, "char-lm or gpt")
    p.add_argument("--length", type=int, default=300,
                   help="characters (char-lm) or tokens (gpt, at most its context) to sample")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="softmax temperature: < 1 more conservative, > 1 more random, 0 greedy")
    p.add_argument("--prime", default="The ", help="text the model reads before sampling")
    p.add_argument("--top-k", type=int, help="gpt: draw among the k likeliest tokens only (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws")
    add_device(p)
    p.set_defaults(func=_cmd_sample)

    bench.add_parser(sub)
    _add_profile_parser(sub)
    return parser


def main(argv=None) -> int:
    from .train.resume import NonFiniteLossError, TrainingInterrupted

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    for name, value in vars(args).items():  # float() accepts "nan" and "inf"; no option of ours does
        if isinstance(value, float) and not math.isfinite(value):
            print(f"pyfastdl {args.command}: error: --{name.replace('_', '-')} must be a finite number, got {value}",
                  file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as e:  # bad data directory, checkpoint or option: say so, no traceback
        print(f"pyfastdl {args.command}: error: {e}", file=sys.stderr)
        return _stop_ranks(2)
    except NonFiniteLossError as e:
        print(f"pyfastdl {args.command}: error: {e}", file=sys.stderr)
        return _stop_ranks(1)
    except TrainingInterrupted as e:  # a checkpoint was saved: exit as a shell reports the signal
        print(f"pyfastdl {args.command}: {e}", file=sys.stderr)
        return e.exit_code  # (every rank of a data parallel run stops at the same step)


def _stop_ranks(code: int) -> int:
    """``code``; in a data parallel run, first abort every rank (the others may be waiting on this one)."""
    from . import distributed

    if distributed.get_world_size() > 1:
        sys.stderr.flush()
        distributed.abort(code)
    return code
