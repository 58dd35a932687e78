"""Run by tests/test_distributed.py under ``mpiexec -n N`` (or alone, as the one-process reference).

    python tests/distributed_worker.py CASE DTYPE OUT_PREFIX [STEPS]

CASE ``convnet`` (no batch norm) or ``resnet20`` (SyncBatchNorm): trains for STEPS steps of SGD
with momentum and weight decay on a fixed random dataset, global batch 8 split over the ranks
(DistributedSampler shards, DistributedDataParallel averages), and writes the final state of every
rank to OUT_PREFIX.rank<r>.npz. ``nosync``: the convnet, each rank's share taken as two
micro-batches, the first inside ``no_sync()``. ``fail``: rank 1 raises at step 3. ``stall``: rank 1
sleeps at step 3 while the others wait (timeout 3 s). ``overlap``: ResNet-20 with 0.05 MB buckets
and a DDP timeline, written to OUT_PREFIX.rank<r>.json.
"""

import json
import sys
import time

import numpy as np

import pyfastdl as pf
import pyfastdl.distributed as dist
from pyfastdl import nn
from pyfastdl.data import ArrayDataset, DataLoader, DistributedSampler
from pyfastdl.nn import functional as F
from pyfastdl.nn.parallel import DistributedDataParallel

GLOBAL_BATCH = 8


def convnet():
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3), nn.Tanh(),
                         nn.Flatten(), nn.Linear(8 * 5 * 5, 10))


def resnet20():
    from pyfastdl.models.resnet import resnet20 as build

    return nn.SyncBatchNorm.convert_sync_batchnorm(build(num_classes=10))


def main(case, dtype, out, steps=10):
    dist.init_process_group("mpi", timeout=3 if case == "stall" else 60)
    rank, world = dist.get_rank(), dist.get_world_size()
    pf.manual_seed(0)
    model = (resnet20() if case in ("resnet20", "overlap") else convnet()).to(dtype=dtype)
    timeline = [] if case == "overlap" else None
    if world > 1:  # replicas start from rank 0's parameters: make the others differ to prove the broadcast
        with pf.no_grad():
            for p in model.parameters():
                p.data = p.data + rank
        model = DistributedDataParallel(model, bucket_cap_mb=0.05 if timeline is not None else 0.01,
                                        timeline=timeline)
    # float32 ResNet-20 is fragile: a ReLU input lands within float32 rounding of 0 and flips, and
    # float32 itself departs from float64 (one process: up to 1.9 relative on a batch-norm bias). Which
    # data seeds flip within 10 steps moves with the kernels' rounding (seeds 1, 2, 4, 5 were clean
    # until a convolution variant change; after it 2 and 6 of 1-7): the test runs float32 ResNet-20
    # for 2 steps, where seeds 1, 2, 4-7 agree (seed 3 flips even there). float64 agrees to 1e-14 with
    # every seed over 10 steps.
    rng = np.random.default_rng(4)
    size = 8 if case == "resnet20" else 16 if case == "overlap" else 14
    data = ArrayDataset(rng.standard_normal((96, 3, size, size)).astype(dtype), rng.integers(0, 10, 96))
    sampler = DistributedSampler(data, seed=5)
    loader = DataLoader(data, batch_size=GLOBAL_BATCH // world, sampler=sampler)
    # lr 0.01: at 0.05 one float32 process alone departs from float64 by 6% in the gradients by step 5
    # (rounding amplified as described below): that would test conditioning, not DDP
    opt = pf.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    step, epoch = 0, 0
    while step < steps:
        sampler.set_epoch(epoch)
        for x, y in loader:
            if case in ("fail", "stall") and rank == 1 and step == 3:
                if case == "fail":
                    raise RuntimeError("rank 1 fails on purpose")
                time.sleep(600)
            opt.zero_grad()
            if case == "nosync" and world > 1:
                half = len(y) // 2
                with model.no_sync():
                    (F.cross_entropy(model(pf.tensor(x[:half])), pf.tensor(y[:half])) * 0.5).backward()
                (F.cross_entropy(model(pf.tensor(x[half:])), pf.tensor(y[half:])) * 0.5).backward()
            else:
                F.cross_entropy(model(pf.tensor(x)), pf.tensor(y)).backward()
            opt.step()
            step += 1
            if step == steps:
                break
        epoch += 1
    if timeline is not None:
        with open(f"{out}.rank{rank}.json", "w") as f:
            json.dump(timeline, f)
    module = model.module if world > 1 else model
    np.savez(f"{out}.rank{rank}.npz", **{k: v.numpy() for k, v in module.state_dict().items()})
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:]))
