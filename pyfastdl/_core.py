"""Loads the compiled extension. OpenBLAS (scipy-openblas32) is imported first so the dynamic
loader finds the library that pyfastdl._C was linked against."""

import scipy_openblas32  # noqa: F401  (loads libscipy_openblas before _C needs it)

from . import _C  # noqa: E402

__all__ = ["_C"]
