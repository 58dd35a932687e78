"""The model zoo: one file per model family; importing it registers each model's training recipe."""

from .fcn import FCN  # noqa: F401  (registers fcn32s, fcn16s, fcn8s)
from .lenet import LeNet5  # noqa: F401  (registers the "lenet" recipe)
from .nin import NIN  # noqa: F401  (registers "nin")
from .resnet import CifarResNet, ResNet  # noqa: F401  (registers resnet18..152 and resnet20..110)
