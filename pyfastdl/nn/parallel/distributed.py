"""DistributedDataParallel: one model replica per rank, gradients averaged while backward runs.

Every rank holds the whole model and takes its own share of each batch. After the backward, each
parameter's gradient must be the average of the ranks' gradients, which is what one process would
compute for the whole batch (the loss is a mean). The design is PyTorch's (Li et al., "PyTorch
Distributed", VLDB 2020):

- At wrap time rank 0's parameters and buffers are broadcast, so every replica starts equal (and
  stays equal: the same averaged gradients go into the same optimizer on every rank).
- Parameters are grouped into buckets of about ``bucket_cap_mb`` megabytes in reverse order of
  registration, which is roughly the order in which the backward produces their gradients. A
  post-accumulate-grad hook on each parameter (:mod:`pyfastdl.autograd`) copies its gradient into
  its bucket's flat buffer; when a bucket is full it is all-reduced *without blocking*
  (``MPI_Iallreduce`` / NCCL on the stream), while the backward goes on computing the gradients of
  the earlier layers. Buckets are posted strictly in order so that every rank issues the same
  collectives in the same order. One all-reduce per bucket instead of one per parameter pays the
  latency of a collective a few times per step instead of a hundred.
- MPI moves a non-blocking collective forward only inside MPI calls, so each hook also tests the
  buckets in flight; the overlap is therefore real but progresses at the pace of the hooks.
- A callback queued on the autograd engine runs when the backward ends: it posts any bucket left
  (with zeros for parameters that received no gradient), waits for all of them, and writes the
  averages back into ``.grad``.
- ``broadcast_buffers=True`` (the default, as in torch): each forward first broadcasts rank 0's
  buffers (batch norm's running statistics), so every rank evaluates and saves rank 0's.
- ``no_sync()``: backwards inside it only accumulate local gradients (gradient accumulation);
  the first backward after it averages the accumulated sums.

Cost: per step, bytes(parameters) * 2 (N - 1) / N moved by each rank (ring all-reduce), one copy
of every gradient into and out of its bucket, and one small broadcast of the buffers.
"""

from __future__ import annotations

import contextlib
import time

from ... import distributed as dist
from ...autograd import queue_callback
from ...backend import get_array_module
from ...tensor import Tensor
from ..modules.module import Module

__all__ = ["DistributedDataParallel"]

#: trace-event "threads" of the timeline: the backward's events, and the all-reduces in flight
COMPUTE_TID, ALLREDUCE_TID = 0, 1


def _broadcast_coalesced(tensors, src=0):
    """Broadcast ``tensors`` from rank ``src`` in place: one collective per dtype, on a flat copy."""
    by_dtype = {}
    for t in tensors:
        by_dtype.setdefault((t.dtype, t.device), []).append(t)
    for group in by_dtype.values():
        flat = Tensor(get_array_module(group[0].data).concatenate([t.data.ravel() for t in group]))
        dist.broadcast(flat, src)
        if dist.get_rank() != src:
            start = 0
            for t in group:
                t.data[...] = flat.data[start:start + t.numel()].reshape(t.shape)
                t._version += 1
                start += t.numel()


class _Bucket:
    """Parameters whose gradients travel together, in one flat buffer."""

    def __init__(self, index, params):
        self.index, self.params = index, params
        self.offsets, start = {}, 0
        for p in params:
            self.offsets[id(p)] = (start, start + p.numel())
            start += p.numel()
        self.flat = get_array_module(params[0].data).zeros(start, dtype=params[0].dtype)
        self.ready, self.work, self.posted_at = set(), None, None


