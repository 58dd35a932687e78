"""Collective communication between processes, with ``torch.distributed``'s names.

Processes ("ranks") are started by an MPI launcher (``mpiexec -n 4 python train.py``, or across
machines with a host file) and join one process group with :func:`init_process_group`. Two backends
move the data; both learn who is who from MPI:

- ``"mpi"`` (CPU tensors): MPI's own collectives through mpi4py. Every collective is posted
  non-blocking (``Iallreduce``, ``Ibcast``, ``Iallgather``, ``Ibarrier``) so that a caller can
  keep computing while it progresses (data parallel training overlaps gradient all-reduces with the
  backward this way) and so that waiting can time out.
- ``"nccl"`` (CUDA tensors): NVIDIA's NCCL through CuPy's binding ``cupy.cuda.nccl``. Rank 0 makes
  the NCCL unique id and MPI broadcasts it; the collectives are queued on CuPy's current stream,
  ordered with the kernels around them. Each rank drives the GPU numbered by its rank on the node.

A failed rank must not leave the others waiting forever. Every wait polls its request against a
deadline (``timeout``, 30 minutes unless told) and raises :class:`DistributedError` when it passes;
and :func:`init_process_group` installs an exception hook that, after printing the traceback, calls
``MPI.COMM_WORLD.Abort``, which makes the launcher stop every rank. So a rank that raises stops the
job at once, and a rank that stalls stops it after ``timeout``.

The operations work in place on Tensors as torch's do: ``all_reduce(t)`` leaves the reduction in
``t`` on every rank. With ``async_op=True`` they return a :class:`Work` whose ``wait()`` completes
them. There is one group, of all ranks: the ``group`` arguments are there for torch's signatures.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
import traceback

import numpy as np

from .backend import cuda_is_available, cuda_unavailable_reason, cupy_or_none, get_array_module

__all__ = ["ReduceOp", "Work", "DistributedError", "init_process_group", "is_initialized", "is_available",
           "get_rank", "get_world_size", "get_backend", "barrier", "all_reduce", "broadcast", "all_gather",
           "all_gather_object", "broadcast_object_list", "destroy_process_group", "abort", "launched_by_mpi",
           "local_rank", "local_world_size"]

DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


class ReduceOp:
    """How :func:`all_reduce` combines the ranks' values (torch.distributed.ReduceOp's names)."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"


_OPS = (ReduceOp.SUM, ReduceOp.AVG, ReduceOp.PRODUCT, ReduceOp.MIN, ReduceOp.MAX)


class DistributedError(RuntimeError):
    """A collective did not complete in time (another rank failed or stalled), or bad use of the group."""


# ---- the launcher ------------------------------------------------------------------------------
_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
_LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK")
_LOCAL_SIZE_VARS = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE")


def _env_int(names, default):
    for name in names:
        if name in os.environ:
            return int(os.environ[name])
    return default


def launched_by_mpi() -> bool:
    """Whether an MPI launcher (mpiexec/mpirun of MPICH, Open MPI or MVAPICH) started this process
    with more than one rank: read from the environment, without importing MPI."""
    return _env_int(_SIZE_VARS, 1) > 1


def local_rank() -> int:
    """This process's index among the ranks on its machine (the launcher's environment; 0 if none)."""
    return _env_int(_LOCAL_RANK_VARS, 0)


def local_world_size() -> int:
    """How many ranks the launcher started on this machine (1 if none)."""
    return _env_int(_LOCAL_SIZE_VARS, 1)


