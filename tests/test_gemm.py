"""The CPU matrix product behind nn.Linear and 2-D matmul (``_C.cpu.matmul`` through
``backend.matmul``): OpenBLAS on pyfastdl's one OpenMP pool, large products split into blocks of rows
or columns that the threads take in turn. Checked against float64 numpy on every layout of the
operands, on shapes that split and shapes that do not, bit for bit across thread counts; its errors."""

import numpy as np
import pytest

import pyfastdl as pf
from pyfastdl import backend
from pyfastdl._core import _C

# (M, K, N): 1x1, odd sizes, one row/column, products that split by rows and by columns
SHAPES = [(1, 1, 1), (3, 5, 7), (1, 300, 257), (257, 300, 1), (513, 129, 67), (67, 129, 513), (200, 3, 200)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["nn", "tn", "nt", "tt"])
@pytest.mark.parametrize("shape", SHAPES)
def test_matmul_matches_float64(shape, layout, dtype, rng):
    M, K, N = shape
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    if layout[0] == "t":  # a transposed view (F-contiguous), as weight.T in Linear
        a = np.ascontiguousarray(a.T).T
    if layout[1] == "t":
        b = np.ascontiguousarray(b.T).T
    out = backend.matmul(a, b)
    assert out.dtype == dtype and out.shape == (M, N) and out.flags.c_contiguous
    ref = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * np.sqrt(K) * np.abs(ref).max())


@pytest.mark.parametrize("shape", [(600, 256, 96), (96, 256, 600)])
def test_matmul_same_bits_for_every_thread_count(shape, rng):
    """Every element is one OpenBLAS call's sum over all of K, whichever thread computes its block."""
    M, K, N = shape
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    before = pf.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            pf.set_num_threads(threads)
            results.append(backend.matmul(a, b))
    finally:
        pf.set_num_threads(before)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_matmul_zero_sizes(rng):
    a = rng.standard_normal((4, 0)).astype(np.float32)
    b = rng.standard_normal((0, 3)).astype(np.float32)
    np.testing.assert_array_equal(backend.matmul(a, b), np.zeros((4, 3), np.float32))
    assert backend.matmul(np.ones((0, 2), np.float32), np.ones((2, 5), np.float32)).shape == (0, 5)


def test_matmul_other_operands_use_numpy(rng):
    """Strided views, read-only arrays, mixed or integer dtypes and batches take numpy's ``@``."""
    a = rng.standard_normal((6, 8))
    b = rng.standard_normal((8, 5))
    ro = b.copy()
    ro.flags.writeable = False
    for x, y in ((a[:, ::2], b[::2]), (a, ro), (a.astype(np.float32), b), (np.arange(6).reshape(2, 3), np.eye(3)),
                 (a[None].repeat(2, 0), b)):
        np.testing.assert_allclose(backend.matmul(x, y), x @ y, rtol=1e-6)


def test_blas_stays_at_one_thread():
    """pf.set_num_threads sets the OpenMP pool and numpy's BLAS, never the OpenBLAS _C links, and a
    product pins it back to one thread when something else (a global threadpoolctl limit) changed it."""
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def ours():
        return [lib.num_threads for lib in threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
                if backend._is_our_blas(lib.filepath)]

    before = pf.get_num_threads()
    try:
        pf.set_num_threads(3)
        assert ours() == [1]
        with threadpoolctl.threadpool_limits(limits=3, user_api="blas"):
            backend.matmul(np.ones((64, 64), np.float32), np.ones((64, 64), np.float32))
            assert ours() == [1]
    finally:
        pf.set_num_threads(before)


@pytest.mark.parametrize("args,error,match", [
    ((np.ones((2, 3), np.float32), np.ones((3, 2)), np.empty((2, 2), np.float32)), TypeError, "matmul: a is float32 but b"),
    ((np.ones((2, 3), np.float32), np.ones((4, 2), np.float32), np.empty((2, 2), np.float32)), ValueError,
     "inner sizes differ"),
    ((np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), np.empty((3, 2), np.float32)), ValueError, "out"),
    ((np.ones(3, np.float32), np.ones((3, 2), np.float32), np.empty((1, 2), np.float32)), ValueError, "2-D"),
    ((np.ones((2, 3), ">f4"), np.ones((3, 2), ">f4"), np.empty((2, 2), np.float32)), TypeError, "byte order"),
    ((np.ones((2, 3), np.int64), np.ones((3, 2), np.int64), np.empty((2, 2), np.int64)), TypeError, "dtype"),
    (([[1.0]], np.ones((1, 1), np.float32), np.empty((1, 1), np.float32)), TypeError, "numpy array"),
])
def test_matmul_binding_errors(args, error, match):
    with pytest.raises(error, match=match):
        _C.cpu.matmul(*args)
