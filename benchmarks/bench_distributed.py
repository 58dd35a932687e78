"""Data parallel benchmark: all-reduce bandwidth, ResNet-20 step scaling, and a timeline of the overlap.

    python benchmarks/bench_distributed.py [--out benchmarks/results] [--ranks 2]

runs three measurements, each in ranks started with ``mpiexec`` (one kernel thread per rank), and
writes ``distributed-<machine>-<date>.json`` / ``.md`` and ``ddp_timeline_resnet20_2ranks.json``:

1. ``allreduce``: ``pyfastdl.distributed.all_reduce`` (non-blocking ``Iallreduce`` polled against a
   deadline) against mpi4py's own blocking ``Allreduce`` on the same buffer, alternated, over message
   sizes from 4 KiB to 16 MiB of float32. Bus bandwidth = 2 (N - 1) / N * bytes / time, the bytes a
   ring all-reduce moves per rank; ratio = mpi4py's time / ours (as in the other results: > 1 means
   ours is faster), near 1 when our layer adds nothing to MPI.
2. ``step``: one training step (forward, backward with bucketed all-reduce, SGD) of ResNet-20 on
   32x32 images at global batch 64, on 1 rank and on N ranks (64 / N each), one thread each, and
   for comparison one rank with N threads. On a 2-core machine 2 ranks have 2 cores between them,
   so the step is compute-bound and the ideal speed-up is 2.
3. ``timeline``: one 2-rank step of ResNet-20 with 0.1 MB buckets, recorded as Chrome trace events
   (open in chrome://tracing or ui.perfetto.dev): forward and backward spans, each gradient
   becoming ready, and each bucket's all-reduce from posting to completion. A bucket whose
   all-reduce completes before the backward span ends overlapped with the backward.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


# ---- inside the ranks ----------------------------------------------------------------------------
def rank_allreduce(args):
    from mpi4py import MPI

    import pyfastdl as pf
    import pyfastdl.distributed as dist

    dist.init_process_group("mpi")
    comm, world = MPI.COMM_WORLD, dist.get_world_size()
    rows = []
    for size in [2**k for k in range(12, 25, 2)]:  # bytes: 4 KiB .. 16 MiB
        t = pf.tensor(np.random.default_rng(0).standard_normal(size // 4).astype(np.float32))
        reps = max(5, min(200, 2**26 // size))
        ours, theirs = [], []
        for _ in range(reps):  # alternate the two so that load affects both alike
            comm.Barrier()
            start = time.perf_counter()
            dist.all_reduce(t)
            ours.append(time.perf_counter() - start)
            comm.Barrier()
            start = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, t.data)
            theirs.append(time.perf_counter() - start)
        ours_s, theirs_s = float(np.median(ours)), float(np.median(theirs))
        bus = 2 * (world - 1) / world * size
        rows.append({"bytes": size, "ours_us": ours_s * 1e6, "mpi4py_us": theirs_s * 1e6,
                     "ours_GBps": bus / ours_s / 1e9, "mpi4py_GBps": bus / theirs_s / 1e9,
                     "ratio": theirs_s / ours_s})
    if dist.get_rank() == 0:
        print(json.dumps(rows))
    dist.destroy_process_group()


def _resnet20_step(world, timeline=None, bucket_cap_mb=25):
    import pyfastdl as pf
    from pyfastdl import nn
    from pyfastdl.models.resnet import resnet20
    from pyfastdl.nn import functional as F
    from pyfastdl.nn.parallel import DistributedDataParallel

    pf.manual_seed(0)
    model = resnet20(num_classes=10)
    if world > 1:
        model = DistributedDataParallel(nn.SyncBatchNorm.convert_sync_batchnorm(model), bucket_cap_mb=bucket_cap_mb,
                                        timeline=timeline)
    opt = pf.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = pf.tensor(rng.standard_normal((64 // world, 3, 32, 32)).astype(np.float32))
    y = pf.tensor(rng.integers(0, 10, 64 // world))

    def step(record=False):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        if record and timeline is not None:
            from pyfastdl import distributed as dist
            from pyfastdl.nn.parallel.distributed import ALLREDUCE_TID, COMPUTE_TID

            rank = dist.get_rank()
            for name, a, b in (("forward", t0, t1), ("backward (with the end-of-backward wait)", t1, t2)):
                timeline.append({"name": name, "ph": "X", "ts": a * 1e6, "dur": (b - a) * 1e6, "pid": rank,
                                 "tid": COMPUTE_TID, "args": {}})
            timeline.extend({"name": "thread_name", "ph": "M", "pid": rank, "tid": tid, "args": {"name": label}}
                            for tid, label in ((COMPUTE_TID, "compute"), (ALLREDUCE_TID, "all-reduce")))
            timeline.append({"name": "process_name", "ph": "M", "pid": rank, "args": {"name": f"rank {rank}"}})

    return step


def rank_step(args):
    import pyfastdl
    import pyfastdl.distributed as dist

    pyfastdl.set_num_threads(args.threads)
    dist.init_process_group("mpi")
    world = dist.get_world_size()
    step = _resnet20_step(world)
    for _ in range(2):
        step()
    times = []
    for _ in range(args.steps):
        dist.barrier()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    if dist.get_rank() == 0:
        print(json.dumps({"ranks": world, "threads_per_rank": args.threads, "global_batch": 64,
                          "step_s": float(np.median(times)), "all_steps_s": times}))
    dist.destroy_process_group()


def rank_timeline(args):
    import pyfastdl.distributed as dist

    dist.init_process_group("mpi")
    timeline = []
    step = _resnet20_step(dist.get_world_size(), timeline, bucket_cap_mb=0.1)
    step()  # warm-up
    timeline.clear()
    step(record=True)
    everything = [None] * dist.get_world_size()
    dist.all_gather_object(everything, timeline)
    if dist.get_rank() == 0:
        events = [e for rank_events in everything for e in rank_events]
        t0 = min(e["ts"] for e in events if "ts" in e)
        for e in events:
            if "ts" in e:
                e["ts"] -= t0
        print(json.dumps(events))
    dist.destroy_process_group()


# ---- the driver ----------------------------------------------------------------------------------
def _run(ranks, mode, extra=()):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = ([sys.executable] if ranks == 1 else ["mpiexec", "-n", str(ranks), sys.executable])
    out = subprocess.run(cmd + [os.path.abspath(__file__), "--rank-mode", mode, *extra], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def overlap_summary(events):
    """Per rank: when the backward ended, and the buckets whose all-reduce finished before that."""
    summary = {}
    for rank in sorted({e["pid"] for e in events}):
        mine = [e for e in events if e["pid"] == rank]
        backward = next(e for e in mine if e["name"].startswith("backward"))
        end = backward["ts"] + backward["dur"]
        ready = [e["ts"] for e in mine if e["name"] == "grad ready"]
        reduces = [e for e in mine if e["name"].startswith("all-reduce")]
        summary[rank] = {"buckets": len(reduces),
                         "completed_before_last_gradient": sum(e["ts"] + e["dur"] < max(ready) for e in reduces),
                         "backward_ms": backward["dur"] / 1e3,
                         "last_gradient_ms_into_backward": (max(ready) - backward["ts"]) / 1e3,
                         "end_of_backward_wait_ms": (end - max(ready)) / 1e3}
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--rank-mode", choices=["allreduce", "step", "timeline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_mode:
        return {"allreduce": rank_allreduce, "step": rank_step, "timeline": rank_timeline}[args.rank_mode](args)

    import pyfastdl
    from pyfastdl.train.loop import _device_name

    load = os.getloadavg()
    allreduce = _run(args.ranks, "allreduce")
    steps = [_run(n, "step", ["--steps", str(args.steps), "--threads", str(t)])
             for n, t in ((1, 1), (args.ranks, 1), (1, args.ranks))]
    timeline = _run(2, "timeline")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout
    from mpi4py import MPI

    record = {"date": datetime.date.today().isoformat(), "commit": commit.strip(), "device": _device_name("cpu"),
              "machine": platform.machine(), "threads_per_rank": 1, "load_before": load,
              "mpi": MPI.Get_library_version().splitlines()[0], "pyfastdl": pyfastdl.__version__,
              "allreduce": allreduce, "resnet20_step": steps,
              "speedup": steps[0]["step_s"] / steps[1]["step_s"], "overlap": overlap_summary(timeline)}
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"distributed-cpu-{os.cpu_count()}core-{record['date']}")
    with open(stem + ".json", "w") as f:
        json.dump(record, f, indent=2)
    with open(os.path.join(args.out, "ddp_timeline_resnet20_2ranks.json"), "w") as f:
        json.dump({"traceEvents": timeline, "displayTimeUnit": "ms"}, f)
    lines = [f"# Data parallel on {record['device']}, {args.ranks} ranks x 1 thread ({record['mpi']})", "",
             f"commit {record['commit']}, {record['date']}, load average before {load[0]:.2f}", "",
             "| message | ours (us) | mpi4py Allreduce (us) | ours GB/s | mpi4py GB/s | mpi4py / ours |",
             "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['bytes'] // 1024} KiB | {r['ours_us']:.0f} | {r['mpi4py_us']:.0f} | {r['ours_GBps']:.2f} | "
              f"{r['mpi4py_GBps']:.2f} | {r['ratio']:.2f} |" for r in allreduce]
    lines += ["", "| ResNet-20 step, global batch 64 | ranks | threads per rank | s/step (median) |",
              "|---|---:|---:|---:|"]
    lines += [f"| | {s['ranks']} | {s['threads_per_rank']} | {s['step_s']:.3f} |" for s in steps]
    lines += ["", f"speed-up 1 -> {args.ranks} ranks: {record['speedup']:.2f}x "
              f"(compute-bound: {args.ranks} ranks on {os.cpu_count()} cores; one rank with {args.ranks} "
              f"threads: {steps[0]['step_s'] / steps[2]['step_s']:.2f}x)", "",
              "Overlap (one 2-rank step, 0.1 MB buckets): " + "; ".join(
                  f"rank {r}: {o['completed_before_last_gradient']} of {o['buckets']} bucket all-reduces done before "
                  f"the last gradient was ready, {o['last_gradient_ms_into_backward']:.0f} ms into a "
                  f"{o['backward_ms']:.0f} ms backward" for r, o in record["overlap"].items())]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
