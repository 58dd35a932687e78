"""One instruction-set switch for every CPU kernel family: each family's kernels are compiled once
per set (csrc/cpu/isa.h) and ``_C.cpu.set_isa`` moves all of them. Every available set must give
the float64 answer (to float32 accuracy) for every family, on odd sizes that leave vector tails."""

import numpy as np
import pytest

from pyfastdl import kernels
from pyfastdl._core import _C

ALL_ISAS = ("base", "avx2", "avx512")
ISAS = ALL_ISAS[: ALL_ISAS.index(_C.cpu.best_isa()) + 1]


def run_families(rng_seed, dtype):
    """One forward per family on fixed random inputs: a list of output arrays."""
    rng = np.random.default_rng(rng_seed)
    x = rng.standard_normal((2, 3, 11, 13)).astype(dtype)
    w = rng.standard_normal((5, 3, 3, 3)).astype(dtype)
    q, k, v = (rng.standard_normal((1, 2, n, 17)).astype(dtype) for n in (19, 23, 23))
    seq = rng.standard_normal((9, 3, 7)).astype(dtype)
    h0 = rng.standard_normal((3, 10)).astype(dtype)
    w_ih, w_hh = rng.standard_normal((40, 7)).astype(dtype), rng.standard_normal((40, 10)).astype(dtype)
    return [
        kernels.conv2d_forward(x, w, None, stride=1, padding=1),
        kernels.max_pool2d_forward(x, 3, 2, 1, return_indices=False),
        kernels.avg_pool2d_forward(x, 3, 2, 1),
        kernels.sdpa_forward(q, k, v, is_causal=True)[0],
        kernels.lstm_layer_forward(seq, h0, h0, w_ih, w_hh, save=False)[0],
    ]


@pytest.fixture
def restore_isa():
    yield
    _C.cpu.set_isa(_C.cpu.best_isa())


@pytest.mark.parametrize("isa", ISAS)
def test_every_family_follows_set_isa(isa, restore_isa):
    want = run_families(0, np.float64)
    _C.cpu.set_isa(isa)
    assert _C.cpu.get_isa() == isa
    for got, expected in zip(run_families(0, np.float32), want):
        err = np.linalg.norm(got.astype(np.float64) - expected) / np.linalg.norm(expected)
        assert err < 1e-5
