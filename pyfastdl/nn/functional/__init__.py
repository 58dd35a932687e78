"""Operations with autograd, with torch.nn.functional's names and argument conventions."""

from .attention import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .lstm import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
