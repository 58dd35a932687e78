"""The model zoo: one file per model family; importing it registers each model's training recipe."""

from .lenet import LeNet5  # noqa: F401  (registers the "lenet" recipe)
