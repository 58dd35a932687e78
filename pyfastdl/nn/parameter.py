"""Parameter: a Tensor that a Module registers as one of its learnable weights."""

from __future__ import annotations

from .. import backend
from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf Tensor that requires grad by default. Assigning one to a Module attribute registers it.

    ``data`` may be a Tensor (its array is shared, not copied) or a numpy/cupy array."""

    def __init__(self, data, requires_grad=True):
        if isinstance(data, Tensor):
            data = data.data
        backend.device_of(data)  # TypeError for anything but a numpy/cupy array
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
