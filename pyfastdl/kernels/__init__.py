"""Raw kernels on plain numpy (CPU) or cupy (CUDA) arrays: no autograd, for kernel study and
benchmarks. Each function picks the device from its input arrays; outputs are new arrays.

Where a family keeps several implementations, ``variant=`` selects one by name (the simple
reference kernel beside the fast one) so a reader can see what each optimisation bought."""

from .attention import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .lstm import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .softmax import *  # noqa: F401,F403
