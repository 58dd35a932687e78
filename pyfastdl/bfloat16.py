"""bfloat16 on the GPU without a bfloat16 dtype in cupy.

The CUDA kernels take bfloat16 arrays. cupy has no such dtype, so a bfloat16 array is held as the
uint16 bit patterns and handed to the bindings through :class:`BFloat16View`, which presents the
same memory with typestr ``"<V2"`` (2 raw bytes), the form the bindings read as bfloat16.
"""

from __future__ import annotations

import numpy as np


class BFloat16View:
    """A cupy uint16 array of bfloat16 bits, seen by pyfastdl's CUDA bindings as bfloat16."""

    def __init__(self, bits):
        if bits.dtype != np.uint16:
            raise TypeError(f"BFloat16View: expected uint16 bit patterns, got {bits.dtype}")
        self.bits = bits

    @property
    def shape(self):
        return self.bits.shape

    @property
    def __cuda_array_interface__(self):
        cai = dict(self.bits.__cuda_array_interface__)
        cai["typestr"] = "<V2"
        cai["descr"] = [("", "<V2")]
        return cai


def to_bits(x):
    """float values -> bfloat16 bit patterns (numpy uint16), rounded to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bits(bits):
    """bfloat16 bit patterns (numpy uint16) -> their float32 values."""
    return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)
