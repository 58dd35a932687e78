"""Operations with autograd, with torch.nn.functional's names and argument conventions."""

from .attention import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .lstm import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .activation import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .padding import *  # noqa: F401,F403
