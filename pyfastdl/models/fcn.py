"""Fully convolutional networks: J. Long, E. Shelhamer and T. Darrell, "Fully convolutional networks
for semantic segmentation", CVPR 2015 (arXiv:1411.4038).

A classification net becomes a dense predictor: its fully connected layers become convolutions
(VGG-16's fc6 a 7x7 convolution, fc7 a 1x1), a 1x1 "score" convolution gives per-class scores at
stride 32, and a ConvTranspose2d initialised to bilinear interpolation upsamples them back to the
input (section 3.3). The skip architectures (section 4.2, Fig. 3) fuse finer layers:

    FCN-32s  score_fr --x32--> output
    FCN-16s  upscore2(score_fr) + score_pool4(pool4)                      --x16--> output
    FCN-8s   upscore_pool4(upscore2(score_fr) + score_pool4(pool4)) + score_pool3(pool3) --x8--> output

Each upsampled map is cropped to align with the map it is added to and the output is cropped to
the input's height and width, so any input size gives a same-sized score map (N, classes, H, W)
(inputs under 32 pixels on a side are zero-padded at the bottom and right first).
Training minimises per-pixel cross entropy with VOC's ignore label (255) left out.

Backbones: ``"vgg16"`` (the paper's; pools 3 and 4 feed the skips) or a ResNet from
:mod:`pyfastdl.models.resnet` (``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ...; layer2, layer3
and layer4 play pool3, pool4 and fc7, as in later FCN-ResNet work, not in the paper).

Departures from the paper:
  * Alignment without the 100-pixel input padding: the paper pads conv1_1 by 100 and crops by offsets
    that follow from it. Here fc6 is a 7x7 convolution with padding 3 and pooling uses ceil mode
    (Caffe's rounding), so a stride-s map has ceil(H/s) rows; an upsampling by f (kernel 2f, stride f)
    is then cropped from offset f/2 for VGG-16, whose stride-s features are centred at s*i + (s-1)/2,
    and f-1 for ResNet, whose features are centred at s*i (exact up to half a pixel of the finer map).
  * Width options: ``width`` scales VGG-16's convolution widths (64-128-256-512-512) and ``fc_width``
    sets fc6/fc7 (4096); ``batch_norm=True`` adds batch normalisation after each VGG convolution
    (VGG-16-BN); ``dropout`` after fc6 and fc7 is 0.5 as in VGG-16 and the paper. The CPU default
    recipe uses ``width=0.125``, ``fc_width=128``, batch norm and dropout 0.1 (half of 128 channels
    dropped starves the score layer), on
    48x48 synthetic shape scenes, trained from scratch; the paper fine-tunes ImageNet-trained VGG-16
    (``--width-mult 1 --hidden 4096 --norm none``) with SGD, momentum 0.99 and batch 1/20.
  * All score layers start at zero (as the paper's reference code); the final upsampling is fixed
    to bilinear interpolation and the 2x ones learned (section 4.2), no extra scaling of the pool3 and
    pool4 skips (the "at-once" variant's 1e-4 and 1e-2 factors are not used).
  * The recipe trains FCN-8s (and 16s, 32s) directly, not in the paper's stages (32s, then 16s
    initialised from 32s, then 8s).
"""

from __future__ import annotations

import argparse

import numpy as np

from .. import nn
from ..nn import functional as F
from ..train.options import add_alias, add_option
from ..train.recipe import Recipe, register_recipe
from ..vision.segmentation import init_bilinear_
from .resnet import IMAGENET_MODELS

__all__ = ["VGG16Backbone", "ResNetBackbone", "FCN", "fcn32s", "fcn16s", "fcn8s", "FCNRecipe"]

VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
BACKBONES = ("vgg16", *IMAGENET_MODELS)
VARIANTS = ("32s", "16s", "8s")
#: inputs smaller than this (in height or width) are zero-padded at the bottom/right and the output
#: cropped back: the stride-32 map then has at least one row and column
MIN_SIZE = 32