class DistributedDataParallel(Module):
    """Wrap ``module`` for data parallel training over the default process group
    (:func:`pyfastdl.distributed.init_process_group` first). Call it like the module; after
    ``loss.backward()`` every parameter's ``.grad`` is the average over the ranks.

    ``bucket_cap_mb``: gradient bucket size (25 MB as in torch). ``broadcast_buffers``: broadcast
    rank 0's buffers before each forward. ``timeline``: a list to which Chrome trace events
    (``chrome://tracing`` / Perfetto; pid = rank) are appended: each gradient becoming ready
    (tid COMPUTE_TID) and each bucket's all-reduce from posting to the poll that found it complete
    (tid ALLREDUCE_TID), for studying the overlap. ``device_ids``,
    ``output_device`` and ``process_group`` are accepted for torch compatibility (one device per
    rank, the default group), and so is ``find_unused_parameters``: a parameter that gets no
    gradient in a backward always contributes zeros to its bucket's average (and keeps
    ``.grad = None`` if no rank gave it a gradient)."""

    def __init__(self, module, device_ids=None, output_device=None, broadcast_buffers: bool = True,
                 process_group=None, bucket_cap_mb: float = 25, find_unused_parameters: bool = False,
                 timeline: list | None = None):
        super().__init__()
        if not dist.is_initialized():
            raise RuntimeError("DistributedDataParallel: the default process group is not initialized; call "
                               "pyfastdl.distributed.init_process_group() first")
        if bucket_cap_mb <= 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.require_backward_grad_sync = True
        self.timeline = timeline
        params = [p for p in module.parameters() if p.requires_grad]
        _broadcast_coalesced(list(module.parameters()) + list(module.buffers()))
        self._buckets = self._make_buckets(params[::-1], bucket_cap_mb * 2**20)
        self._bucket_of = {id(p): b for b in self._buckets for p in b.params}
        self._next_to_post = 0
        self._syncing = False
        self._hooks = [p.register_post_accumulate_grad_hook(self._grad_ready) for p in params]

    @staticmethod
    def _make_buckets(params, cap_bytes):
        buckets, current, size = [], [], 0
        for p in params:
            if current and (size + p.data.nbytes > cap_bytes or p.dtype != current[0].dtype):
                buckets.append(current)
                current, size = [], 0
            current.append(p)
            size += p.data.nbytes
        if current:
            buckets.append(current)
        return [_Bucket(i, b) for i, b in enumerate(buckets)]

    def forward(self, *inputs, **kwargs):
        if self.broadcast_buffers and self.module.training:
            buffers = [b for b in self.module.buffers()]
            if buffers:
                _broadcast_coalesced(buffers)
        return self.module(*inputs, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Backwards inside the block accumulate local gradients without communicating."""
        previous = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    # ---- during backward -------------------------------------------------------------------------
    def _event(self, name, tid, start, end=None, **args):
        if self.timeline is not None:
            event = {"name": name, "ph": "X" if end is not None else "i", "ts": start * 1e6, "pid": dist.get_rank(),
                     "tid": tid, "args": args}
            if end is not None:
                event["dur"] = (end - start) * 1e6
            else:
                event["s"] = "t"
            self.timeline.append(event)

    def _grad_ready(self, p):
        if not self.require_backward_grad_sync:
            return
        if not self._syncing:
            self._syncing = True
            queue_callback(self._finish_backward)
        bucket = self._bucket_of[id(p)]
        start, end = bucket.offsets[id(p)]
        bucket.flat[start:end] = p.grad.data.ravel()
        bucket.ready.add(id(p))
        self._event("grad ready", COMPUTE_TID, time.perf_counter(), bucket=bucket.index, shape=list(p.shape))
        self._post_ready()
        self._progress()

    def _post(self, bucket):
        bucket.posted_at = time.perf_counter()
        bucket.work = dist.all_reduce(Tensor(bucket.flat), dist.ReduceOp.AVG, async_op=True)
        self._next_to_post = bucket.index + 1

    def _post_ready(self):
        while self._next_to_post < len(self._buckets):
            bucket = self._buckets[self._next_to_post]
            if len(bucket.ready) < len(bucket.params):
                return
            self._post(bucket)

    def _progress(self):
        """Test the buckets in flight (MPI advances a collective only inside such calls)."""
        for bucket in self._buckets[:self._next_to_post]:
            if bucket.work is not None and bucket.work.is_completed():
                self._complete(bucket)

    def _complete(self, bucket):
        self._event(f"all-reduce bucket {bucket.index}", ALLREDUCE_TID, bucket.posted_at, time.perf_counter(),
                    bytes=int(bucket.flat.nbytes))
        bucket.work = None

    def _finish_backward(self):
        """End of the backward: post what is left, wait for every bucket, write the averages back."""
        for bucket in self._buckets[self._next_to_post:]:
            for p in bucket.params:
                if id(p) not in bucket.ready:  # no gradient this step: contributes zeros
                    start, end = bucket.offsets[id(p)]
                    bucket.flat[start:end] = 0
            self._post(bucket)
        for bucket in self._buckets:
            if bucket.work is not None:
                bucket.work.wait()
                self._complete(bucket)
            for p in bucket.params:
                start, end = bucket.offsets[id(p)]
                average = bucket.flat[start:end].reshape(p.shape)
                if p.grad is None:  # unused here: takes the average unless no rank used it
                    if average.any():
                        p.grad = Tensor(average.copy())
                else:
                    p.grad.data[...] = average
            bucket.ready.clear()
        self._next_to_post = 0
        self._syncing = False
        self._event("gradients averaged", COMPUTE_TID, time.perf_counter())

    def extra_repr(self) -> str:
        return f"buckets={len(self._buckets)}, world_size={dist.get_world_size()}"
