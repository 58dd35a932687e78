"""conv operations with autograd (placeholder until the family lands)."""

__all__: list[str] = []
