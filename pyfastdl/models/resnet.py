"""ResNet: K. He, X. Zhang, S. Ren and J. Sun, "Deep residual learning for image recognition",
CVPR 2016 (arXiv:1512.03385).

Two families, both built from the paper's two residual blocks:

* :class:`BasicBlock` -- two 3x3 convolutions (Fig. 2 left), used by resnet18/34 and the CIFAR nets;
* :class:`Bottleneck` -- 1x1 reduce, 3x3, 1x1 expand by 4 (Fig. 5 right), used by resnet50/101/152.

ImageNet nets (Table 1): a 7x7/2 convolution stem with 3x3/2 max pooling, four stages of 64, 128,
256, 512 base channels (stride 2 at the start of stages 2-4), global average pooling and a 1000-way
fully connected layer. On 224x224 inputs: resnet18 11,689,512 parameters, resnet34 21,797,672,
resnet50 25,557,032, resnet101 44,549,160, resnet152 60,192,808 -- the same as torchvision's, and the
parameter and buffer names are torchvision's too (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``fc``; BatchNorm ``running_mean``/``running_var``/
``num_batches_tracked``), so a torchvision state dict converted to numpy loads with
``load_state_dict``.

CIFAR nets (section 4.2): a 3x3 convolution with 16 channels, three stages of n BasicBlocks with
16, 32, 64 channels on 32x32, 16x16, 8x8 maps, global average pooling and a 10-way layer: 6n + 2
weighted layers -- resnet20/32/44/56/110 for n = 3/5/7/9/18 (0.27M/0.46M/0.66M/0.85M/1.7M
parameters). The shortcut that changes shape is the paper's option A by default
(``shortcut="A"``: stride-2 subsampling and zero-padded extra channels, no parameters, as the
paper's CIFAR experiments); ``shortcut="B"`` uses a 1x1 projection with batch norm instead.

Departures from the paper:
  * Bottleneck puts the stride on the 3x3 convolution rather than the first 1x1 (the "ResNet v1.5"
    of torchvision and most later work; the parameter count is unchanged, accuracy slightly higher).
  * The ImageNet nets use projection shortcuts (option B) only where the shape changes, as the paper's
    Table 1 nets; ``zero_init_residual=True`` (off by default) starts each block's last batch norm
    at zero (Goyal et al. 2017), not in the paper.
  * Initialisation: He (Kaiming) normal for convolutions as in the paper, fan-out mode as
    torchvision; the final linear layer keeps pyfastdl's default.
  * Training recipe (``pyfastdl train resnet20`` etc.) on the CPU default data -- 6-class synthetic
    shapes at 20x20 rather than CIFAR-10 at 32x32 -- uses AdamW with a one-cycle schedule, not the
    paper's SGD with step decay (``--dataset cifar10 --optimizer sgd`` gives the paper's setting of
    data and optimizer: 32x32, flips and 4-pixel-padded crops).
"""

from __future__ import annotations

import argparse

from .. import nn
from ..nn import functional as F
from ..train.recipe import register_recipe
from .image_classification import ImageClassificationRecipe

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "CifarResNet", "PadShortcut", "resnet18", "resnet34",
           "resnet50", "resnet101", "resnet152", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
           "ResNetRecipe"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (batch norm follows)."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution with no bias (batch norm follows)."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); (N, inplanes, H, W) -> (N, planes, H/s, W/s)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 (planes) -> 3x3 (planes, stride) -> 1x1 (4 planes), each with batch norm, plus the shortcut;
    (N, inplanes, H, W) -> (N, 4 planes, H/s, W/s)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class PadShortcut(nn.Module):
    """The paper's option A shortcut: subsample by ``stride`` and append zero channels,
    (N, C, H, W) -> (N, C + extra, ceil(H/stride), ceil(W/stride)); no parameters."""

    def __init__(self, extra_channels: int, stride: int):
        super().__init__()
        self.extra_channels = extra_channels
        self.stride = stride

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"extra_channels={self.extra_channels}, stride={self.stride}"


