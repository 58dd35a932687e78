"""Shared fixtures. Tests import the installed pyfastdl (pytest runs with --import-mode=importlib);
float64 numpy references live in tests/reference/ and are imported as `reference.<family>`."""

import os
import sys
import zlib

import numpy as np
import pytest

import pyfastdl as pf

sys.path.insert(0, os.path.dirname(__file__))  # makes tests/reference importable
# Subprocesses the tests start (python -c, python -m pyfastdl, mpiexec) import the installed package
# too: with the checkout as the current directory, Python would otherwise put its source folder
# (which holds no compiled _C) first on their path. Python 3.11+; the variable is ignored before.
os.environ["PYTHONSAFEPATH"] = "1"


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


# ---- helpers the kernel-family tests share (import them: `from conftest import rel_err`) ----------

TOL = {np.float64: 1e-10, np.float32: 1e-5}  # relative error of a CPU kernel against its float64 reference


def rel_err(out, want):
    """||out - want|| / ||want|| in float64; the shapes must match and NaN never passes."""
    out, want = np.asarray(out, np.float64), np.asarray(want, np.float64)
    assert out.shape == want.shape, (out.shape, want.shape)
    assert not np.isnan(out).any(), "output holds NaN"
    return np.linalg.norm(out - want) / max(np.linalg.norm(want), 1e-300)


def leaf(a):
    """A tensor that requires grad: a leaf of the graph for gradcheck and backward."""
    return pf.tensor(a, requires_grad=True)


# A CUDA fault that leaves the context unusable (an illegal address, a misaligned access, a kernel
# killed by an assertion): every later CUDA call in this process fails too. Stop the run at the first
# such failure, naming the test, so that the first failure is the one reported.
_CUDA_FAULT = ("illegal memory access", "illegal address", "misaligned address", "unspecified launch failure",
               "device-side assert", "cudaErrorIllegal", "cudaErrorMisaligned", "cudaErrorLaunchFailure",
               "CUDA_ERROR_ILLEGAL", "CUDA_ERROR_MISALIGNED", "CUDA_ERROR_LAUNCH_FAILED")


def pytest_runtest_makereport(item, call):
    if call.excinfo is not None and any(s in str(call.excinfo.value) for s in _CUDA_FAULT):
        item.session.shouldstop = (f"CUDA fault in {item.nodeid} ({call.excinfo.typename}): the CUDA context is "
                                   f"now unusable, so the later tests of this process were not run")
