"""The caching pool for numpy's array data (pyfastdl.memory, csrc/bind/memory.cpp)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import pyfastdl
from pyfastdl import memory

BIG = 3 * 2**20 // 4  # float32 values in 3 MiB: above the pool's 1 MiB


def handler_name():
    return np._core.multiarray.get_handler_name()


def test_installed_at_import_and_reuses_blocks():
    assert handler_name() == "pyfastdl_pool"
    before = memory.stats()
    for _ in range(5):
        a = np.full(BIG, 7.0, np.float32)
        del a
    after = memory.stats()
    assert after["hits"] - before["hits"] >= 4  # the same block back each time
    assert after["min_block_bytes"] == 2**20


def test_zeros_from_a_reused_block_are_zero():
    """calloc's contract holds for a cached block that held other values."""
    a = np.full(BIG, 7.0, np.float32)
    del a
    z = np.zeros(BIG, np.float32)
    assert not z.any()
    e = np.empty(BIG + 1, np.float64)  # and arrays of other sizes work as before
    e[:] = 1.5
    assert e.sum() == 1.5 * (BIG + 1)


def test_realloc_keeps_the_contents():
    a = np.arange(BIG, dtype=np.float32)
    a.resize(2 * BIG, refcheck=False)  # grows through the handler's realloc
    np.testing.assert_array_equal(a[:BIG], np.arange(BIG, dtype=np.float32))
    assert not a[BIG:].any()
    a.resize(10, refcheck=False)  # and shrinks below the pool's smallest block
    np.testing.assert_array_equal(a, np.arange(10, dtype=np.float32))


def test_limit_and_empty_cache():
    try:
        memory.install(limit_mb=4)
        arrays = [np.ones(BIG + i * 1024, np.float32) for i in range(4)]  # four sizes, 3 MiB each
        del arrays
        assert memory.stats()["cached_bytes"] <= 4 * 2**20  # the oldest released past the limit
        memory.empty_cache()
        assert memory.stats()["cached_bytes"] == 0 and memory.stats()["cached_blocks"] == 0
    finally:
        memory.install()


def test_uninstall_and_install_again():
    keep = np.ones(BIG, np.float32)  # made by the pool, freed after it is uninstalled
    try:
        memory.uninstall()
        assert handler_name() != "pyfastdl_pool"
        assert memory.stats()["cached_bytes"] == 0
        del keep
        x = np.ones(BIG, np.float32)
        assert x.sum() == BIG
    finally:
        memory.install()
    assert handler_name() == "pyfastdl_pool"


def test_impossible_sizes_are_memory_errors():
    """A request near the address space's size is refused (rounding it up to pages must not wrap)."""
    with pytest.raises(MemoryError):
        np.empty(2**62, np.uint8)
    with pytest.raises(MemoryError):
        np.zeros(2**62, np.uint8)


@pytest.mark.parametrize("bad", [-1, float("nan"), "1", None, True])
def test_bad_limit(bad):
    with pytest.raises(ValueError, match="memory.install: limit_mb"):
        memory.install(bad)


@pytest.mark.parametrize("env,expect", [({"PYFASTDL_NUMPY_POOL": "0"}, "default_allocator"),
                                        ({"PYFASTDL_NUMPY_POOL_MB": "64"}, "pyfastdl_pool 67108864")])
def test_environment(env, expect):
    code = ("import numpy as np, pyfastdl; print(np._core.multiarray.get_handler_name(), "
            "pyfastdl.memory.stats()['limit_bytes'] if np._core.multiarray.get_handler_name() == 'pyfastdl_pool' "
            "else '')")
    path = os.path.dirname(os.path.dirname(pyfastdl.__file__))
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=path, **env),
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == expect.split()


def test_bad_environment():
    path = os.path.dirname(os.path.dirname(pyfastdl.__file__))
    result = subprocess.run([sys.executable, "-c", "import pyfastdl"], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=path, PYFASTDL_NUMPY_POOL_MB="lots"))
    assert result.returncode != 0 and "PYFASTDL_NUMPY_POOL_MB must be a number" in result.stderr
