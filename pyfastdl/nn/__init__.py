"""Neural-network modules (torch.nn's names) and their functional forms in ``nn.functional``."""

from . import functional, init, parallel, utils  # noqa: F401
from .modules import *  # noqa: F401,F403
from .parameter import Parameter  # noqa: F401
