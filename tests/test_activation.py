"""The activation family (ReLU, leaky ReLU, GLU, dropout's mask) on the CPU: the raw kernels against a float64 numpy
reference on awkward shapes, torch's edge cases (signed zeros, NaN, Inf), the autograd ops through
them with finite differences, thread counts, and bad input."""

import numpy as np
import pytest

import pyfastdl as pf
import pyfastdl.nn.functional as F
from pyfastdl import kernels as K
from pyfastdl._core import _C
from pyfastdl.testing import gradcheck

SHAPES = [(1,), (7,), (3, 5), (1, 1, 1, 1), (2, 3, 17, 19), (64, 6, 28, 28)]  # the last: LeNet's, over the thread threshold
SLOPES = [0.0, 0.01, 0.2, -0.5]


def _ref_forward(x, slope):
    x = x.astype(np.float64)
    return np.where(x > 0, x, 0.0 if slope == 0 else slope * x)


def _ref_backward(x, g, slope):
    g = g.astype(np.float64)
    return np.where(x > 0, g, 0.0 if slope == 0 else slope * g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_kernels_match_float64(shape, slope, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    y = K.leaky_relu_forward(x, slope, out=np.full(shape, np.nan, dtype))
    assert y.dtype == dtype
    np.testing.assert_allclose(y, _ref_forward(x, slope), rtol=1e-7 if dtype == np.float32 else 1e-15)
    ref = y if slope >= 0 else x  # positive exactly where x is
    gx = K.leaky_relu_backward(ref, g, slope, out=np.full(shape, np.nan, dtype))
    np.testing.assert_allclose(gx, _ref_backward(x, g, slope), rtol=1e-7 if dtype == np.float32 else 1e-15)


def test_relu_edges_follow_torch():
    """relu(-x) is +0; NaN stays NaN; the backward is 0 where the input was <= 0 even for an Inf or
    NaN gradient, and passes the gradient where the input was NaN (torch's threshold_backward)."""
    x = np.array([-2.0, -0.0, 0.0, 3.0, np.nan, np.inf, -np.inf], np.float32)
    y = K.relu_forward(x)
    np.testing.assert_array_equal(y, [0, 0, 0, 3, np.nan, np.inf, 0])
    assert not np.signbit(y[:3]).any()
    g = np.array([np.inf, np.nan, 1.0, 2.0, 5.0, 6.0, np.nan], np.float32)
    np.testing.assert_array_equal(K.relu_backward(x, g), [0, 0, 0, 2, 5, 6, 0])
    torch = pytest.importorskip("torch")
    tx, tg = torch.from_numpy(x), torch.from_numpy(g)
    np.testing.assert_array_equal(y, torch.relu(tx).numpy())
    np.testing.assert_array_equal(K.relu_backward(y, g), torch.ops.aten.threshold_backward(tg, torch.relu(tx), 0).numpy())
    lx = np.array([-2.0, 3.0, np.nan, -np.inf], np.float32)
    np.testing.assert_array_equal(K.leaky_relu_forward(lx, 0.1), torch.nn.functional.leaky_relu(torch.from_numpy(lx), 0.1).numpy())


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_counts_give_the_same_result(threads, rng):
    x = rng.standard_normal((64, 6, 28, 28)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    before = pf.get_num_threads()
    try:
        pf.set_num_threads(threads)
        y, gx = K.relu_forward(x), K.relu_backward(x, g)
    finally:
        pf.set_num_threads(before)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(gx, np.where(x > 0, g, 0))


def test_noncontiguous_input_is_copied(rng):
    x = rng.standard_normal((6, 8)).astype(np.float32)[:, ::2]
    np.testing.assert_array_equal(K.relu_forward(x), np.maximum(x, 0))


@pytest.mark.parametrize("slope", [None, 0.01, -0.3])
def test_ops_gradcheck(slope, rng):
    x = pf.tensor(rng.standard_normal((3, 4, 5)), requires_grad=True)  # away from 0: |x| > 1e-3 w.h.p.
    fn = (lambda t: F.relu(t)) if slope is None else (lambda t: F.leaky_relu(t, slope))
    assert gradcheck(fn, [x])


@pytest.mark.parametrize("slope", [None, 0.01])
def test_ops_match_numpy_float32(slope, rng):
    """The Tensor ops take the kernels on the CPU: same values and gradients as array code."""
    x = rng.standard_normal((4, 9)).astype(np.float32)
    g = rng.standard_normal((4, 9)).astype(np.float32)
    t = pf.tensor(x, requires_grad=True)
    y = F.relu(t) if slope is None else F.leaky_relu(t, slope)
    (y * pf.tensor(g)).sum().backward()
    s = 0.0 if slope is None else slope
    np.testing.assert_allclose(y.detach().numpy(), _ref_forward(x, s), rtol=1e-7)
    np.testing.assert_allclose(t.grad.numpy(), _ref_backward(x, g, s), rtol=1e-7)


@pytest.mark.parametrize("call,error,match", [
    (lambda: K.relu_forward(np.ones(3, np.int32)), TypeError, "relu_forward: input"),
    (lambda: K.relu_forward([1.0, -1.0]), TypeError, "relu_forward: input must be a numpy or cupy array"),
    (lambda: K.relu_forward(np.ones(3, ">f4")), TypeError, "byte order"),
    (lambda: K.leaky_relu_forward(np.ones(3, np.float32), float("nan")), ValueError, "negative_slope must be finite"),
    (lambda: K.relu_backward(np.ones(3, np.float32), np.ones(4, np.float32)), ValueError, "relu_backward: grad_output"),
    (lambda: K.relu_backward(np.ones(3, np.float32), np.ones(3, np.float64)), TypeError, "relu_backward: grad_output"),
    (lambda: K.relu_forward(np.ones(3, np.float32), out=np.ones(4, np.float32)), ValueError, "relu_forward: output"),
    (lambda: K.relu_forward(np.ones(3, np.float32), variant="reference"), ValueError, "variant"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---- GLU -------------------------------------------------------------------------------------------

GLU_CASES = [((2,), 0), ((1, 2), -1), ((3, 8, 5), 1), ((4, 6), 0), ((2, 3, 4), 2), ((7, 10, 1, 13), 1),
             ((128, 512, 1, 12), 1)]  # the last: ConvS2S's gate, over the thread threshold


def _ref_glu(x, dim):
    a, b = np.split(x.astype(np.float64), 2, axis=dim)
    return a, 1 / (1 + np.exp(-b))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,dim", GLU_CASES)
def test_glu_kernels_against_float64(shape, dim, dtype, rng):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    a, s = _ref_glu(x, dim)
    y = K.glu_forward(x, dim, out=np.full(a.shape, np.nan, dtype))
    g = rng.standard_normal(a.shape).astype(dtype)
    gx = K.glu_backward(x, g, dim, out=np.full(shape, np.nan, dtype))
    tol = 1e-5 if dtype == np.float32 else 1e-13  # a few roundings of values up to ~30
    np.testing.assert_allclose(y, a * s, rtol=tol, atol=tol)
    np.testing.assert_allclose(gx, np.concatenate([g * s, g * a * s * (1 - s)], axis=dim), rtol=tol, atol=tol)


def test_glu_edges_as_torch():
    """sigmoid saturates to exactly 0 and 1, NaN propagates, -0 and 0 give a half."""
    b = np.array([np.nan, 1, 100, -100, np.inf, -np.inf, 0, -0.0, 88.5, -88.5], np.float32)
    x = np.concatenate([np.full_like(b, 2.0), b])
    y = K.glu_forward(x)
    expected = 2 / (1 + np.exp(-b.astype(np.float64)))
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-37)
    assert np.isnan(y[0]) and y[2] == 2 and y[3] == 0 and y[4] == 2 and y[5] == 0 and y[6] == y[7] == 1
    gx = K.glu_backward(x, np.ones_like(b))
    assert np.isnan(gx[0]) and np.isnan(gx[len(b)]) and gx[len(b) + 5] == 0 and gx[len(b) + 4] == 0


def test_glu_zero_size():
    assert K.glu_forward(np.ones((0, 4), np.float32), 1).shape == (0, 2)
    assert K.glu_backward(np.ones((3, 0), np.float32), np.ones((3, 0), np.float32), 1).shape == (3, 0)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_glu_autograd_gradcheck(dim, rng):
    """F.glu through the kernels (float64, finite differences), and the kernel path agrees with the
    array code that the GPU runs."""
    x = pf.tensor(rng.standard_normal((4, 6, 2)), requires_grad=True)
    assert gradcheck(lambda t: F.glu(t, dim), (x,))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_glu_threads(threads, rng):
    x = rng.standard_normal((128, 512, 1, 12)).astype(np.float32)
    before = pf.get_num_threads()
    pf.set_num_threads(threads)
    try:
        first = K.glu_forward(x, 1)
    finally:
        pf.set_num_threads(before)
    np.testing.assert_array_equal(first, K.glu_forward(x, 1))


def test_glu_against_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((5, 8, 3)).astype(np.float32)
    g = rng.standard_normal((5, 4, 3)).astype(np.float32)
    t = pf.tensor(x, requires_grad=True)
    y = F.glu(t, 1)
    (y * pf.tensor(g)).sum().backward()
    tx = torch.from_numpy(x).requires_grad_()
    ty = torch.nn.functional.glu(tx, 1)
    ty.backward(torch.from_numpy(g))
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(t.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("call,error,match", [
    (lambda: K.glu_forward(np.ones((3, 5), np.float32), 1), ValueError, "glu: halving only works on an even-sized"),
    (lambda: K.glu_forward(np.ones((3, 4), np.float32), 2), ValueError, "glu: dim 2 is out of range"),
    (lambda: K.glu_forward(np.ones((), np.float32)), ValueError, "glu: the input needs at least one dimension"),
    (lambda: K.glu_forward(np.ones(4, np.int64)), TypeError, "glu_forward: input"),
    (lambda: K.glu_forward(np.ones(4, ">f4")), TypeError, "byte order"),
    (lambda: K.glu_forward(np.ones(4, np.float32), out=np.ones(4, np.float32)), ValueError, "glu_forward: output"),
    (lambda: K.glu_backward(np.ones(4, np.float32), np.ones(4, np.float32)), ValueError, "glu_backward: grad_output"),
    (lambda: K.glu_backward(np.ones(4, np.float32), np.ones(2, np.float64)), TypeError, "glu_backward: grad_output"),
])
def test_glu_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---- dropout ----------------------------------------------------------------------------------------

_M64 = 2**64 - 1


def _splitmix_draws(seed, n):
    """The reference generator, in Python integers: draw i is 16 bits of word i // 4 of SplitMix64's stream
    (Vigna's splitmix64.c started from seed), little-endian: word k = mix(seed + (k + 1) * gamma)."""
    def word(k):
        z = (seed + (k + 1) * 0x9E3779B97F4A7C15) & _M64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        return z ^ (z >> 31)
    words = [word(k) for k in range(-(-n // 4))]
    return np.array([(words[i // 4] >> (16 * (i % 4))) & 0xFFFF for i in range(n)], np.uint16)


def test_reference_generator_is_splitmix64():
    """Known answers: splitmix64.c's first outputs from seeds 0 and 1234567."""
    def words(draws):
        return [sum(int(d) << (16 * j) for j, d in enumerate(draws[i:i + 4])) for i in range(0, len(draws), 4)]
    assert words(_splitmix_draws(0, 12)) == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    assert words(_splitmix_draws(1234567, 4)) == [6457827717110365317]


SEEDS = [0, 1234567, 2**64 - 1]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 7, 4097, 20001])  # the last: blocks split between threads
def test_random_bits_match_the_reference_generator(n, seed):
    out = np.full(n, 7, np.uint16)  # poisoned
    assert K.random_bits(seed, (n,), out=out) is out
    np.testing.assert_array_equal(out, _splitmix_draws(seed, n))
    np.testing.assert_array_equal(K.random_bits(seed, (1, n, 1)), out.reshape(1, n, 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7,), (4097,), (3, 5), (64, 6, 28, 28)])
@pytest.mark.parametrize("threshold", [0, 1, 6554, 32768, 65535])
def test_dropout_kernels_draw_the_generators_mask(shape, threshold, dtype, rng):
    """The kernel's mask is the reference generator's (the Python one for the odd sizes, random_bits
    beyond), and the values are the array code's, bit for bit."""
    x = rng.standard_normal(shape).astype(dtype)
    seed = int(rng.integers(0, 2**63)) * 2 + 1
    scale = dtype(1 / (1 - threshold / 65536))
    out = (np.full(shape, np.nan, dtype), np.full(shape, 7, np.uint8))  # poisoned: every value is written
    y, keep = K.dropout_forward(x, seed, threshold, scale, out=out)
    size = int(np.prod(shape))
    bits = _splitmix_draws(seed, size).reshape(shape) if size < 5000 else K.random_bits(seed, shape)
    kept = bits >= threshold
    np.testing.assert_array_equal(keep, kept.astype(np.uint8))
    np.testing.assert_array_equal(y, x * kept.view(np.uint8) * scale)
    g = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(K.dropout_backward(g, keep, scale), g * kept.view(np.uint8) * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", _C.cpu.available_isas())
def test_dropout_mask_is_the_same_on_every_instruction_set(isa, dtype, rng):
    x = rng.standard_normal((5, 4099)).astype(dtype)
    _C.cpu.set_isa(isa)
    try:
        y, keep = K.dropout_forward(x, 11, 30000, 2.0)
    finally:
        _C.cpu.set_isa(_C.cpu.best_isa())
    kept = K.random_bits(11, x.shape) >= 30000
    np.testing.assert_array_equal(keep, kept)
    np.testing.assert_array_equal(y, x * kept.view(np.uint8) * dtype(2))


def test_dropout_mask_does_not_depend_on_the_thread_count(rng):
    x = rng.standard_normal((64, 6, 28, 28)).astype(np.float32)  # above the threshold for threads
    before = pf.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            pf.set_num_threads(threads)
            pf.manual_seed(4)
            runs.append((*K.dropout_forward(x, 99, 6554, 1.25), K.random_bits(99, x.shape),
                         F.dropout(pf.tensor(x), 0.1).numpy()))
    finally:
        pf.set_num_threads(before)
    for one, two in zip(*runs):
        np.testing.assert_array_equal(one, two)
    _, keep, bits, _ = runs[0]
    np.testing.assert_array_equal(keep, bits >= 6554)
    np.testing.assert_array_equal(bits.ravel()[:4100], _splitmix_draws(99, 4100))


@pytest.mark.parametrize("lane", range(4))
def test_random_bits_are_uniform(lane):
    """Chi-square of each byte of the draws over 256 bins (2^18 draws per lane of the words): 255 degrees
    of freedom, mean 255 and standard deviation 22.6; 400 is 6.4 of them."""
    draws = K.random_bits(2024, (2**20,))[lane::4]
    for byte in (draws & 0xFF, draws >> 8):
        counts = np.bincount(byte, minlength=256)
        expected = draws.size / 256
        assert ((counts - expected) ** 2 / expected).sum() < 400


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keeps_a_binomial_fraction(p):
    n = 300_000
    pf.manual_seed(17)
    y = F.dropout(pf.tensor(np.ones(n, np.float32)), p).numpy()
    kept = (y != 0).mean()
    assert abs(kept - (1 - p)) < 6 * np.sqrt(p * (1 - p) / n)  # 6 standard deviations
    np.testing.assert_allclose(y[y != 0], np.float32(1 / (1 - p)), rtol=1e-6)


def test_dropout_p_zero_and_one(rng):
    x = pf.tensor(rng.standard_normal((3, 50)).astype(np.float32), requires_grad=True)
    assert F.dropout(x, 0.0) is x
    y = F.dropout(x, 1.0)
    y.sum().backward()
    assert not y.detach().numpy().any() and not x.grad.numpy().any()
    pf.manual_seed(3)
    F.dropout(x, 1.0)
    after_p1 = F.dropout(x, 0.5).detach().numpy()
    pf.manual_seed(3)
    F.dropout(x, 0.5)
    np.testing.assert_array_equal(F.dropout(x, 0.5).detach().numpy(), after_p1)  # p = 1 draws its seed too


def test_dropout_is_reproducible_and_advances_per_call(rng):
    x = pf.tensor(rng.standard_normal((4, 50)).astype(np.float32))
    pf.manual_seed(3)
    a, b = F.dropout(x, 0.5).numpy(), F.dropout(x, 0.5).numpy()
    pf.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), a)
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), b)
    assert not np.array_equal(a, b)
    g = F.dropout(x, 0.5, generator=pf.random.Generator(3)).numpy()
    np.testing.assert_array_equal(g, a)  # the same stream as the global generator seeded alike


def test_dropout_through_the_op_draws_the_seeds_mask(rng):
    """F.dropout on a numpy float array draws one seed from the generator and the kernel's mask from
    it; the gradient follows the mask."""
    x = pf.tensor(rng.standard_normal((4, 50)).astype(np.float32), requires_grad=True)
    pf.manual_seed(3)
    y = F.dropout(x, 0.3)
    y.sum().backward()
    seed = pf.random.Generator(3).numpy.bit_generator.random_raw()
    kept = K.random_bits(seed, (4, 50)) >= round(0.3 * 65536)
    np.testing.assert_array_equal(y.detach().numpy(), x.detach().numpy() * kept.view(np.uint8) * np.float32(1 / 0.7))
    np.testing.assert_array_equal(x.grad.numpy(), kept.view(np.uint8) * np.float32(1 / 0.7))


@pytest.mark.parametrize("dtype", [np.float16, ">f4", np.float64])
def test_dropout_mask_does_not_depend_on_the_dtype_path(dtype, rng):
    """float16 and big-endian arrays take the array code (random_bits' draws), float64 the kernel: the
    mask is float32's for the same seed."""
    x = rng.uniform(1, 2, (3, 4099)).astype(np.float32)
    pf.manual_seed(8)
    native = F.dropout(pf.tensor(x), 0.4).numpy()
    pf.manual_seed(8)
    other = F.dropout(pf.tensor(x.astype(dtype)), 0.4).numpy()
    np.testing.assert_array_equal(other != 0, native != 0)
    np.testing.assert_allclose(other.astype(np.float32), native, rtol=2e-3)  # float16: x, scale and y rounded


def test_dropout_nan_and_signs():
    x = np.array([np.nan, np.inf, -2.0, 3.0] * 8, np.float32)
    bits = K.random_bits(5, x.shape)
    threshold = int(np.sort(bits)[16])  # drops half
    y, keep = K.dropout_forward(x, 5, threshold, 2.0)
    kept = bits >= threshold
    np.testing.assert_array_equal(keep, kept)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x) | (~kept & np.isinf(x)))  # 0 * x, as torch
    neg = ~kept & (x == -2)
    assert neg.any() and (y[neg] == 0).all() and np.signbit(y[neg]).all()
    np.testing.assert_array_equal(y[kept & (x == 3)], 6)


X4 = np.ones(4, np.float32)


@pytest.mark.parametrize("call,error,match", [
    (lambda: K.dropout_forward(X4, 1, 65536, 1.0), ValueError, "threshold"),
    (lambda: K.dropout_forward(X4, 1, 1, float("inf")), ValueError, "scale"),
    (lambda: K.dropout_forward(X4, 1.5, 1, 1.0), TypeError, "dropout_forward: seed"),
    (lambda: K.dropout_forward(X4, None, 1, 1.0), TypeError, "dropout_forward: seed"),
    (lambda: K.dropout_forward(X4, True, 1, 1.0), TypeError, "dropout_forward: seed"),
    (lambda: K.dropout_forward(X4, -1, 1, 1.0), ValueError, "dropout_forward: seed"),
    (lambda: K.dropout_forward(X4, 2**64, 1, 1.0), ValueError, "dropout_forward: seed"),
    (lambda: K.dropout_forward(X4, np.ones(4, np.uint16), 1, 1.0), TypeError, "dropout_forward: seed"),
    (lambda: K.dropout_forward(np.ones(4, np.int32), 1, 1, 1.0), TypeError, "dropout_forward: input"),
    (lambda: K.dropout_forward(X4, 1, 1, 1.0, out=(X4.copy(), X4.copy())), TypeError, "dropout_forward: keep"),
    (lambda: K.random_bits(-3, (4,)), ValueError, "random_bits: seed"),
    (lambda: K.random_bits(3, (-4,)), ValueError, "random_bits: shape"),
    (lambda: K.random_bits(3, 4), TypeError, "random_bits: shape"),
    (lambda: K.random_bits(3, (4,), out=np.ones(4, np.int16)), TypeError, "random_bits: out"),
    (lambda: K.random_bits(3, (4,), out=np.ones(5, np.uint16)), ValueError, "random_bits: out"),
    (lambda: K.random_bits(3, (4,), variant="reference"), ValueError, "random_bits: variant"),
    (lambda: K.dropout_backward(X4, np.ones(4, bool), 1.0), TypeError, "dropout_backward: keep"),
    (lambda: K.dropout_backward(X4, np.ones(4, np.uint8), "2"), TypeError, "scale"),
])
def test_dropout_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_family_is_registered():
    assert "activation" in _C.cpu.FAMILIES
