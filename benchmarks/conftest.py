"""Benchmark fixtures. CPU suites use pytest-benchmark; every suite also records its cases through
the ``record`` fixture — ours and the reference timed in the same run — which, at the end of the
session, writes one JSON and one markdown table to $PYFASTDL_BENCH_OUT (default benchmarks/results/)
named by device and date, holding the commit, the device, the software versions and per case:
ours, reference, ratio, and throughput. With $PYFASTDL_BENCH_JSONL set, each case is also appended to
that file as a JSON line the moment it is recorded (the GPU check's runs can be cut by a timeout)."""

import datetime
import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

_RECORDS = []


def _commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(__file__), check=True)
        return out.stdout.strip()
    except Exception:
        return os.environ.get("PYFASTDL_COMMIT", "unknown")


@pytest.fixture
def record():
    """record(family, case, ours_s, ref_s, flop=None, bytes=None, device="cpu", **extra)."""

    def add(family, case, ours_s, ref_s, flop=None, bytes=None, device="cpu", **extra):  # noqa: A002
        row = {"family": family, "case": case, "device": device, "ours_ms": ours_s * 1e3,
               "ref_ms": None if ref_s is None else ref_s * 1e3,
               "ratio": None if ref_s is None else ref_s / ours_s}  # > 1: ours is faster
        if flop:
            row["ours_GFLOPs"] = flop / ours_s / 1e9
        if bytes:
            row["ours_GBps"] = bytes / ours_s / 1e9
        row.update(extra)
        _RECORDS.append(row)
        live = os.environ.get("PYFASTDL_BENCH_JSONL")
        if live:  # one line per case as it ends, so a run cut short keeps what it measured
            with open(live, "a") as f:
                f.write(json.dumps(row) + "\n")
        return row

    return add


def _threads():
    import pyfastdl

    return pyfastdl.get_num_threads()


def _device_name(rows):
    if any(r["device"] == "cuda" for r in rows):
        try:
            import cupy

            name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
            return (name.decode() if isinstance(name, bytes) else name).replace(" ", "-")
        except Exception:
            return "cuda"
    from pyfastdl.bench_models import cpu_device_name

    return cpu_device_name()


def pytest_sessionfinish(session, exitstatus):
    if not _RECORDS:
        return
    out_dir = os.environ.get("PYFASTDL_BENCH_OUT", os.path.join(os.path.dirname(__file__), "results"))
    os.makedirs(out_dir, exist_ok=True)
    date = datetime.date.today().isoformat()
    device = _device_name(_RECORDS)
    families = sorted({r["family"] for r in _RECORDS})
    stem = os.path.join(out_dir, f"{device}-{date}-{'-'.join(families)}")
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:
        pass
    from pyfastdl._core import _C
    from pyfastdl.bench_models import cpu_name

    isa = _C.cpu.get_isa()
    if isa != _C.cpu.best_isa():  # a narrower copy, chosen with pyfastdl bench --isa
        stem += f"-{isa}"
    meta = {"commit": _commit(), "device": device, "date": date, "machine": platform.machine(),
            "cpu": cpu_name(), "instruction_set": isa, "threads": _threads(), "versions": versions}
    with open(stem + ".json", "w") as f:
        json.dump({"meta": meta, "cases": _RECORDS}, f, indent=1)
    ratios = {}
    for r in _RECORDS:
        if r["ratio"] is not None:
            ratios.setdefault(r["family"], []).append(r["ratio"])
    lines = [f"# Benchmarks on {device}, {date}, commit {meta['commit']}", "",
             f"CPU: {meta['cpu']} ({isa} kernels, {meta['threads']} threads). Versions: "
             + ", ".join(f"{k} {v}" for k, v in versions.items()), "",
             "ratio = reference time / our time (> 1: pyfastdl is faster). Medians.", "",
             "| family | case | ours (ms) | reference (ms) | ratio | ours GFLOP/s | ours GB/s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in _RECORDS:
        fmt = lambda v, p=3: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
        lines.append(f"| {r['family']} | {r['case']} | {fmt(r['ours_ms'])} | {fmt(r['ref_ms'])} | "
                     f"{fmt(r['ratio'], 2)} | {fmt(r.get('ours_GFLOPs'), 1)} | {fmt(r.get('ours_GBps'), 1)} |")
    lines += ["", "Median ratio per family: " + ", ".join(
        f"{fam} {float(np.median(v)):.2f}x" for fam, v in sorted(ratios.items()))]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