def _init_weights(model: nn.Module, zero_init_residual: bool) -> None:
    """He normal (fan-out) convolutions, batch norm at weight 1 / bias 0, optionally the last batch
    norm of every residual branch at 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)


class ResNet(nn.Module):
    """The ImageNet ResNet (Table 1): (N, in_channels, H, W) -> (N, num_classes) logits.
    ``layers`` is the number of blocks per stage, e.g. [3, 4, 6, 3] for resnet50.
    :meth:`features` returns the four stages' outputs (strides 4, 8, 16, 32), for dense heads like FCN."""

    def __init__(self, block: type, layers: list[int], num_classes: int = 1000, in_channels: int = 3,
                 zero_init_residual: bool = False):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        _init_weights(self, zero_init_residual)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x) -> list:
        """The outputs of layer1..layer4 (strides 4, 8, 16, 32 with respect to the input)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outputs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outputs.append(x)
        return outputs

    def forward(self, x):
        x = self.avgpool(self.features(x)[-1])
        return self.fc(x.reshape(x.shape[0], -1))


def resnet18(**kwargs) -> ResNet:
    """ResNet-18: BasicBlock, [2, 2, 2, 2]; 11,689,512 parameters with 1000 classes."""
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


def resnet34(**kwargs) -> ResNet:
    """ResNet-34: BasicBlock, [3, 4, 6, 3]; 21,797,672 parameters with 1000 classes."""
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


def resnet50(**kwargs) -> ResNet:
    """ResNet-50: Bottleneck, [3, 4, 6, 3]; 25,557,032 parameters with 1000 classes."""
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


def resnet101(**kwargs) -> ResNet:
    """ResNet-101: Bottleneck, [3, 4, 23, 3]; 44,549,160 parameters with 1000 classes."""
    return ResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


def resnet152(**kwargs) -> ResNet:
    """ResNet-152: Bottleneck, [3, 8, 36, 3]; 60,192,808 parameters with 1000 classes."""
    return ResNet(Bottleneck, [3, 8, 36, 3], **kwargs)


SHORTCUTS = ("A", "B")


class CifarResNet(nn.Module):
    """The CIFAR ResNet (section 4.2) with ``depth`` = 6n + 2: (N, in_channels, H, W) -> (N, num_classes).
    ``shortcut``: "A" (zero-padding identity, the paper's CIFAR choice) or "B" (1x1 projection + BN)
    where a stage changes the shape."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A",
                 zero_init_residual: bool = False):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"CifarResNet: depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), got {depth}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"CifarResNet: shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        n = (depth - 2) // 6
        self.shortcut = shortcut
        self.inplanes = 16
        self.conv1 = conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = self._make_layer(16, n, 1)
        self.layer2 = self._make_layer(32, n, 2)
        self.layer3 = self._make_layer(64, n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        _init_weights(self, zero_init_residual)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            if self.shortcut == "A":
                downsample = PadShortcut(planes - self.inplanes, stride)
            else:
                downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x)
        return self.fc(x.reshape(x.shape[0], -1))


def resnet20(**kwargs) -> CifarResNet:
    """CIFAR ResNet-20 (n = 3): 269,722 parameters with shortcut A and 10 classes."""
    return CifarResNet(20, **kwargs)


def resnet32(**kwargs) -> CifarResNet:
    """CIFAR ResNet-32 (n = 5)."""
    return CifarResNet(32, **kwargs)


def resnet44(**kwargs) -> CifarResNet:
    """CIFAR ResNet-44 (n = 7)."""
    return CifarResNet(44, **kwargs)


def resnet56(**kwargs) -> CifarResNet:
    """CIFAR ResNet-56 (n = 9)."""
    return CifarResNet(56, **kwargs)


def resnet110(**kwargs) -> CifarResNet:
    """CIFAR ResNet-110 (n = 18)."""
    return CifarResNet(110, **kwargs)


IMAGENET_MODELS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101,
                   "resnet152": resnet152}
CIFAR_MODELS = {"resnet20": resnet20, "resnet32": resnet32, "resnet44": resnet44, "resnet56": resnet56,
                "resnet110": resnet110}


# ---- the training recipes: one per depth, on synthetic shapes (default) or CIFAR-10 ----


class ResNetRecipe(ImageClassificationRecipe):
    """A ResNet on the synthetic shapes (default) or CIFAR-10. The CIFAR nets take the images as they
    are; the ImageNet nets too (their stem reduces a 20x20 or 32x32 image to 5x5 or 8x8 at layer1 --
    fine for a smoke run, use the CIFAR nets for accuracy on small images)."""

    default_size = 20
    default_train_size = 6000

    def __init__(self, name: str):
        self.name = name
        kind = "CIFAR" if name in CIFAR_MODELS else "ImageNet"
        self.description = f"{name} ({kind} ResNet, He et al. 2016) on synthetic shapes or CIFAR-10"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        if self.name in CIFAR_MODELS:
            parser.add_argument("--shortcut", choices=SHORTCUTS, default="A",
                                help="A: zero-padding identity (default, the paper's CIFAR nets); B: 1x1 projection")

    def default_hparams(self, args: argparse.Namespace) -> dict:
        common = dict(optimizer="adamw", weight_decay=5e-4, momentum=0.9, schedule="onecycle", threads=1)
        if args.dataset == "shapes":
            return dict(common, epochs=2, batch_size=32, lr=4e-3)
        return dict(common, epochs=30, batch_size=128, lr=2e-3)

    def build_model(self, args: argparse.Namespace):
        if self.name in CIFAR_MODELS:
            return CIFAR_MODELS[self.name](num_classes=self.num_classes(args), shortcut=args.shortcut)
        return IMAGENET_MODELS[self.name](num_classes=self.num_classes(args))


for _name in (*CIFAR_MODELS, *IMAGENET_MODELS):
    register_recipe(ResNetRecipe(_name))
