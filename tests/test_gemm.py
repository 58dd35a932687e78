"""The CPU matrix product behind nn.Linear and 2-D matmul (``_C.cpu.matmul`` through
``backend.matmul``): OpenBLAS on pyfastdl's one OpenMP pool, large products (or batches of them) split into units that the
threads take in turn. Checked against float64 numpy on every layout of the operands, on shapes that
split and shapes that do not, at several thread counts; its errors."""

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


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("shape", [(1, 600, 256, 96), (1, 96, 256, 600), (3, 130, 64, 150), (16, 64, 64, 64)])
def test_matmul_every_thread_count(shape, threads, rng):
    """One call, blocks of one product (rows or columns) or whole products of a batch, whichever the
    thread count gives: each matches float64, and the same count gives the same bits again."""
    B, M, K, N = shape
    a = rng.standard_normal((B, M, K)).astype(np.float32)
    b = rng.standard_normal((B, K, N)).astype(np.float32)
    if B == 1:
        a, b = a[0], b[0]
    before = pf.get_num_threads()
    try:
        pf.set_num_threads(threads)
        first, again = backend.matmul(a, b), backend.matmul(a, b)
    finally:
        pf.set_num_threads(before)
    np.testing.assert_array_equal(first, again)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(first, ref, rtol=1e-5, atol=1e-5 * np.sqrt(K) * np.abs(ref).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["nn", "tn", "nt", "tt"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 5, 7, 2), (64, 1, 33, 48), (2, 300, 96, 200)])
def test_batched_matmul_matches_float64(shape, layout, dtype, rng):
    """Batches of products (ConvS2S's and attention's (B, T, d) @ (B, d, S)); a transposed operand is a
    view with its last two dimensions swapped, as keys.transpose(1, 2)."""
    B, M, K, N = shape
    a = rng.standard_normal((B, M, K)).astype(dtype)
    b = rng.standard_normal((B, K, N)).astype(dtype)
    if layout[0] == "t":
        a = np.ascontiguousarray(a.swapaxes(1, 2)).swapaxes(1, 2)
    if layout[1] == "t":
        b = np.ascontiguousarray(b.swapaxes(1, 2)).swapaxes(1, 2)
    out = backend.matmul(a, b)
    assert out.dtype == dtype and out.shape == (B, M, N)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * np.sqrt(K) * np.abs(ref).max())


def test_matmul_zero_sizes(rng):
    a = rng.standard_normal((4, 0)).astype(np.float32)
    b = rng.standard_normal((0, 3)).astype(np.float32)
    np.testing.assert_array_equal(backend.matmul(a, b), np.zeros((4, 3), np.float32))
    assert backend.matmul(np.ones((0, 2), np.float32), np.ones((2, 5), np.float32)).shape == (0, 5)


def test_matmul_other_operands_use_numpy(rng):
    """Strided views, read-only arrays, mixed or integer dtypes and broadcast batches take numpy's ``@``."""
    a = rng.standard_normal((6, 8))
    b = rng.standard_normal((8, 5))
    ro = b.copy()
    ro.flags.writeable = False
    for x, y in ((a[:, ::2], b[::2]), (a, ro), (a.astype(np.float32), b), (np.arange(6).reshape(2, 3), np.eye(3)),
                 (a[None].repeat(2, 0), b), (a[None].repeat(2, 0), b[None])):
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
    ((np.ones((2, 2, 3), np.float32), np.ones((3, 3, 2), np.float32), np.empty((2, 2, 2), np.float32)), ValueError,
     "batches differ"),
    ((np.ones((2, 3), ">f4"), np.ones((3, 2), ">f4"), np.empty((2, 2), np.float32)), TypeError, "byte order"),
    ((np.ones((2, 3), np.int64), np.ones((3, 2), np.int64), np.empty((2, 2), np.int64)), TypeError, "dtype"),
    (([[1.0]], np.ones((1, 1), np.float32), np.empty((1, 1), np.float32)), TypeError, "numpy array"),
])
def test_matmul_binding_errors(args, error, match):
    with pytest.raises(error, match=match):
        _C.cpu.matmul(*args)
