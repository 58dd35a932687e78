"""Timing helpers shared by the benchmark suites and `pyfastdl bench`.

CPU timings are wall-clock medians. GPU timings use CUDA events on the current stream after a
warm-up, take the median of many repeats, and (by default) overwrite a buffer larger than the L2
cache between repeats so small inputs are not timed from a warm cache. The ceilings — a large
device-to-device copy and a large bf16 matrix product — are measured in the same run so results
can be read as a fraction of what the card does.
"""

from __future__ import annotations

import statistics
import time

from . import backend

L2_FLUSH_BYTES = 256 * 2**20  # larger than any current L2 (H100: 50 MiB, H200: 60 MiB)


def time_cpu(fn, warmup=1, repeats=10, min_time=0.0):
    """Median seconds of ``fn()`` over ``repeats`` calls (more while ``min_time`` is not reached)."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_cpu_against(benchmark, ours, ref, rounds):
    """Median seconds of ``ours()``, timed by pytest-benchmark's ``benchmark`` fixture over ``rounds``
    rounds, and of ``ref()``, run once just before each of those rounds: the two alternate, so that
    both meet the same machine conditions (frequency, other load) rather than one a quieter minute."""
    ref_times = []

    def time_ref():
        ref_times.append(time_cpu(ref, warmup=0, repeats=1))

    ref()  # warm-up
    benchmark.pedantic(ours, setup=time_ref, rounds=rounds, warmup_rounds=1)
    return benchmark.stats.stats.median, statistics.median(ref_times)


class _L2Flusher:
    def __init__(self, cp):
        self.buf = cp.empty(L2_FLUSH_BYTES // 4, dtype=cp.float32)

    def __call__(self):
        self.buf.fill(1.0)


def time_cuda(fn, warmup=3, repeats=20, flush_l2=True):
    """Median seconds of ``fn()`` on the GPU, timed with CUDA events on the current stream."""
    cp = backend.array_module("cuda")
    flush = _L2Flusher(cp) if flush_l2 else None
    for _ in range(warmup):
        fn()
    stream = cp.cuda.get_current_stream()
    stream.synchronize()
    times = []
    for _ in range(repeats):
        if flush is not None:
            flush()
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record(stream)
        fn()
        end.record(stream)
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
    return statistics.median(times)


def cuda_ceilings(copy_bytes=2 * 2**30, gemm_n=8192):
    """Measured ceilings of this GPU: device-to-device copy bandwidth (GB/s, read + write counted)
    and bf16 matrix-product throughput (TFLOP/s, through torch when installed, else fp16 in cupy)."""
    cp = backend.array_module("cuda")
    src = cp.empty(copy_bytes // 4, dtype=cp.float32)
    src.fill(1.0)
    dst = cp.empty_like(src)
    t_copy = time_cuda(lambda: dst.__setitem__(Ellipsis, src), repeats=10, flush_l2=False)
    result = {"copy_GBps": 2 * copy_bytes / t_copy / 1e9}
    del src, dst
    try:
        import torch  # noqa: PLC0415

        a = torch.randn(gemm_n, gemm_n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(gemm_n, gemm_n, device="cuda", dtype=torch.bfloat16)
        t_mm = time_cuda(lambda: a @ b, repeats=10, flush_l2=False)
        result["matmul_dtype"] = "bfloat16 (torch)"
    except ImportError:
        a = cp.random.standard_normal((gemm_n, gemm_n)).astype(cp.float16)
        b = cp.random.standard_normal((gemm_n, gemm_n)).astype(cp.float16)
        t_mm = time_cuda(lambda: a @ b, repeats=10, flush_l2=False)
        result["matmul_dtype"] = "float16 (cupy)"
    result["matmul_TFLOPs"] = 2 * gemm_n**3 / t_mm / 1e12
    return result


# ---- `pyfastdl bench` ---------------------------------------------------------------------------

FAMILIES = ("conv", "pool", "lstm", "attention")


def benchmark_files(families):
    """The installed (or checked-out) benchmark suites of ``families``."""
    import glob  # noqa: PLC0415
    import os  # noqa: PLC0415

    here = os.path.dirname(__file__)
    for folder in (os.path.join(here, "benchmarks"), os.path.join(os.path.dirname(here), "benchmarks")):
        if os.path.isdir(folder):
            break
    else:
        raise FileNotFoundError("pyfastdl bench: the benchmark suites were not installed with this package")
    files = []
    for fam in families:
        found = sorted(glob.glob(os.path.join(folder, f"bench_{fam}*.py")))
        if not found:
            raise FileNotFoundError(f"pyfastdl bench: no benchmark suite for family {fam!r} in {folder}")
        files += found
    return files


def run_bench(args) -> int:
    """Run the benchmark suites with pytest (ours and torch in the same run) and print the table;
    ``pyfastdl bench models [MODEL ...]`` runs the end-to-end training steps instead."""
    import glob  # noqa: PLC0415
    import os  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    if args.isa:
        from ._core import _C  # noqa: PLC0415

        try:
            _C.cpu.set_isa(args.isa)
        except ValueError as e:
            print(f"pyfastdl bench: --isa {args.isa}: {e}")
            return 2
    if args.families[:1] == ["models"]:
        from . import bench_models  # noqa: PLC0415

        args.cases = args.families[1:]
        return bench_models.main(args)
    unknown = [f for f in args.families if f not in FAMILIES]
    if unknown:
        print(f"pyfastdl bench: unknown family {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
        return 2
    try:
        import pytest  # noqa: PLC0415
        import pytest_benchmark  # noqa: F401,PLC0415
    except ImportError:
        print("pyfastdl bench needs pytest and pytest-benchmark: pip install 'pyfastdl[bench]'")
        return 2
    out = args.out or tempfile.mkdtemp(prefix="pyfastdl-bench-")
    os.makedirs(out, exist_ok=True)
    os.environ["PYFASTDL_BENCH_OUT"] = out
    files = benchmark_files(args.families or FAMILIES)
    cmd = ["-q", "-p", "pyfastdl._pytest_plugin", "-p", "no:cacheprovider",
           "-m", "gpu" if args.device == "cuda" else "not gpu"]
    if args.k:
        cmd += ["-k", args.k]
    rc = pytest.main(cmd + files)
    for md in sorted(glob.glob(os.path.join(out, "*.md"))):
        with open(md) as f:
            print(f.read())
    print(f"results written to {out}")
    return int(rc)


def add_parser(sub):
    from . import bench_models  # noqa: PLC0415

    p = sub.add_parser("bench", help="benchmark the kernels (or whole training steps) against PyTorch",
                       description="pyfastdl bench [FAMILY ...]: the kernel suites; pyfastdl bench models "
                                   "[MODEL ...]: one training step of each model against PyTorch "
                                   f"(models: {', '.join(bench_models.CASES)})")
    p.add_argument("families", nargs="*", metavar="FAMILY",
                   help=f"kernel families to run (default: all of {', '.join(FAMILIES)}), or 'models' "
                        "followed by model names")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("-k", default="", help="pytest -k expression to pick cases, e.g. 'resnet and forward'")
    p.add_argument("--out", help="folder for the JSON and markdown results (default: a temporary folder)")
    p.add_argument("--isa", help="run the CPU kernels' copy for a narrower instruction set than this CPU's best "
                                 "(base, avx2; `pyfastdl info` lists them): on an AVX-512 machine, the AVX2 path")
    bench_models.add_arguments(p.add_argument_group("bench models"))
    p.set_defaults(func=run_bench)