class VGG16Backbone(nn.Module):
    """VGG-16's thirteen 3x3 convolutions in five stages (each ending in 2x2 max pooling, ceil mode),
    then fc6 (7x7 convolution, padding 3) and fc7 (1x1), each with ReLU and dropout.
    ``forward`` returns [pool3 (stride 8), pool4 (stride 16), fc7 (stride 32)]."""

    def __init__(self, in_channels: int = 3, width: float = 1.0, fc_width: int = 4096, batch_norm: bool = False,
                 dropout: float = 0.5):
        super().__init__()
        stages, c = [], in_channels
        for planes, n in VGG16_STAGES:
            planes = max(1, round(planes * width))
            layers = []
            for _ in range(n):
                layers.append(nn.Conv2d(c, planes, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(planes))
                layers.append(nn.ReLU())
                c = planes
            layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
        self.stage1, self.stage2, self.stage3, self.stage4, self.stage5 = stages
        self.fc6 = nn.Sequential(nn.Conv2d(c, fc_width, 7, padding=3), nn.ReLU(), nn.Dropout(dropout))
        self.fc7 = nn.Sequential(nn.Conv2d(fc_width, fc_width, 1), nn.ReLU(), nn.Dropout(dropout))
        self.channels = (round(256 * width) or 1, round(512 * width) or 1, fc_width)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @staticmethod
    def crop_offset(factor: int) -> int:
        """Where an upsampling by ``factor`` lines up with the finer map (see the module docstring)."""
        return factor // 2

    def forward(self, x) -> list:
        pool3 = self.stage3(self.stage2(self.stage1(x)))
        pool4 = self.stage4(pool3)
        return [pool3, pool4, self.fc7(self.fc6(self.stage5(pool4)))]


class ResNetBackbone(nn.Module):
    """An ImageNet ResNet (``name`` in resnet18..resnet152) without its pooling and classifier;
    ``forward`` returns [layer2 (stride 8), layer3 (stride 16), layer4 (stride 32)]."""

    def __init__(self, name: str = "resnet18", in_channels: int = 3):
        super().__init__()
        if name not in IMAGENET_MODELS:
            raise ValueError(f"ResNetBackbone: name must be one of {tuple(IMAGENET_MODELS)}, got {name!r}")
        self.body = IMAGENET_MODELS[name](in_channels=in_channels)
        del self.body.avgpool, self.body.fc
        expansion = self.body.layer4[0].expansion
        self.channels = (128 * expansion, 256 * expansion, 512 * expansion)

    @staticmethod
    def crop_offset(factor: int) -> int:
        """Where an upsampling by ``factor`` lines up with the finer map (see the module docstring)."""
        return factor - 1

    def forward(self, x) -> list:
        return self.body.features(x)[1:]


def _upsample(num_classes: int, factor: int, learnable: bool = True) -> nn.ConvTranspose2d:
    """ConvTranspose2d with kernel 2 factor, stride factor, no bias, initialised to bilinear upsampling."""
    up = nn.ConvTranspose2d(num_classes, num_classes, 2 * factor, stride=factor, bias=False)
    init_bilinear_(up.weight)
    up.weight.requires_grad_(learnable)
    return up


def _score(in_channels: int, num_classes: int) -> nn.Conv2d:
    """1x1 class-score convolution, zero-initialised."""
    score = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.zeros_(score.weight)
    nn.init.zeros_(score.bias)
    return score


def _crop(x, offset: int, like_hw: tuple):
    """x[:, :, offset:offset + H, offset:offset + W] for (H, W) = like_hw."""
    h, w = like_hw
    return x[:, :, offset:offset + h, offset:offset + w]


class FCN(nn.Module):
    """FCN-32s/16s/8s: (N, in_channels, H, W) -> (N, num_classes, H, W) class scores for any H, W.

    ``variant``: "32s", "16s" or "8s". ``backbone``: "vgg16" (the paper's) or an ImageNet ResNet
    name; ``width``, ``fc_width``, ``batch_norm``, ``dropout`` configure the VGG-16 backbone."""

    def __init__(self, num_classes: int = 21, variant: str = "8s", backbone: str = "vgg16", in_channels: int = 3,
                 width: float = 1.0, fc_width: int = 4096, batch_norm: bool = False, dropout: float = 0.5):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"FCN: variant must be one of {VARIANTS}, got {variant!r}")
        if backbone not in BACKBONES:
            raise ValueError(f"FCN: backbone must be one of {BACKBONES}, got {backbone!r}")
        self.variant = variant
        if backbone == "vgg16":
            self.backbone = VGG16Backbone(in_channels, width, fc_width, batch_norm, dropout)
        else:
            self.backbone = ResNetBackbone(backbone, in_channels)
        c8, c16, c32 = self.backbone.channels
        self.score_fr = _score(c32, num_classes)
        if variant == "32s":
            self.upscore = _upsample(num_classes, 32, learnable=False)
            return
        self.upscore2 = _upsample(num_classes, 2)
        self.score_pool4 = _score(c16, num_classes)
        if variant == "16s":
            self.upscore16 = _upsample(num_classes, 16, learnable=False)
            return
        self.upscore_pool4 = _upsample(num_classes, 2)
        self.score_pool3 = _score(c8, num_classes)
        self.upscore8 = _upsample(num_classes, 8, learnable=False)

    def forward(self, x):
        size = x.shape[2:]
        if min(size) < MIN_SIZE:  # too small for five 2x2 poolings: zero-pad bottom/right, crop below
            x = F.pad(x, (0, max(MIN_SIZE - size[1], 0), 0, max(MIN_SIZE - size[0], 0)))
        pool3, pool4, top = self.backbone(x)
        offset = self.backbone.crop_offset
        score = self.score_fr(top)
        if self.variant == "32s":
            return _crop(self.upscore(score), offset(32), size)
        score = _crop(self.upscore2(score), offset(2), pool4.shape[2:]) + self.score_pool4(pool4)
        if self.variant == "16s":
            return _crop(self.upscore16(score), offset(16), size)
        score = _crop(self.upscore_pool4(score), offset(2), pool3.shape[2:]) + self.score_pool3(pool3)
        return _crop(self.upscore8(score), offset(8), size)


