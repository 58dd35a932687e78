"""The GPU tests' element-wise bound (tests/gpu_tolerance.py), checked on the CPU: it passes what
16-bit rounding and float32 accumulation do to a product, and fails a result with 1% of its elements
wrong that the norm-wise 2e-2 check lets through."""

import numpy as np
import pytest
from gpu_tolerance import assert_elementwise, same_to_one_ulp

from pyfastdl import bfloat16


def _rounded(x, dtype):
    if dtype == "bfloat16":
        return bfloat16.from_bits(bfloat16.to_bits(x)).astype(np.float64)
    return x.astype(dtype).astype(np.float64)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_bound_passes_rounding_and_catches_one_percent(rng, dtype):
    K = 576  # a 3x3 convolution over 64 channels
    a, b = _rounded(rng.standard_normal((300, K)), dtype), _rounded(rng.standard_normal((K, 200)), dtype)
    ref = a @ b
    gpu_like = _rounded((a.astype(np.float32) @ b.astype(np.float32)).astype(np.float64), dtype)
    assert_elementwise(gpu_like, ref, dtype)
    broken = gpu_like.copy()
    idx = rng.choice(broken.size, broken.size // 100, replace=False)
    broken.flat[idx] += 0.15 * np.sqrt(np.mean(ref ** 2))  # 1% of the elements off by 0.15 rms
    assert np.linalg.norm(broken - ref) / np.linalg.norm(ref) < 2e-2  # the norm-wise check misses it
    with pytest.raises(AssertionError, match="elements beyond"):
        assert_elementwise(broken, ref, dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_one_ulp(rng, dtype):
    x = _rounded(rng.standard_normal(1000), dtype)
    nudged = _rounded(x * (1 + 2.0 ** (-8 if dtype == "bfloat16" else -11)), dtype)  # up to one ulp up
    assert same_to_one_ulp(x, nudged, dtype)
    assert not same_to_one_ulp(x, _rounded(x * 1.05, dtype), dtype)
