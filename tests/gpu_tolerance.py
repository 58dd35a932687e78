"""Element-wise tolerances for the GPU tests' 16-bit results.

A norm-wise relative error of 2e-2 is 10-60 times what float16/bfloat16 rounding gives, so a bug that
spoils 1% of the elements would pass it. Alongside it the GPU tests bound every element:

    |out - ref| <= C * eps * (|ref| + rms(ref)),     C = 8

with eps the dtype's unit roundoff (2^-8 bfloat16, 2^-11 float16) and ``ref`` the float64 result on
the same rounded inputs. What the kernels add to that result: the products of 16-bit inputs are exact
in float32 and their K-term sums err by about sqrt(K) * 2^-24 of the terms (under 2^-14 of them for any
K below 2^20: negligible); the output is rounded once to 16 bits (eps * |ref|); and where a kernel
rounds an intermediate to 16 bits (attention's probabilities and dS before their products), K terms
of random sign each off by eps give sqrt(K) * eps times terms of size rms(ref) / sqrt(K), that is
eps * rms(ref). The sqrt(K) * eps16 scale that a norm-wise argument suggests would be far looser (0.8
rms for bfloat16 at K = 576) and miss the errors this check is for; C = 8 leaves a margin of four over
what is expected and still fails an element that is wrong by a twentieth of the typical output."""

import numpy as np

EPS = {"float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}
C = 8.0


def assert_elementwise(out, ref, dtype, what="output"):
    """Fails naming the worst element when any element of ``out`` (float64, on the host) is
    farther from ``ref`` than the bound above; float32 and float64 are left to the norm-wise check."""
    if dtype not in EPS:
        return
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    assert not np.isnan(out).any(), f"{what}: NaN in the result"
    rms = np.sqrt(np.mean(ref ** 2)) if ref.size else 0.0
    bound = C * EPS[dtype] * (np.abs(ref) + rms)
    excess = np.abs(out - ref) - bound
    bad = excess > 0
    if bad.any():
        i = np.unravel_index(np.argmax(excess), ref.shape)
        raise AssertionError(f"{what} ({dtype}): {bad.sum()} of {ref.size} elements beyond C*eps*(|ref| + rms); "
                             f"worst at {i}: got {out[i]!r}, expected {ref[i]!r}, bound {bound[i]:.3g}")


def same_to_one_ulp(a, b, dtype):
    """Two runs of a 16-bit result whose float32 sums are added by atomics in any order: the float32
    sums agree to rounding, so the 16-bit results may differ by one unit in the last place at most."""
    if dtype not in EPS:
        return np.linalg.norm(a - b) <= 1e-6 * max(np.linalg.norm(a), 1e-30)
    ulp = 2 * EPS[dtype] * np.maximum(np.abs(a), np.abs(b))  # one ulp of the larger, at most
    return bool(np.all(np.abs(a - b) <= ulp + np.finfo(np.float32).tiny))
