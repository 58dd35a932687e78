"""Backend dispatch: which array library and which compiled kernels serve an array.

Device "cpu" holds numpy arrays and runs ``pyfastdl._C.cpu``; device "cuda" holds cupy arrays and
runs ``pyfastdl._C.cuda`` on cupy's current stream. This module is the only place that knows that.
Moving data between devices is always explicit (:func:`to_device`); nothing here copies silently.
"""

from __future__ import annotations

import functools
import math
import numbers
import operator

import numpy as np

from . import profiler
from ._core import _C

DEVICES = ("cpu", "cuda")


@functools.lru_cache(maxsize=None)
def _import_cupy():
    """cupy, or the reason it cannot be used (a string)."""
    try:
        import cupy  # noqa: PLC0415
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return f"cupy is not importable ({type(exc).__name__}: {exc})"
    return cupy


def cupy_or_none():
    cp = _import_cupy()
    return None if isinstance(cp, str) else cp


def cuda_unavailable_reason() -> str | None:
    """None when CUDA tensors can be used here; otherwise a sentence saying why not."""
    if not _C.WITH_CUDA:
        return "pyfastdl was built without CUDA kernels (nvcc was not found at build time, or PYFASTDL_CUDA=OFF)"
    try:
        if _C.cuda.device_count() == 0:
            return "the CUDA runtime finds no device"
    except RuntimeError as exc:  # no driver, or no GPU: the runtime says which
        return f"the CUDA runtime reports {exc}"
    cp = _import_cupy()
    if isinstance(cp, str):
        return cp + "; install pyfastdl[cuda]"
    try:
        n = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"cupy sees no GPU ({exc})"
    if n == 0:
        return "cupy sees no GPU"
    return None


def cuda_is_available() -> bool:
    return cuda_unavailable_reason() is None


def normalize_device(device) -> str:
    if device is None:
        return "cpu"
    name = str(device)
    if name.startswith("cuda"):
        name = "cuda"
    if name not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")
    return name


def device_of(array) -> str:
    """The device an ndarray lives on (TypeError for anything that is not an ndarray)."""
    if type(array) is np.ndarray or isinstance(array, np.ndarray):
        return "cpu"
    cp = cupy_or_none()
    if cp is not None and isinstance(array, cp.ndarray):
        return "cuda"
    raise TypeError(f"expected a numpy or cupy array, got {type(array).__name__}")


def is_array(obj) -> bool:
    """Whether ``obj`` is a numpy or cupy ndarray."""
    try:
        device_of(obj)
    except TypeError:
        return False
    return True


def array_module(device: str):
    """numpy for "cpu", cupy for "cuda" (RuntimeError saying why when CUDA is unusable)."""
    if device == "cpu" or normalize_device(device) == "cpu":
        return np
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"device 'cuda' is not available: {reason}")
    return _import_cupy()


MAX_BYTES = 2**63 - 1  # numpy and cupy address an array's bytes with a signed 64-bit count


def check_size(op: str, what: str, shape, dtype) -> tuple:
    """``shape`` as a tuple of ints, checked in Python's unbounded integers before anything is allocated:
    each size a non-negative integer and the array's byte count within :data:`MAX_BYTES`. Otherwise a
    TypeError or ValueError naming ``op``, ``what`` and the shape (numpy's own checks say "negative
    dimensions are not allowed" or "array is too big", naming no op)."""
    try:
        shape = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise TypeError(f"{op}: {what} sizes must be integers, got {tuple(shape)!r}") from None
    if any(d < 0 for d in shape):
        raise ValueError(f"{op}: {what} sizes must be non-negative, got {shape}")
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    if nbytes > MAX_BYTES:
        raise ValueError(f"{op}: {what} of shape {shape} is too large: {math.prod(shape)} elements of "
                         f"{np.dtype(dtype)} are {nbytes} bytes, more than an array can hold (2**63 - 1)")
    return shape


def out_of_memory(op: str, what: str, shape, dtype) -> MemoryError:
    """The MemoryError for an array of a possible size that the device could not hold, naming ``op``."""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    return MemoryError(f"{op}: not enough memory for {what} of shape {tuple(shape)} ({np.dtype(dtype)}, "
                       f"{nbytes / 2**30:.1f} GiB)")


