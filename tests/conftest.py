"""Shared fixtures. Tests import the installed pyfastdl (pytest runs with --import-mode=importlib);
float64 numpy references live in tests/reference/ and are imported as `reference.<family>`."""

import os
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # makes tests/reference importable


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name: fresh random inputs per test, reproducible runs."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """Runs a test once on the CPU and once on the GPU (the GPU run skips where there is none)."""
    return request.param


try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

requires_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
