"""What makes a training run resumable: stopping cleanly on a signal and the random state to save.

A run that is resumed must end with the very weights an uninterrupted run would have, so the
checkpoint keeps everything the next step depends on: the model and optimizer (momentum buffers,
Adam moments, step counts), the learning-rate schedule, the data loader's place in the epoch, the
epoch's running metrics, the history so far, and every random stream the run draws from.
:func:`pyfastdl.train.fit` assembles that; this module holds the two generic pieces:

* :class:`StopOnSignal`: while a run trains, SIGINT (Ctrl-C) and SIGTERM only *ask* it to stop;
  the loop looks at the request at every step boundary, saves a checkpoint and raises
  :class:`TrainingInterrupted` (the command line exits with 128 + the signal's number, as a
  shell does). A second signal stops at once (KeyboardInterrupt), keeping the last checkpoint.
* :func:`random_state` / :func:`set_random_state`: the state of Python's and numpy's global
  generators and of every generator reachable from the run's objects (model, datasets and their
  augmentations, recipe), found by walking their attributes, so no recipe has to list its own.
"""

from __future__ import annotations

import numbers
import random
import signal
import threading
import types

import numpy as np

from ..random import Generator
from ..tensor import Tensor

__all__ = ["StopOnSignal", "TrainingInterrupted", "NonFiniteLossError", "random_state", "set_random_state"]


class TrainingInterrupted(Exception):
    """A run stopped on a signal after saving a checkpoint it can be resumed from."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as a shell reports it."""
        return 128 + self.signum


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run stopped before updating the weights."""


class StopOnSignal:
    """Context manager: turn SIGINT and SIGTERM into a stop request (``requested``, the signal's
    number or ``None``) for the duration of a run, then restore the previous handlers. Outside the
    main thread (where Python cannot install handlers) it does nothing. The handler only records
    the signal: saving and reporting happen in the loop, at a step boundary."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped without saving")
        self.requested = signum


# ---- random state --------------------------------------------------------------------------------
_NOT_WALKED = (str, bytes, numbers.Number, np.ndarray, np.generic, Tensor, type, types.ModuleType,
               types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def _find_generators(obj, path: str, found: dict, seen: set) -> None:
    """Collect ``path -> generator`` for every numpy Generator/RandomState and pyfastdl Generator
    reachable from ``obj`` through attributes, dicts, lists and tuples (each object once)."""
    if obj is None or id(obj) in seen or isinstance(obj, _NOT_WALKED) or hasattr(obj, "__cuda_array_interface__"):
        return
    seen.add(id(obj))
    if isinstance(obj, (Generator, np.random.Generator, np.random.RandomState)):
        found[path] = obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _find_generators(value, f"{path}[{key!r}]", found, seen)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _find_generators(value, f"{path}[{i}]", found, seen)
    elif hasattr(obj, "__dict__"):
        for name, value in vars(obj).items():
            _find_generators(value, f"{path}.{name}", found, seen)


def _generators(roots: dict) -> dict:
    found, seen = {}, set()
    for name, root in roots.items():
        _find_generators(root, name, found, seen)
    return found


def _get(generator) -> dict:
    if isinstance(generator, Generator):
        return generator.get_state()
    if isinstance(generator, np.random.RandomState):
        return generator.get_state(legacy=False)
    return generator.bit_generator.state


def _set(generator, state: dict) -> None:
    if isinstance(generator, Generator):
        generator.set_state(state)
    elif isinstance(generator, np.random.RandomState):
        generator.set_state(state)
    else:
        generator.bit_generator.state = state


def random_state(roots: dict) -> dict:
    """Python's and numpy's global generator states and those of every generator reachable from
    ``roots`` (name -> object), by path (e.g. ``"datasets['train'].dataset.transform.generator"``)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(legacy=False),
            "generators": {path: _get(g) for path, g in _generators(roots).items()}}


def set_random_state(roots: dict, state: dict, where: str) -> None:
    """Restore :func:`random_state`'s output into the same kind of objects, freshly built. The
    generators found must be the ones saved (``where`` names the checkpoint in the error)."""
    generators = _generators(roots)
    saved = state["generators"]
    if set(generators) != set(saved):
        raise ValueError(f"{where}: the run's random generators differ from the checkpoint's (only in the "
                         f"checkpoint: {sorted(set(saved) - set(generators))}; only in this run: "
                         f"{sorted(set(generators) - set(saved))}); was it made with other options?")
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    for path, generator in generators.items():
        _set(generator, saved[path])
