"""numpy's array data from pyfastdl's caching pool (csrc/bind/memory.cpp).

A training step makes the same large temporaries every step. Left to the C library, a freed block
above its mmap threshold (and the top of its heap) goes back to the kernel, and the next step's
block faults in fresh, zeroed pages: YOLOv1's step spent more system time (119 ms) than computing
(106 ms) that way. The pool keeps freed blocks of 1 MiB and more, by exact size (whole pages), and
hands them to the next request of that size; smaller ones go to the C library as before.

It is installed when pyfastdl is imported, as numpy's data-memory handler (NEP 49) for the importing
thread's context: every numpy array made there afterwards is served by it, the caller's own arrays
too. ``PYFASTDL_NUMPY_POOL=0`` in the environment leaves numpy's allocator alone;
``PYFASTDL_NUMPY_POOL_MB`` bounds the cached memory (default 2048 MiB; past it the oldest cached
blocks are released). Memory in the cache is counted in the process's RSS; :func:`empty_cache`
returns it, as ``torch.cuda.empty_cache`` does for torch's GPU pool.
"""

from __future__ import annotations

import os

from ._core import _C

__all__ = ["install", "uninstall", "empty_cache", "stats"]

DEFAULT_LIMIT_MB = 2048


def install(limit_mb: float = DEFAULT_LIMIT_MB) -> None:
    """Serve numpy's array data (in the calling thread's context) from the pool, keeping at most
    ``limit_mb`` MiB of freed blocks. Installing again only changes the limit."""
    if isinstance(limit_mb, bool) or not isinstance(limit_mb, (int, float)) or not limit_mb >= 0:
        raise ValueError(f"memory.install: limit_mb must be a number >= 0, got {limit_mb!r}")
    _C.memory.install(int(min(limit_mb, 2**40) * 2**20))


def uninstall() -> None:
    """numpy's previous allocator again (arrays the pool made are still freed through it), and
    the cache released."""
    _C.memory.uninstall()


def empty_cache() -> None:
    """Release every cached block to the system (the pool stays installed)."""
    _C.memory.empty_cache()


def stats() -> dict:
    """The pool's counters: ``cached_bytes`` and ``cached_blocks`` now, ``peak_cached_bytes``,
    ``limit_bytes``, requests served from the cache (``hits``) and from the system (``misses``),
    and ``min_block_bytes``, the smallest block it caches."""
    return dict(_C.memory.stats())


def _install_default() -> None:
    """At import: install unless PYFASTDL_NUMPY_POOL=0; PYFASTDL_NUMPY_POOL_MB sets the limit."""
    if os.environ.get("PYFASTDL_NUMPY_POOL", "1").strip() in ("0", "false", "False", "no", "off"):
        return
    raw = os.environ.get("PYFASTDL_NUMPY_POOL_MB")
    try:
        limit = DEFAULT_LIMIT_MB if raw is None else float(raw)
        install(limit)
    except ValueError:
        raise ValueError(f"PYFASTDL_NUMPY_POOL_MB must be a number of MiB >= 0, got {raw!r}") from None
