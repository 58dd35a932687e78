"""Neural-network modules (torch.nn's names) and their functional forms in ``nn.functional``."""

from . import functional  # noqa: F401
