"""Zero-copy interop through DLPack: torch <-> pyfastdl <-> numpy share memory (same address, writes
show on both sides), on the CPU here and on the GPU (cupy, torch.cuda) where there is one."""

import numpy as np
import pytest
from conftest import requires_torch

import pyfastdl


def _address(x):
    if isinstance(x, pyfastdl.Tensor):
        x = x.data
    return x.__array_interface__["data"][0] if isinstance(x, np.ndarray) else x.data.ptr


@requires_torch
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_round_trip_with_torch_without_a_copy(dtype):
    import torch

    source = torch.arange(12, dtype=getattr(torch, dtype)).reshape(3, 4)
    t = pyfastdl.from_dlpack(source)
    assert t.shape == (3, 4) and t.dtype == np.dtype(dtype) and t.device == "cpu"
    assert _address(t) == source.data_ptr()
    back = torch.from_dlpack(t)
    assert back.data_ptr() == source.data_ptr()
    source[0, 0] = 42
    assert t.numpy()[0, 0] == 42 and back[0, 0] == 42


@requires_torch
def test_pyfastdl_results_go_to_torch(rng):
    import torch

    x = pyfastdl.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    y = pyfastdl.nn.functional.max_pool2d(x, 2)
    ty = torch.from_dlpack(y)
    assert ty.data_ptr() == _address(y)
    np.testing.assert_array_equal(ty.numpy(), torch.nn.functional.max_pool2d(torch.from_dlpack(x), 2).numpy())


def test_numpy_both_ways(rng):
    a = rng.standard_normal((4, 5))
    t = pyfastdl.from_dlpack(a)
    assert _address(t) == _address(a)
    b = np.from_dlpack(t)
    assert _address(b) == _address(a)


def test_requires_grad_must_be_detached():
    t = pyfastdl.ones((2, 2), requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        t.__dlpack__()
    assert np.from_dlpack(t.detach()).shape == (2, 2)


def test_not_dlpack():
    with pytest.raises(TypeError, match="does not support the DLPack protocol"):
        pyfastdl.from_dlpack([1, 2, 3])


@pytest.mark.gpu
@requires_torch
def test_round_trip_on_the_gpu():
    import torch

    from pyfastdl import backend

    if backend.cuda_unavailable_reason() or not torch.cuda.is_available():
        pytest.skip("no GPU for both pyfastdl and torch")
    source = torch.arange(6.0, device="cuda").reshape(2, 3)
    t = pyfastdl.from_dlpack(source)
    assert t.device == "cuda" and t.data.data.ptr == source.data_ptr()
    assert torch.from_dlpack(t).data_ptr() == source.data_ptr()