def is_available() -> bool:
    """Whether mpi4py (the transport every backend starts from) can be imported."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise RuntimeError("pyfastdl.distributed needs mpi4py and an MPI library: pip install 'pyfastdl[mpi]' "
                           f"(installs mpi4py and the mpich wheel) ({e})") from None
    return MPI


# ---- waiting with a deadline -------------------------------------------------------------------
SPIN_S = 0.05


def _wait_until(done, timeout: float, what: str):
    """Call ``done()`` (which also drives MPI's progress) until it is true; raise DistributedError
    after ``timeout`` seconds. It polls without pause for the first SPIN_S seconds, as MPI's own
    blocking calls do (sleeping would cost a scheduler time slice per collective), then sleeps up to
    1 ms between polls so that a long wait for a slow rank leaves the core to others."""
    start = time.monotonic()
    delay = 0.0
    while not done():
        waited = time.monotonic() - start
        if waited > timeout:
            raise DistributedError(
                f"{what}: rank {get_rank()} waited {waited:.0f}s (timeout {timeout:.0f}s) for the other ranks; "
                "one of them has failed or stalled")
        if waited > SPIN_S:
            time.sleep(delay)
            delay = min(1e-3, max(delay * 2, 1e-5))


class Work:
    """A collective in flight (torch's work handle): ``wait()`` blocks until it is done (raising
    :class:`DistributedError` after the group's timeout), ``is_completed()`` asks without blocking."""

    def __init__(self, test, what: str, timeout: float, finish=None):
        self._test, self._what, self._timeout, self._finish = test, what, timeout, finish
        self._done = False

    def is_completed(self) -> bool:
        if not self._done and self._test():
            self._complete()
        return self._done

    def wait(self, timeout=None) -> bool:
        if not self._done:
            _wait_until(self._test, self._timeout if timeout is None else _seconds(timeout), self._what)
            self._complete()
        return True

    def _complete(self):
        self._done = True
        if self._finish is not None:
            self._finish()


def _seconds(timeout) -> float:
    return timeout.total_seconds() if isinstance(timeout, datetime.timedelta) else float(timeout)


# ---- backends ----------------------------------------------------------------------------------
class _MPIBackend:
    """CPU (numpy) arrays through MPI's non-blocking collectives."""

    name = "mpi"

    def __init__(self, comm, timeout):
        self.comm, self.timeout = comm, timeout
        MPI = _mpi()
        self._ops = {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD,
                     ReduceOp.MIN: MPI.MIN, ReduceOp.MAX: MPI.MAX}
        self._in_place = MPI.IN_PLACE

    def _work(self, request, what, finish=None):
        return Work(request.Test, what, self.timeout, finish)

    def all_reduce(self, array, op):
        finish = None
        if op == ReduceOp.AVG:
            def finish():
                array[...] /= self.comm.Get_size()
        return self._work(self.comm.Iallreduce(self._in_place, array, self._ops[op]), "all_reduce", finish)

    def broadcast(self, array, src):
        return self._work(self.comm.Ibcast(array, root=src), "broadcast")

    def all_gather(self, out, array):
        return self._work(self.comm.Iallgather(array, out), "all_gather")

    def barrier(self):
        return self._work(self.comm.Ibarrier(), "barrier")

    def close(self):
        pass


class _NCCLBackend:
    """CUDA (cupy) arrays through NCCL, queued on CuPy's current stream. The unique id that lets
    the ranks find each other is made by rank 0 and broadcast over MPI."""

    name = "nccl"

    def __init__(self, comm, timeout):
        self.comm, self.timeout = comm, timeout
        cp = cupy_or_none()
        if cp is None or not cuda_is_available():
            raise RuntimeError("init_process_group(backend='nccl') needs CuPy and a CUDA GPU "
                               f"({cuda_unavailable_reason()}); use backend='mpi' for CPU tensors")
        from cupy.cuda import nccl

        self.cp, self.nccl = cp, nccl
        cp.cuda.Device(local_rank() % cp.cuda.runtime.getDeviceCount()).use()
        uid = nccl.get_unique_id() if comm.Get_rank() == 0 else None
        uid = comm.bcast(uid, root=0)
        self.nccl_comm = nccl.NcclCommunicator(comm.Get_size(), uid, comm.Get_rank())
        self._ops = {ReduceOp.SUM: nccl.NCCL_SUM, ReduceOp.AVG: nccl.NCCL_SUM, ReduceOp.PRODUCT: nccl.NCCL_PROD,
                     ReduceOp.MIN: nccl.NCCL_MIN, ReduceOp.MAX: nccl.NCCL_MAX}
        self._dtypes = {np.dtype(np.float16): nccl.NCCL_FLOAT16, np.dtype(np.float32): nccl.NCCL_FLOAT32,
                        np.dtype(np.float64): nccl.NCCL_FLOAT64, np.dtype(np.int32): nccl.NCCL_INT32,
                        np.dtype(np.int64): nccl.NCCL_INT64, np.dtype(np.uint8): nccl.NCCL_UINT8}

    def _dtype(self, array, what):
        if array.dtype not in self._dtypes:
            raise TypeError(f"{what}: NCCL cannot move dtype {array.dtype}")
        return self._dtypes[array.dtype]

    def _work(self, what):
        """The stream's work so far as a Work: done when an event recorded now has been reached."""
        event = self.cp.cuda.get_current_stream().record()
        return Work(lambda: event.done, what, self.timeout)

    def all_reduce(self, array, op):
        stream = self.cp.cuda.get_current_stream().ptr
        self.nccl_comm.allReduce(array.data.ptr, array.data.ptr, array.size, self._dtype(array, "all_reduce"),
                                 self._ops[op], stream)
        if op == ReduceOp.AVG:
            array /= self.comm.Get_size()  # queued on the same stream, after the sum
        return self._work("all_reduce")

    def broadcast(self, array, src):
        self.nccl_comm.bcast(array.data.ptr, array.size, self._dtype(array, "broadcast"), src,
                             self.cp.cuda.get_current_stream().ptr)
        return self._work("broadcast")

    def all_gather(self, out, array):
        self.nccl_comm.allGather(array.data.ptr, out.data.ptr, array.size, self._dtype(array, "all_gather"),
                                 self.cp.cuda.get_current_stream().ptr)
        return self._work("all_gather")

    def barrier(self):
        request = self.comm.Ibarrier()
        return Work(request.Test, "barrier", self.timeout)

    def close(self):
        self.nccl_comm.destroy()


_BACKENDS = {"mpi": _MPIBackend, "nccl": _NCCLBackend}


class _Group:
    def __init__(self, backend_impl, comm):
        self.backend, self.comm = backend_impl, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()


_group: _Group | None = None


# ---- the process group -------------------------------------------------------------------------
def _abort_on_exception(previous):
    """An exception hook: print the traceback (naming the rank), then abort every rank."""

    def hook(exc_type, exc, tb):
        if exc_type is KeyboardInterrupt or not is_initialized():  # Ctrl-C reaches every rank by itself
            previous(exc_type, exc, tb)
            return
        sys.stderr.write(f"pyfastdl.distributed: rank {get_rank()} failed; aborting all ranks\n")
        sys.stderr.write("".join(traceback.format_exception(exc_type, exc, tb)))
        sys.stderr.flush()
        abort(1)

    return hook


def abort(code: int = 1) -> None:
    """Stop every rank now (``MPI_Abort``): for a rank that cannot go on while the others wait on it."""
    _mpi().COMM_WORLD.Abort(code)


def init_process_group(backend: str | None = None, init_method=None, timeout=None, world_size: int = -1,
                       rank: int = -1, abort_on_exception: bool = True) -> None:
    """Join the process group of every rank the MPI launcher started (a single process on its own is
    a group of one). ``backend``: ``"mpi"`` (CPU tensors) or ``"nccl"`` (CUDA tensors); ``None``
    picks nccl where a GPU is usable, else mpi. ``timeout`` (seconds or a timedelta, 30 minutes by
    default) bounds every wait. ``world_size``/``rank``, if given, must agree with the launcher's.
    ``abort_on_exception``: an uncaught exception on any rank aborts them all (see the module notes).
    ``init_method`` is accepted for torch compatibility; MPI already knows how to find the ranks."""
    global _group
    if _group is not None:
        raise DistributedError("init_process_group: the default process group is already initialized")
    if backend is None:
        backend = "nccl" if cuda_is_available() else "mpi"
    if backend not in _BACKENDS:
        raise ValueError(f"init_process_group: backend must be one of {sorted(_BACKENDS)}, got {backend!r}")
    if init_method not in (None, "env://", "mpi://"):
        raise ValueError(f"init_process_group: init_method {init_method!r} is not supported; the ranks are found "
                         "through MPI (start them with mpiexec)")
    MPI = _mpi()
    comm = MPI.COMM_WORLD
    for name, given, actual in (("world_size", world_size, comm.Get_size()), ("rank", rank, comm.Get_rank())):
        if given not in (-1, None) and given != actual:
            raise ValueError(f"init_process_group: {name}={given} but the MPI launcher gave {actual}")
    seconds = _seconds(DEFAULT_TIMEOUT if timeout is None else timeout)
    _group = _Group(_BACKENDS[backend](comm, seconds), comm)
    if abort_on_exception and comm.Get_size() > 1 and not getattr(sys.excepthook, "_pyfastdl_abort", False):
        sys.excepthook = _abort_on_exception(sys.excepthook)
        sys.excepthook._pyfastdl_abort = True


def is_initialized() -> bool:
    return _group is not None


def _require(what):
    if _group is None:
        raise DistributedError(f"{what}: the default process group is not initialized; call "
                               "pyfastdl.distributed.init_process_group() first")
    return _group


def get_rank() -> int:
    """This process's rank in the group (0 when no group is initialized, like a one-process job)."""
    return _group.rank if _group is not None else 0


def get_world_size() -> int:
    """The number of ranks (1 when no group is initialized)."""
    return _group.size if _group is not None else 1


def get_backend() -> str:
    return _require("get_backend").backend.name


def destroy_process_group() -> None:
    """Leave the group (after a barrier, so no rank tears down while another still sends)."""
    global _group
    group = _require("destroy_process_group")
    group.backend.barrier().wait()
    group.backend.close()
    _group = None


# ---- collectives on Tensors --------------------------------------------------------------------
def _array(tensor, what):
    from .tensor import Tensor

    if not isinstance(tensor, Tensor):
        raise TypeError(f"{what}: expected a Tensor, got {type(tensor).__name__}")
    group = _require(what)
    device = tensor.device
    if (group.backend.name == "mpi") != (device == "cpu"):
        raise ValueError(f"{what}: backend {group.backend.name!r} works on "
                         f"{'CPU' if group.backend.name == 'mpi' else 'CUDA'} tensors; this tensor is on {device}")
    array = tensor.data
    if not array.flags.c_contiguous:
        raise ValueError(f"{what}: the tensor (shape {tensor.shape}) must be contiguous")
    return group, array


def _run(work, async_op):
    if async_op:
        return work
    work.wait()
    return None


def all_reduce(tensor, op: str = ReduceOp.SUM, group=None, async_op: bool = False):
    """Reduce ``tensor`` over all ranks with ``op`` and leave the result in ``tensor`` on each, in place."""
    if op not in _OPS:
        raise ValueError(f"all_reduce: op must be one of ReduceOp.{', ReduceOp.'.join(o.upper() for o in _OPS)}, "
                         f"got {op!r}")
    g, array = _array(tensor, "all_reduce")
    if op == ReduceOp.AVG and array.dtype.kind != "f":
        raise TypeError(f"all_reduce: ReduceOp.AVG needs a floating-point tensor, got {array.dtype}")
    tensor._version += 1
    return _run(g.backend.all_reduce(array, op), async_op)


def broadcast(tensor, src: int = 0, group=None, async_op: bool = False):
    """Copy rank ``src``'s ``tensor`` into ``tensor`` on every other rank, in place."""
    g, array = _array(tensor, "broadcast")
    if not 0 <= src < g.size:
        raise ValueError(f"broadcast: src={src} is not a rank of a group of {g.size}")
    tensor._version += 1
    return _run(g.backend.broadcast(array, src), async_op)


def all_gather(tensor_list, tensor, group=None, async_op: bool = False):
    """Fill ``tensor_list[i]`` with rank i's ``tensor`` on every rank (all tensors of one shape and dtype)."""
    g, array = _array(tensor, "all_gather")
    if len(tensor_list) != g.size:
        raise ValueError(f"all_gather: tensor_list has {len(tensor_list)} tensors for a group of {g.size} ranks")
    for t in tensor_list:
        if t.shape != tensor.shape or t.dtype != tensor.dtype or t.device != tensor.device:
            raise ValueError(f"all_gather: every output must be {tensor.dtype} {tensor.shape} on {tensor.device}; "
                             f"got {t.dtype} {t.shape} on {t.device}")
    out = get_array_module(array).empty((g.size,) + array.shape, array.dtype)

    def scatter_out():
        for i, t in enumerate(tensor_list):
            t.data[...] = out[i]
            t._version += 1

    work = g.backend.all_gather(out, array)
    work._finish = scatter_out
    return _run(work, async_op)


def all_gather_object(object_list: list, obj) -> None:
    """Fill ``object_list`` (of world-size length) with every rank's picklable ``obj``, in rank order."""
    g = _require("all_gather_object")
    if len(object_list) != g.size:
        raise ValueError(f"all_gather_object: object_list has {len(object_list)} entries for {g.size} ranks")
    g.backend.barrier().wait()  # every rank has arrived (or the timeout fires) before the blocking exchange
    object_list[:] = g.comm.allgather(obj)


def broadcast_object_list(object_list: list, src: int = 0) -> None:
    """Replace ``object_list``'s entries on every rank by rank ``src``'s (picklable objects)."""
    g = _require("broadcast_object_list")
    g.backend.barrier().wait()  # as in all_gather_object
    object_list[:] = g.comm.bcast(list(object_list), root=src)


def barrier(group=None, async_op: bool = False):
    """Wait until every rank has reached the barrier."""
    return _run(_require("barrier").backend.barrier(), async_op)