def fcn32s(num_classes: int = 21, **kwargs) -> FCN:
    """FCN-32s (single stream, x32 upsampling)."""
    return FCN(num_classes, "32s", **kwargs)


def fcn16s(num_classes: int = 21, **kwargs) -> FCN:
    """FCN-16s (fuses pool4)."""
    return FCN(num_classes, "16s", **kwargs)


def fcn8s(num_classes: int = 21, **kwargs) -> FCN:
    """FCN-8s (fuses pool4 and pool3)."""
    return FCN(num_classes, "8s", **kwargs)


# ---- the training recipe: synthetic shapes (default) or PASCAL VOC segmentation ----

IGNORE_INDEX = 255
OVERLAY_NAME = "predictions.png"
#: VOC images (at most 500x500) are padded to this size with the ignore label for evaluation
VOC_EVAL_SIZE = 512


class FCNRecipe(Recipe):
    """FCN-32s/16s/8s on synthetic shape scenes (default, 48x48, 7 classes incl. background) or
    PASCAL VOC 2012 segmentation (``--dataset voc --data-dir ...``: random ``--image-size`` crops for
    training, padded with the ignore label; the val split, each image padded to 512x512 with the
    ignore label, as the test set).
    After training, ``predictions.png`` in the run directory shows test images with their predicted
    and true masks; ``pyfastdl predict`` writes the same picture for the images it is given."""

    main_metric = "mean_iou"

    def __init__(self, variant: str):
        self.variant = variant
        self.name = f"fcn{variant}"
        self.description = f"FCN-{variant} (Long et al. 2015) on synthetic shape scenes or PASCAL VOC"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dataset", choices=["shapes", "voc"], default="shapes",
                            help="shapes: generated scenes (default); voc: VOC2012 segmentation in --data-dir")
        parser.add_argument("--data-dir", help="VOC: the folder holding VOCdevkit/VOC2012")
        add_option(parser, "image_size", 48, "shapes: scene side; voc: training crop side (voc: try 320)")
        add_option(parser, "train_size", 6000, "shapes: training scenes")
        add_option(parser, "val_size", 500, "shapes: validation scenes")
        add_option(parser, "test_size", 500, "shapes: test scenes")
        parser.add_argument("--backbone", choices=BACKBONES, default="vgg16", help="vgg16 (default) or a ResNet")
        add_option(parser, "width_mult", 0.125, "VGG-16 width multiplier (1: the paper's)")
        add_option(parser, "hidden", 128, "fc6/fc7 channels (the paper: 4096)")
        add_alias(parser, "--fc-width", "hidden")
        add_option(parser, "norm", "batch", "batch: batch norm after the VGG convolutions; none: as the paper",
                   choices=("none", "batch"))
        add_option(parser, "dropout", 0.1, "dropout after fc6 and fc7 (the paper: 0.5)")

    def default_hparams(self, args: argparse.Namespace) -> dict:
        common = dict(optimizer="adamw", weight_decay=1e-4, momentum=0.9, schedule="onecycle", threads=1)
        if args.dataset == "shapes":
            return dict(common, epochs=8, batch_size=16, lr=6e-3)
        return dict(common, epochs=50, batch_size=8, lr=1e-3)

    def num_classes(self, args: argparse.Namespace) -> int:
        return len(self.class_names(args))

    def class_names(self, args: argparse.Namespace) -> tuple:
        from ..data import shapes, voc

        return ("background",) + (voc.CLASSES if args.dataset == "voc" else shapes.SHAPES)

    def build_model(self, args: argparse.Namespace) -> FCN:
        return FCN(self.num_classes(args), self.variant, args.backbone, width=args.width_mult, fc_width=args.hidden,
                   batch_norm=args.norm == "batch", dropout=args.dropout)

    def datasets(self, args: argparse.Namespace) -> dict:
        from ..data import ArrayDataset
        from .image_classification import normalize

        if args.dataset == "voc":
            from ..data.voc import VOCSegmentation
            from ..vision.segmentation import RandomCrop, SegmentationDataset

            # VOC2012 has no public test masks: its val split is the test set (as in the paper).
            return {
                "train": SegmentationDataset(VOCSegmentation(args.data_dir, "2012", "train"),
                                             RandomCrop(args.image_size, IGNORE_INDEX, seed=args.seed), normalize),
                "test": SegmentationDataset(VOCSegmentation(args.data_dir, "2012", "val"),
                                            RandomCrop(VOC_EVAL_SIZE, IGNORE_INDEX, random=False), normalize),
            }
        from ..data.shapes import make_segmentation

        splits = {}
        for split, n in (("train", args.train_size), ("val", args.val_size), ("test", args.test_size)):
            n = min(n, args.limit) if args.limit else n
            x, y = make_segmentation(n, args.image_size, split) if n else (None, None)
            splits[split] = ArrayDataset(normalize(x), y) if n else None
        return splits

    def loss_fn(self, output, target):
        from ..nn import functional as F

        return F.cross_entropy(output, target, ignore_index=IGNORE_INDEX)

    def metrics(self) -> dict:
        from ..vision.segmentation import MeanIoU, PixelAccuracy

        return {"mean_iou": MeanIoU(IGNORE_INDEX), "pixel_accuracy": PixelAccuracy(IGNORE_INDEX)}

    def predict(self, output: np.ndarray) -> np.ndarray:
        return output.argmax(axis=1)

    def prediction_rows(self, inputs, output, names, targets, args, out_dir) -> list[dict]:
        """Writes ``predictions.png`` (predicted masks over the inputs, and the true masks where known)
        into ``out_dir``; each row gives the picture and the share of the image of each class found (and
        in the true mask, where known)."""
        import os

        from ..vision.segmentation import save_overlay_grid
        from .image_classification import denormalize

        masks = self.predict(output)
        labels = self.class_names(args)
        known = all(t is not None for t in targets)
        os.makedirs(out_dir, exist_ok=True)
        picture = os.path.join(out_dir, OVERLAY_NAME)
        save_overlay_grid(picture, denormalize(inputs), masks, np.stack(targets) if known else None,
                          class_names=labels, ignore_index=IGNORE_INDEX, titles=names)
        def found(mask):  # the share of the image of each class present, largest first
            mask = mask[mask != IGNORE_INDEX]
            shares = np.bincount(mask.ravel(), minlength=len(labels)) / max(mask.size, 1)
            return ", ".join(f"{labels[c]} {shares[c]:.0%}" for c in np.argsort(-shares)
                             if c > 0 and shares[c] > 0) or "background only"

        return [{"input": name, "prediction": found(mask), "picture": picture}
                | ({} if target is None else {"target": found(np.asarray(target))})
                for name, mask, target in zip(names, masks, targets)]

    def after_fit(self, model, datasets, args, device) -> None:
        """``predictions.png`` in the run directory: the first 8 test images, predicted and true masks."""
        from ..data import DataLoader
        from ..train.loop import predict_batch

        loader = DataLoader(datasets["test"], batch_size=min(8, len(datasets["test"])))
        x, target = next(iter(loader))
        output = predict_batch(model, x, device)
        self.prediction_rows(x, output, [f"test[{i}]" for i in range(len(x))], list(target), args, args.out)

    def load_inputs(self, paths: list[str], args: argparse.Namespace) -> np.ndarray:
        """Colour images (PNG/JPEG or .npy), resized to the training --image-size for shapes, as they are for
        VOC (then all of one size) -> (N, 3, H, W) inputs scaled like the training data."""
        from ..vision.segmentation import read_image
        from .image_classification import normalize

        size = (args.image_size, args.image_size) if args.dataset == "shapes" else None
        return np.stack([normalize(read_image(p, size)) for p in paths])


for _variant in VARIANTS:
    register_recipe(FCNRecipe(_variant))
