"""Raw lstm kernels on numpy/cupy arrays (placeholder until the family lands)."""

__all__: list[str] = []
