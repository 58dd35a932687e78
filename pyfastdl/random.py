"""Random-number state: one global generator that ``pyfastdl.manual_seed`` reseeds.

Everything random in pyfastdl (parameter initialisation, dropout masks, data shuffling) draws
from a :class:`Generator`, by default the global one, so a run is reproducible per seed.
A Generator keeps a numpy ``Generator`` for host draws and, made on first use, a cupy one seeded
from the same seed for draws directly on the GPU. Parameter initialisation always draws on the
host (so a model starts identical on the CPU and the GPU); dropout draws where its input lives.

``get_state()`` / ``set_state()`` (torch's names; ``get_rng_state`` / ``set_rng_state`` for the
global generator) save and restore the host stream as a JSON-friendly dict, so a resumed training
run draws the same numbers as an uninterrupted one. The cupy stream cannot be saved (cupy does not
serialise its generators): after ``set_state`` GPU draws start again from the seed, with a warning.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import backend

__all__ = ["Generator", "default_generator", "manual_seed", "initial_seed", "seed", "get_rng_state", "set_rng_state"]


class Generator:
    """A seeded source of random numbers for numpy and (lazily) cupy arrays."""

    def __init__(self, seed: int = 0):
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> "Generator":
        """Restart the stream from ``seed``; returns self (as torch does)."""
        try:
            seed = int(seed)  # (as torch's manual_seed: 1.5 seeds 1)
        except (TypeError, ValueError, OverflowError):
            raise TypeError(f"manual_seed: seed must be an integer, got {type(seed).__name__} {seed!r}") from None
        if seed < 0:
            raise ValueError(f"manual_seed: seed must be non-negative, got {seed}")
        self._seed = seed
        self._numpy = np.random.default_rng(seed)
        self._cupy = None
        return self

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        """``{"seed": int, "numpy": <numpy bit generator state>, "cupy_used": bool}``."""
        return {"seed": self._seed, "numpy": self._numpy.bit_generator.state, "cupy_used": self._cupy is not None}

    def set_state(self, state: dict) -> "Generator":
        """Continue the host stream from :meth:`get_state`'s output. GPU draws restart from the seed
        (cupy cannot save its generators' states), with a warning where the saved stream had drawn on the GPU."""
        self.manual_seed(state["seed"])
        self._numpy.bit_generator.state = state["numpy"]
        if state.get("cupy_used"):
            warnings.warn("pyfastdl.random: the GPU stream (dropout on cuda) restarts from the seed; cupy cannot "
                          "save its state, so the draws differ from an uninterrupted run's", stacklevel=2)
        return self

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


def get_rng_state() -> dict:
    """The global generator's state (see :meth:`Generator.get_state`)."""
    return default_generator.get_state()


def set_rng_state(state: dict) -> None:
    """Restore the global generator from :func:`get_rng_state`'s output."""
    default_generator.set_state(state)


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
