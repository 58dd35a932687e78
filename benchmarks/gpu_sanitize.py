"""One small case per CUDA kernel family, forward and backward, for compute-sanitizer.

    compute-sanitizer --tool memcheck  --error-exitcode 1 python3 -P benchmarks/gpu_sanitize.py [FAMILY ...]
    compute-sanitizer --tool racecheck --error-exitcode 1 python3 -P benchmarks/gpu_sanitize.py [FAMILY ...]

Sizes are small (the sanitizers slow kernels down a hundredfold or more) but off every tile boundary,
so edge tiles, partial warps and masked loads all run. Each case goes through the public nn layer, so
the wrappers' allocations and the bindings' launches are checked along with the kernels; float16 runs
the attention's tensor-core path. Prints one line per case; exits 1 if a case raises."""

from __future__ import annotations

import sys

import numpy as np

import pyfastdl
import pyfastdl.nn.functional as F
from pyfastdl import nn


def _t(rng, *shape, dtype="float32"):
    return pyfastdl.tensor(rng.standard_normal(shape).astype(dtype), device="cuda", requires_grad=True)


def conv(rng):
    x = _t(rng, 2, 5, 9, 11)
    y = F.conv2d(x, _t(rng, 7, 5, 3, 3), _t(rng, 7), stride=1, padding=1)
    y = F.conv2d(y, _t(rng, 6, 7, 3, 3), None, stride=2, padding=1)  # strided input gradient
    y = F.conv2d(y, _t(rng, 6, 3, 1, 1), None, groups=2)  # grouped 1x1
    return F.conv_transpose2d(y, _t(rng, 6, 4, 4, 4), None, stride=2, padding=1).sum()


def pool(rng):
    x = _t(rng, 2, 3, 13, 10)
    return (F.max_pool2d(x, 3, stride=2, padding=1).sum() + F.avg_pool2d(x, 2, ceil_mode=True).sum()
            + F.adaptive_avg_pool2d(x, (3, 4)).sum())


def lstm(rng):
    layer = nn.LSTM(7, 13, num_layers=2).to("cuda")
    out, (h, c) = layer(_t(rng, 11, 3, 7))
    cell = nn.LSTMCell(7, 13).to("cuda")
    h1, c1 = cell(_t(rng, 3, 7))
    return out.sum() + h.sum() + c.sum() + h1.sum() + c1.sum()


def attention(rng):
    total = None
    for dtype in ("float32", "float16"):
        q, k, v = _t(rng, 1, 2, 37, 64, dtype=dtype), _t(rng, 1, 2, 45, 64, dtype=dtype), _t(rng, 1, 2, 45, 64, dtype=dtype)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().to("float32")
        mask = pyfastdl.tensor(rng.random((37, 45)) > 0.3, device="cuda")
        out = out + F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().to("float32")
        total = out if total is None else total + out
    return total


FAMILIES = {"conv": conv, "pool": pool, "lstm": lstm, "attention": attention}


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(FAMILIES)
    failed = 0
    for name in names:
        rng = np.random.default_rng(0)
        try:
            FAMILIES[name](rng).backward()
            pyfastdl.backend.array_module("cuda").cuda.get_current_stream().synchronize()
            print(f"{name}: forward and backward ran", flush=True)
        except Exception as exc:
            failed += 1
            print(f"{name}: FAILED {type(exc).__name__}: {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