def allocate(op: str, what: str, shape, dtype, device: str, fill=None):
    """A new array of ``shape`` and ``dtype`` on ``device``, filled with ``fill`` (uninitialised if None);
    sizes checked by :func:`check_size`, and a MemoryError naming ``op`` if the device cannot hold it."""
    shape = check_size(op, what, shape, dtype)
    xp = array_module(device)
    try:
        return xp.empty(shape, dtype) if fill is None else xp.full(shape, fill, dtype)
    except MemoryError:  # numpy's _ArrayMemoryError; cupy's OutOfMemoryError is one too
        raise out_of_memory(op, what, shape, dtype) from None


def get_array_module(array):
    if type(array) is np.ndarray:  # the common case, without the device look-up
        return np
    return array_module(device_of(array))


def to_device(array, device: str):
    """Copy an ndarray to ``device`` (returns it unchanged if it is already there)."""
    device = normalize_device(device)
    if device_of(array) == device:
        return array
    if device == "cpu":
        return array.get()
    return array_module("cuda").asarray(array)


def from_dlpack(obj):
    """An ndarray sharing memory with ``obj``, any object with ``__dlpack__``/``__dlpack_device__``
    (a torch tensor, a cupy or numpy array, a pyfastdl Tensor): numpy's for host memory, cupy's for
    CUDA memory. Nothing is copied."""
    if not hasattr(obj, "__dlpack__") or not hasattr(obj, "__dlpack_device__"):
        raise TypeError(f"from_dlpack: {type(obj).__name__} does not support the DLPack protocol "
                        f"(__dlpack__ and __dlpack_device__)")
    kind, _ = obj.__dlpack_device__()
    if kind in (1, 3):  # kDLCPU, kDLCUDAHost: host memory
        return np.from_dlpack(obj)
    if kind in (2, 13):  # kDLCUDA, kDLCUDAManaged
        return array_module("cuda").from_dlpack(obj)
    raise ValueError(f"from_dlpack: DLPack device type {kind} is neither the CPU nor a CUDA GPU")


def kernels(device: str):
    """The compiled kernel submodule serving ``device``: ``_C.cpu`` or ``_C.cuda``."""
    if device == "cpu" or normalize_device(device) == "cpu":
        return _C.cpu
    array_module("cuda")  # raises with the reason when CUDA is unusable
    return _C.cuda


def launch(name: str, device: str, *args):
    """Call kernel ``name`` of ``device``'s submodule; CUDA kernels get cupy's current stream last.

    An array argument on the other device raises TypeError saying so (numpy and cupy arrays are
    both called "ndarray", which would make the binding's own message ambiguous)."""
    fn = getattr(kernels(device), name, None)
    if fn is None:
        raise NotImplementedError(f"kernel {name!r} is not available on device {device!r}")
    try:
        if device == "cuda":
            return fn(*args, _import_cupy().cuda.get_current_stream().ptr)
        if profiler._active is None:
            return fn(*args)
        with profiler.range_(name, "kernel"):
            return fn(*args)
    except TypeError as exc:
        misplaced = _misplaced_arrays(device, args)
        if misplaced:
            raise TypeError(f"{exc} [kernel {name} runs on {device!r} but {misplaced}; move arrays "
                            f"explicitly with backend.to_device or Tensor.to]") from exc
        raise


def _misplaced_arrays(device: str, args) -> str:
    """Which of ``args`` are numpy/cupy arrays not on ``device`` ("" if none); only called on errors."""
    found = []
    for i, a in enumerate(args):
        try:
            where = device_of(a)
        except TypeError:
            continue
        if where != device:
            found.append(f"its argument {i} (counting the Args as 0) is a {'numpy' if where == 'cpu' else 'cupy'} "
                         f"array")
    return ", ".join(found)


_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _gemm_operand(x):
    """(transposed, C-contiguous storage) of a matmul operand for ``_C.cpu.matmul``, or None: the
    array itself, or for a view with its last two dimensions swapped (weight.T, keys.transpose(1, 2))
    the C-contiguous array it views."""
    if not x.flags.writeable:
        return None
    if x.flags.c_contiguous:
        return False, x
    swapped = x.swapaxes(-1, -2)
    if swapped.flags.c_contiguous:
        return True, swapped
    return None


