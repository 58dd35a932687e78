"""Where a training step's time goes: self time per op, per kernel family, and in Python/autograd.

    from pyfastdl.profiler import profile, record_function

    with profile() as prof:
        with record_function("step"):
            loss = model(x).sum(); loss.backward()
    print(prof.table())                       # self time per op / kernel / optimizer step
    prof.export_chrome_trace("trace.json")    # open in https://ui.perfetto.dev or chrome://tracing

``pyfastdl profile MODEL [--steps N] [--trace FILE]`` (in :mod:`pyfastdl.cli`) profiles training steps of a
model's CPU recipe.

What is timed (each a range with a start and a duration, nested ranges subtracted for self time):
  * ``op``: every autograd Function's ``forward`` (in ``Function.apply``) and ``backward`` (in the
    backward walk), by class name, e.g. ``Conv2dFunction.forward``. An op's self time is its array
    code outside the compiled kernels: numpy/BLAS work plus the op's own Python.
  * ``kernel``: every call into the compiled kernels (``pyfastdl._C``), by kernel name; kernels are
    also summed per family (conv, pool, lstm, attention, ...).
  * ``optimizer``: each ``Optimizer.step`` (numpy updates and its loop over parameters).
  * ``module``: each ``nn.Module`` call (for the trace's hierarchy; their self time is Python).
  * ``user``: ranges opened with :func:`record_function`.
Python/autograd is the rest of the wall time: graph building, Tensor wrapping, the backward walk,
module calls -- everything outside the op, kernel and optimizer self times.

Off, the cost is one module-level check (``_active is None``) at each dispatch point.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict

__all__ = ["profile", "record_function", "kernel_family"]

#: the profile being recorded, or None (checked at every dispatch point; keep it a plain global)
_active = None

#: categories whose self time is not counted as Python/autograd overhead
WORK_CATEGORIES = ("op", "kernel", "optimizer")


#: compiled kernels' name prefixes -> the family they belong to (pyfastdl info lists the families)
_FAMILY_PREFIXES = (("conv", "conv"), ("lstm", "lstm"), ("sdpa", "attention"), ("attention", "attention"),
                    ("max_pool", "pool"), ("avg_pool", "pool"), ("adaptive_avg_pool", "pool"))


def kernel_family(name: str) -> str:
    """The kernel family of a compiled kernel's name (``conv2d_backward_input`` -> ``conv``,
    ``sdpa_forward`` -> ``attention``); other kernels go by their name without the pass and variant
    (``layer_norm_forward_reference`` -> ``layer_norm``)."""
    for prefix, family in _FAMILY_PREFIXES:
        if name.startswith(prefix):
            return family
    parts = name.split("_")
    while len(parts) > 1 and parts[-1] in ("reference", "forward", "backward", "input", "weight", "bias"):
        parts.pop()
    return "_".join(parts)


class _Range:
    __slots__ = ("prof", "name", "cat", "t0", "child")

    def __init__(self, prof, name, cat):
        self.prof, self.name, self.cat = prof, name, cat

    def __enter__(self):
        self.child = 0
        self.prof._stack.append(self)
        self.t0 = time.perf_counter_ns()
        return self

    def __exit__(self, *exc):
        t1 = time.perf_counter_ns()
        prof = self.prof
        prof._stack.pop()
        dur = t1 - self.t0
        if prof._stack:
            prof._stack[-1].child += dur
        prof.events.append((self.name, self.cat, self.t0, dur, dur - self.child))
        return False


class _NullRange:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NULL = _NullRange()


def range_(name: str, cat: str):
    """A timed range in the active profile (a no-op context when none is active)."""
    prof = _active
    if prof is None or threading.get_ident() != prof._thread:
        return _NULL
    return _Range(prof, name, cat)


def record_function(name: str):
    """``with record_function("name"):`` marks a user range in the active profile (torch's name)."""
    return range_(name, "user")


class profile:
    """Context manager recording ops, kernels and optimizer steps of this thread (see the module docstring)."""

    def __init__(self):
        self.events = []  # (name, category, start ns, duration ns, self ns)
        self._stack = []
        self.wall_ns = 0

    def __enter__(self):
        global _active
        if _active is not None:
            raise RuntimeError("profile: another profile is already active")
        self._thread = threading.get_ident()
        self._t0 = time.perf_counter_ns()
        _active = self
        return self

    def __exit__(self, *exc):
        global _active
        _active = None
        self.wall_ns += time.perf_counter_ns() - self._t0
        return False

    # ---- summaries ------------------------------------------------------------------------------
    def key_averages(self):
        """One dict per (category, name): ``count``, ``total_ms``, ``self_ms``, sorted by self time."""
        rows = defaultdict(lambda: [0, 0, 0])
        for name, cat, _t0, dur, self_ns in self.events:
            r = rows[(cat, name)]
            r[0] += 1
            r[1] += dur
            r[2] += self_ns
        out = [{"category": cat, "name": name, "count": c, "total_ms": tot / 1e6, "self_ms": s / 1e6}
               for (cat, name), (c, tot, s) in rows.items()]
        return sorted(out, key=lambda r: -r["self_ms"])

    def kernel_families(self):
        """Self time (ms) of the compiled kernels per family."""
        fam = defaultdict(float)
        for name, cat, _t0, _dur, self_ns in self.events:
            if cat == "kernel":
                fam[kernel_family(name)] += self_ns / 1e6
        return dict(sorted(fam.items(), key=lambda kv: -kv[1]))

    def summary(self):
        """Wall time (ms) and how it splits: compiled kernels, ops' array code, optimizer steps, and
        Python/autograd (the rest)."""
        by_cat = defaultdict(float)
        for _name, cat, _t0, _dur, self_ns in self.events:
            by_cat[cat] += self_ns / 1e6
        wall = self.wall_ns / 1e6
        parts = {"kernels": by_cat["kernel"], "ops (array code outside kernels)": by_cat["op"],
                 "optimizer steps": by_cat["optimizer"]}
        parts["Python/autograd"] = max(wall - sum(parts.values()), 0.0)
        return {"wall_ms": wall, "parts_ms": parts}

    def table(self, row_limit: int = 20) -> str:
        """A text table: the split of the wall time, kernel families, then the top rows by self time."""
        s = self.summary()
        wall = s["wall_ms"] or 1e-9
        lines = [f"wall time {s['wall_ms']:.1f} ms"]
        lines += [f"  {k:<34} {v:9.1f} ms  {100 * v / wall:5.1f}%" for k, v in s["parts_ms"].items()]
        fams = self.kernel_families()
        if fams:
            lines.append("kernel families (self): " + ", ".join(f"{k} {v:.1f} ms ({100 * v / wall:.1f}%)"
                                                                for k, v in fams.items()))
        lines += ["", f"{'name':<44} {'category':<9} {'calls':>6} {'self ms':>9} {'self %':>7} {'total ms':>9}"]
        for r in [r for r in self.key_averages() if r["category"] not in ("module", "user")][:row_limit]:
            lines.append(f"{r['name'][:44]:<44} {r['category']:<9} {r['count']:>6} {r['self_ms']:>9.2f} "
                         f"{100 * r['self_ms'] / wall:>6.1f}% {r['total_ms']:>9.2f}")
        return "\n".join(lines)

    def export_chrome_trace(self, path: str) -> None:
        """Write the ranges as Chrome trace-event JSON (complete "X" events, microseconds)."""
        t_start = min((e[2] for e in self.events), default=0)
        pid, tid = os.getpid(), 0
        events = [{"name": name, "cat": cat, "ph": "X", "ts": (t0 - t_start) / 1e3, "dur": dur / 1e3,
                   "pid": pid, "tid": tid, "args": {"self_us": self_ns / 1e3}}
                  for name, cat, t0, dur, self_ns in sorted(self.events, key=lambda e: (e[2], -e[3]))]
        events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": "pyfastdl"}})
        with open(path, "w") as f:
            json.dump({"traceEvents": events, "displayTimeUnit": "ms"}, f)
