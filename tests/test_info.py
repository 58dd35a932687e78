"""`pyfastdl info` tells the truth about the build and the machine."""

import json
import os
import subprocess
import sys

from pyfastdl import backend
from pyfastdl._core import _C


def run_cli(*args):
    # from the filesystem root, so the installed package runs rather than a source folder in the cwd
    return subprocess.run([sys.executable, "-m", "pyfastdl", *args], capture_output=True, text=True, check=True,
                          cwd=os.path.abspath(os.sep))


def test_info_json_matches_build():
    info = json.loads(run_cli("info", "--json").stdout)
    assert info["cuda_kernels_compiled"] == bool(_C.WITH_CUDA)
    if _C.WITH_CUDA:
        assert info["cuda_architectures"], "a CUDA build lists its architectures"
    assert info["openmp_threads"] >= 1
    assert info["cpu_instruction_set"] in ("base", "avx2", "avx512")
    reason = backend.cuda_unavailable_reason()
    if reason is None:
        assert info["gpus"]
    else:
        assert info["gpus"] == [] and info["gpu_unavailable_reason"] == reason


def test_info_text():
    out = run_cli("info").stdout
    assert out.startswith("pyfastdl ")
    assert "CUDA kernels compiled:" in out and "OpenMP threads:" in out
    assert ("GPU: none found (" in out) or ("GPU 0:" in out)


def test_threads_roundtrip():
    n = backend.get_num_threads()
    backend.set_num_threads(1)
    assert backend.get_num_threads() == 1
    backend.set_num_threads(n)