def cpu_float(*arrays) -> bool:
    """True when every array is a numpy array of one native float32/float64 dtype: what the CPU
    kernels of the element-wise families take (other arrays use the array library's own code)."""
    first = arrays[0]
    return (type(first) is np.ndarray and first.dtype in _FLOAT_DTYPES
            and all(type(x) is np.ndarray and x.dtype == first.dtype for x in arrays[1:]))


def matmul(a, b):
    """``a @ b``. Float32/float64 numpy operands, both 2-D or both 3-D with one batch size (each
    contiguous, or a contiguous array with its last two dimensions swapped) go to the CPU kernels'
    GEMM (``_C.cpu.matmul``): OpenBLAS on pyfastdl's one thread pool, so numpy's BLAS threads neither
    sit spinning between products nor compete with the kernels' threads; everything else
    (broadcast batches, vectors, cupy, other dtypes) is the array library's ``@``."""
    if cpu_float(a, b) and a.ndim == b.ndim and a.ndim in (2, 3) and a.shape[:-2] == b.shape[:-2]:
        sa, sb = _gemm_operand(a), _gemm_operand(b)
        if sa is not None and sb is not None and a.shape[-1] == b.shape[-2]:
            out = np.empty(a.shape[:-1] + b.shape[-1:], a.dtype)
            return launch("matmul", "cpu", sa[1], sb[1], out, sa[0], sb[0])
    return a @ b


def contiguous(array):
    """The array itself when C-contiguous, else a contiguous copy (kernels need contiguous input)."""
    if array.flags.c_contiguous:
        return array
    return get_array_module(array).ascontiguousarray(array)


def _is_basic_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice)) or i is None or i is Ellipsis for i in items)


def scatter_add(target, index, values):
    """``target[index] += values`` where repeated indices accumulate (numpy's add.at, cupy's scatter_add)."""
    if _is_basic_index(index):  # plain slicing selects each element at most once
        target[index] += values
    elif isinstance(target, np.ndarray):
        if isinstance(index, np.ndarray) and index.ndim == 1 and index.dtype.kind in "iu" and target.ndim > 1 \
                and values.shape == index.shape + target.shape[1:]:
            _add_rows(target, index, values)
        else:
            np.add.at(target, index, values)
    else:
        import cupyx  # noqa: PLC0415

        cupyx.scatter_add(target, index, values)


def _add_rows(target, rows, values):
    """``target[rows] += values`` with repeated rows accumulating (an embedding's backward), on numpy:
    np.add.at visits the values one at a time; sorting the rows and summing each run of equal rows
    with np.add.reduceat does a few vectorised passes (in a fixed order: deterministic)."""
    if rows.size == 0:
        return
    if rows.dtype.kind == "i" and rows.min() < 0:  # -1 and n - 1 are one row: one run
        rows = np.where(rows < 0, rows + target.shape[0], rows)
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_rows[1:] != sorted_rows[:-1])))
    target[sorted_rows[starts]] += np.add.reduceat(values[order], starts, axis=0)


def set_num_threads(n: int) -> None:
    """Threads of the CPU kernels' one pool (OpenMP; their OpenBLAS stays at one thread and the pool
    splits large products, see :func:`matmul`), and, through threadpoolctl where installed, of numpy's
    own BLAS, which the few products that do not go through :func:`matmul` (broadcast batches) use:
    left at its default on a busy machine, a small product can take 100x longer spinning up idle
    threads."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"set_num_threads: n must be an integer, got {type(n).__name__} {n!r}")
    n = int(n)
    if not 1 <= n <= 2**31 - 1:  # OpenMP counts threads in an int
        raise ValueError(f"set_num_threads: n must be between 1 and 2**31 - 1, got {n}")
    _C.cpu.set_num_threads(n)
    try:
        from threadpoolctl import ThreadpoolController  # noqa: PLC0415
    except ImportError:
        return
    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        if not _is_our_blas(lib.filepath):
            lib.set_num_threads(int(n))


def _is_our_blas(path: str) -> bool:
    """The OpenBLAS that _C links (scipy-openblas32's), which must stay at one thread."""
    return "scipy_openblas32" in path.replace("\\", "/")


def get_num_threads() -> int:
    return _C.cpu.get_num_threads()
