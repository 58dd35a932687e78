"""Loads the compiled extension. OpenBLAS (scipy-openblas32) is imported first so the dynamic
loader finds the library that pyfastdl._C was linked against.

OpenMP's idle threads sleep instead of spinning (OMP_WAIT_POLICY=passive, unless the user set a
policy): between our kernels a spinning OpenMP worker holds a core that numpy's own BLAS threads
and the rest of the step need, and on a 2-core machine that made a 2-thread LeNet step 3x slower
than a 1-thread one (63.5 ms against 20.2 ms with passive waiting, AMD EPYC Zen 3, 2026-12-07).
libgomp reads the variable once, when _C loads it, so it is set only for that moment: child
processes and other OpenMP runtimes loaded later (torch's) keep their own defaults."""

import os

import scipy_openblas32  # noqa: F401  (loads libscipy_openblas before _C needs it)

_set_policy = "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ
if _set_policy:
    os.environ["OMP_WAIT_POLICY"] = "passive"
try:
    from . import _C  # noqa: E402
finally:
    if _set_policy:
        del os.environ["OMP_WAIT_POLICY"]

__all__ = ["_C"]
