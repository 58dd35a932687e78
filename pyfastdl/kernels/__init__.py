"""Raw kernels on plain numpy (CPU) or cupy (CUDA) arrays: no autograd, for kernel study and
benchmarks. One file per kernel family -- conv, pool, lstm, attention, and on the CPU norm, softmax,
optim, activation -- each shaped by
:mod:`._dispatch`: every function picks the device from its input arrays (through ``backend``),
returns new arrays unless ``out=`` supplies them, and takes ``variant=``: ``"fast"`` (default) or
``"reference"``, the simple kernel kept beside the fast one so a reader can see what each
optimisation bought. ``variant=`` and ``out=`` are keyword-only everywhere."""

from .activation import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .lstm import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .softmax import *  # noqa: F401,F403
