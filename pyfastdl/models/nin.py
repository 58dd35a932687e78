"""Network in Network: M. Lin, Q. Chen and S. Yan, "Network in network", ICLR 2014 (arXiv:1312.4400).

An mlpconv block is a spatial convolution followed by two 1x1 convolutions (a small multilayer
perceptron slid over the image), each with a ReLU. The CIFAR-10 network (section 4.2, and the
authors' released Caffe model for the widths and kernel sizes) stacks three blocks:

    block1  conv 5x5 192, 1x1 160, 1x1 96; max pool 3x3/2; dropout 0.5     32x32 -> 16x16
    block2  conv 5x5 192, 1x1 192, 1x1 192; max pool 3x3/2; dropout 0.5    16x16 -> 8x8
    block3  conv 3x3 192, 1x1 192, 1x1 10                                 8x8
    global average pooling over the 10 maps -> 10 class scores (no fully connected layer)

966,986 parameters with 10 classes (``NIN()``, ``width=1``).

Departures from the paper:
  * ``width`` scales every hidden width (not the last 1x1 layer, which has one map per class);
    the CPU default recipe uses ``width=0.25`` (48-40-24 / 48-48-48 / 48-48-classes; 63,920
    parameters with batch norm and 6 classes) on 24x24 synthetic shapes with dropout 0.2 between blocks (0.5, the
    paper's, slows the narrow network's training down); ``--width-mult 1 --dropout 0.5 --norm none
    --dataset cifar10`` is the paper's network and data.
  * ``batch_norm=True`` (the CPU default recipe's choice, off in the model by default) adds batch
    normalisation after every convolution (Ioffe & Szegedy 2015, a year after NIN), which makes the
    network train in a few epochs with AdamW instead of the paper's long SGD schedule.
  * Pooling is 3x3 stride-2 max pooling in ceil mode (Caffe's rounding) after blocks 1 and 2; the
    released Caffe model uses average pooling after block 2, the paper's text says max pooling.
  * The last 1x1 convolution's outputs go to global average pooling without a ReLU (the Caffe
    model applies one), so class scores can be negative.
  * Initialisation is He (Kaiming) normal for the convolutions instead of the released model's
    Gaussian with standard deviation 0.05; training uses AdamW with a one-cycle schedule and weight
    decay 5e-4 instead of SGD with manual learning-rate steps.
"""

from __future__ import annotations

import argparse

from .. import nn
from ..train.options import add_option
from ..train.recipe import register_recipe
from .image_classification import ImageClassificationRecipe

__all__ = ["MlpConv", "NIN", "NINRecipe"]

#: (kernel size of the spatial convolution, widths of its three layers) of the paper's CIFAR-10 blocks
PAPER_BLOCKS = ((5, (192, 160, 96)), (5, (192, 192, 192)), (3, (192, 192, None)))


class MlpConv(nn.Sequential):
    """An mlpconv block: ``kernel_size`` convolution (same padding) to ``widths[0]`` maps, then 1x1
    convolutions to ``widths[1]`` and ``widths[2]``, each followed by (batch norm and) ReLU except
    the last when ``last_relu`` is False. (N, in_channels, H, W) -> (N, widths[2], H, W)."""

    def __init__(self, in_channels: int, widths, kernel_size: int, batch_norm: bool = False,
                 last_relu: bool = True):
        layers, c = [], in_channels
        for i, (w, k) in enumerate(zip(widths, (kernel_size, 1, 1))):
            layers.append(nn.Conv2d(c, w, k, padding=k // 2, bias=not batch_norm))
            last = i == len(widths) - 1
            if batch_norm and (not last or last_relu):
                layers.append(nn.BatchNorm2d(w))
            if not last or last_relu:
                layers.append(nn.ReLU())
            c = w
        super().__init__(*layers)


class NIN(nn.Module):
    """Network in Network for (N, in_channels, H, W) images -> (N, num_classes) class scores; any
    H, W (the paper: 32x32). ``width`` scales the hidden widths; ``dropout`` is the probability
    between blocks (the paper: 0.5)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, dropout: float = 0.5,
                 batch_norm: bool = False):
        super().__init__()
        if width <= 0:
            raise ValueError(f"NIN: width must be positive, got {width}")
        blocks, c = [], in_channels
        for i, (k, widths) in enumerate(PAPER_BLOCKS):
            widths = [num_classes if w is None else max(1, round(w * width)) for w in widths]
            last = i == len(PAPER_BLOCKS) - 1
            blocks.append(MlpConv(c, widths, k, batch_norm, last_relu=not last))
            if not last:
                blocks.append(nn.MaxPool2d(3, stride=2, ceil_mode=True))
                blocks.append(nn.Dropout(dropout))
            c = widths[-1]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.pool(self.features(x))
        return x.reshape(x.shape[0], -1)


class NINRecipe(ImageClassificationRecipe):
    """NIN on synthetic shapes (default: width 0.25, batch norm, 24x24) or CIFAR-10."""

    name = "nin"
    description = "Network in Network (Lin et al. 2014) on synthetic shapes or CIFAR-10"
    default_size = 24
    default_train_size = 8000

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        add_option(parser, "width_mult", 0.25, "multiplier of every hidden width (1: the paper's 192-160-96 network)")
        add_option(parser, "norm", "batch", "batch: batch norm after each convolution; none: as the paper",
                   choices=("none", "batch"))
        add_option(parser, "dropout", 0.2, "dropout between blocks (the paper: 0.5)")

    def default_hparams(self, args: argparse.Namespace) -> dict:
        common = dict(optimizer="adamw", weight_decay=5e-4, momentum=0.9, schedule="onecycle", threads=1)
        if args.dataset == "shapes":
            return dict(common, epochs=3, batch_size=64, lr=4e-3)
        return dict(common, epochs=40, batch_size=128, lr=2e-3)

    def build_model(self, args: argparse.Namespace) -> NIN:
        return NIN(self.num_classes(args), width=args.width_mult, dropout=args.dropout,
                   batch_norm=args.norm == "batch")


register_recipe(NINRecipe())
