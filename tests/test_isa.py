"""One instruction-set switch for every CPU kernel family: each family's kernels are compiled once
per set (csrc/cpu/isa.h) and ``_C.cpu.set_isa`` moves all of them. Every available set must give
the float64 answer (to float32 accuracy) for every family, on odd sizes that leave vector tails."""

import numpy as np
import pytest

from pyfastdl import kernels
from pyfastdl._core import _C

ALL_ISAS = ("base", "avx2", "avx512")
ISAS = _C.cpu.available_isas()  # built (CMake's PYFASTDL_ISAS) and supported by this CPU


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
        *_cpu_only_families(x, seq),
    ]


def _cpu_only_families(x, seq):
    """norm, softmax and optim: one forward each, and a backward where the forward is trivial."""
    bn = kernels.batch_norm_forward(x, None, None, None, None, True)
    p, g = seq.copy(), np.cos(seq)
    kernels.adam_step([p], [g], [np.zeros_like(p)], [np.zeros_like(p)], None, [1], lr=0.1)
    target = np.arange(27) % 7
    return [
        bn[0], kernels.batch_norm_backward(np.sin(x), x, None, bn[1], bn[2], True)[0],
        kernels.layer_norm_forward(seq, 7)[0],
        kernels.softmax_forward(seq), kernels.log_softmax_forward(seq),
        kernels.cross_entropy_forward(seq.reshape(27, 7), target, label_smoothing=0.1)[0],
        p,
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


def test_available_sets_and_refusals(restore_isa):
    """The base copy is always there and the best set is the widest available one; a set this build
    left out (CMake's PYFASTDL_ISAS, e.g. tools/sanitize.sh's two-copy build) or this CPU lacks is a
    ValueError saying which, and leaves the kernels on the set they were using."""
    assert ISAS[0] == "base" and ISAS[-1] == _C.cpu.best_isa()
    assert list(ISAS) == [isa for isa in ALL_ISAS if isa in ISAS]  # narrowest first
    _C.cpu.set_isa("base")
    for isa in ALL_ISAS:
        if isa not in ISAS:
            with pytest.raises(ValueError, match=rf"set_isa: '{isa}' is not supported here: (this CPU lacks it|"
                                                 r"this build compiled the kernels for '[a-z0-9,]+' only)"):
                _C.cpu.set_isa(isa)
            assert _C.cpu.get_isa() == "base"
