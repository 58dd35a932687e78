"""Random-number state: one global generator that ``pyfastdl.manual_seed`` reseeds.

Everything random in pyfastdl (parameter initialisation, dropout masks, data shuffling) draws
from a :class:`Generator`, by default the global one, so a run is reproducible per seed.
A Generator keeps a numpy ``Generator`` for host draws and, made on first use, a cupy one seeded
from the same seed for draws directly on the GPU. Parameter initialisation always draws on the
host (so a model starts identical on the CPU and the GPU); dropout draws where its input lives.
"""

from __future__ import annotations

import numpy as np

from . import backend

__all__ = ["Generator", "default_generator", "manual_seed", "initial_seed", "seed"]


class Generator:
    """A seeded source of random numbers for numpy and (lazily) cupy arrays."""

    def __init__(self, seed: int = 0):
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> "Generator":
        """Restart the stream from ``seed``; returns self (as torch does)."""
        seed = int(seed)
        if seed < 0:
            raise ValueError(f"manual_seed: seed must be non-negative, got {seed}")
        self._seed = seed
        self._numpy = np.random.default_rng(seed)
        self._cupy = None
        return self

    def initial_seed(self) -> int:
        return self._seed

    @property
    def numpy(self) -> np.random.Generator:
        """The numpy generator (host draws)."""
        return self._numpy

    def for_module(self, xp):
        """The generator that draws arrays of array module ``xp`` (numpy or cupy)."""
        if xp is np:
            return self._numpy
        if self._cupy is None:
            self._cupy = xp.random.default_rng(self._seed)
        return self._cupy


default_generator = Generator(0)


def manual_seed(seed: int) -> Generator:
    """Seed the global generator (initialisation, dropout, shuffling); returns it."""
    return default_generator.manual_seed(seed)


def initial_seed() -> int:
    return default_generator.initial_seed()


def seed() -> int:
    """Seed the global generator from the operating system's entropy; returns the seed used."""
    s = int(np.random.SeedSequence().entropy % (2**63))
    default_generator.manual_seed(s)
    return s


def generator_for(array, generator: Generator | None = None):
    """The numpy or cupy generator that draws arrays on ``array``'s device."""
    return (generator or default_generator).for_module(backend.get_array_module(array))
