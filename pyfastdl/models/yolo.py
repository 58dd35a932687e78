"""YOLOv1: J. Redmon, S. Divvala, R. Girshick and A. Farhadi, "You Only Look Once: Unified,
Real-Time Object Detection", CVPR 2016.

The image is divided into an S x S grid; for each cell the network predicts B boxes (x, y, w, h,
confidence) and C class probabilities, one (N, S, S, B*5 + C) tensor for the whole image in one
pass. Targets, the loss (eq. 3) and decoding to boxes live in :mod:`pyfastdl.vision.yolo`.

Three layouts, all built by :class:`YOLOv1` from a list of layers:

* :func:`yolo_v1` -- the paper's network (its Figure 3): 24 convolutions with leaky ReLU 0.1
  (7x7/2 64; 3x3 192; 1x1 128, 3x3 256, 1x1 256, 3x3 512; four times 1x1 256 + 3x3 512, then
  1x1 512, 3x3 1024; twice 1x1 512 + 3x3 1024, 3x3 1024, 3x3/2 1024; 3x3 1024, 3x3 1024), 2x2
  max-pools after the first, second, sixth and sixteenth, then fully connected 4096 (leaky ReLU,
  dropout 0.5) and fully connected S*S*(B*5 + C), linear. On 448x448 with S=7, B=2, C=20:
  271,703,550 parameters (the final 1024 x 7 x 7 -> 4096 layer alone has 205.5M).
* :func:`fast_yolo` -- Fast YOLO: "9 convolutional layers instead of 24 and fewer filters"
  (section 4). The paper gives no table; we follow Darknet's tiny YOLOv1 layout: 3x3
  convolutions of 16, 32, 64, 128, 256, 512 filters each followed by a 2x2 max-pool, then 3x3
  1024, 1024 and 256, and one fully connected layer to the output. On 448x448 with S=7, B=2,
  C=20: 36,531,294 parameters.
* :func:`yolo_v1_small` -- the CPU default of ``pyfastdl train yolov1``: a network of the same
  kind scaled down for 56x56 inputs (5x5/2 16; 3x3 32; pool; 3x3 64; pool; 1x1 64, 3x3 128,
  3x3 128: a 7x7 trunk output, leaky ReLU 0.1 throughout), then the paper's head: fully connected
  1024 (leaky ReLU) and fully connected S*S*(B*5 + C), linear. With S=7, B=2, C=6 (the synthetic
  shapes): 7,477,536 parameters. ``head="conv"`` swaps the two fully connected layers for a
  convolutional head as YOLOv2 did (3x3 128, then 1x1 to B*5 + C per cell; 400,032 parameters).

Departures from the paper:
  * Padding is "same" (k // 2), as in Darknet; the paper does not say.
  * ``batch_norm=True`` puts batch normalisation after each convolution (YOLOv2's change; the
    convolutions then have no bias). Off for the paper's layouts, on for the small CPU one, where
    it makes training from scratch in a few minutes possible.
  * No ImageNet pre-training of the first 20 layers: the recipes train from scratch.
  * Training (``yolov1-paper``, ``fast-yolo``): the paper's 135 epochs, batch 64, momentum 0.9,
    weight decay 5e-4 and peak learning rate 1e-2 with a warm-up, but its step schedule (1e-2 for
    75 epochs, 1e-3 for 30, 1e-4 for 30) is replaced by the one-cycle schedule, and its
    augmentation (random scaling and translation up to 20%, exposure and saturation up to 1.5x)
    by random left-right flips.
  * The input size is a parameter (448 in the paper); the fully connected head adapts to the
    trunk's output size, so any S works with any input size.
  * The last fully connected layer starts at zero (weights and bias), in every layout: the
    output is zero at first and the trunk receives no gradient through a random head. From
    scratch on 8,000 scenes, 500 steps reached a validation mAP of 0.15 this way against 0.07 with
    the default initialisation (uniform +-1/sqrt(fan_in)).
  * The CPU default (``yolov1``): 56x56 inputs, far fewer filters, a hidden layer of 1024
    instead of 4096 (still wider than the 784 outputs; 128 was far too slow to learn), no
    dropout (0.5 cut the mAP after two epochs from 0.28 to 0.17; ``--dropout 0.5`` restores it),
    AdamW at 5e-4 (2e-3 made the large fully connected layers unstable), and 16,000 training
    scenes seen 3 times (with 4,000 scenes the fully connected layers memorised them: training
    loss fell, test mAP stayed near zero). Every cell's output has its own weights, so the head
    learns each cell's position from the objects that fall in that cell alone; it needs more
    data than a convolutional head, which shares what it learns across cells. Measured: test
    mAP@0.5 0.733 in 375 s on one thread (load 1-2.7 from other work on the 2-core CPU).
"""

from __future__ import annotations

import argparse

import numpy as np

from .. import nn
from ..train.detection import DetectionRecipe
from ..train.options import add_option
from ..train.recipe import register_recipe
from ..vision import yolo as yolo_ops

__all__ = ["YOLOv1", "yolo_v1", "fast_yolo", "yolo_v1_small", "PAPER_LAYERS", "FAST_LAYERS", "SMALL_LAYERS",
           "YOLORecipe"]

# A layer list: (out_channels, kernel_size, stride) for a convolution (+ leaky ReLU), "M" for a 2x2 max-pool.
PAPER_LAYERS = (
    (64, 7, 2), "M",
    (192, 3, 1), "M",
    (128, 1, 1), (256, 3, 1), (256, 1, 1), (512, 3, 1), "M",
    *((256, 1, 1), (512, 3, 1)) * 4, (512, 1, 1), (1024, 3, 1), "M",
    *((512, 1, 1), (1024, 3, 1)) * 2, (1024, 3, 1), (1024, 3, 2),
    (1024, 3, 1), (1024, 3, 1),
)
FAST_LAYERS = (
    (16, 3, 1), "M", (32, 3, 1), "M", (64, 3, 1), "M", (128, 3, 1), "M", (256, 3, 1), "M", (512, 3, 1), "M",
    (1024, 3, 1), (1024, 3, 1), (256, 3, 1),
)
SMALL_LAYERS = (
    (16, 5, 2), (32, 3, 1), "M", (64, 3, 1), "M", (64, 1, 1), (128, 3, 1), (128, 3, 1),
)


class YOLOv1(nn.Module):
    """A YOLOv1-style detector: convolutional trunk from ``layers``, fully connected head.

    (N, in_channels, image_size, image_size) -> (N, S, S, B*5 + C): per cell, B boxes
    (x, y, w, h, confidence) then C class probabilities (linear outputs, as in the paper).

    Args:
        layers: the trunk, a sequence of (out_channels, kernel_size, stride) and "M" (2x2 max-pool).
        S, B, C: grid size, boxes per cell, classes.
        image_size: side of the square input.
        hidden: width of the hidden fully connected layer (``None``: trunk straight to the output),
            or of the convolutional head's 3x3 layer.
        dropout: dropout after the hidden layer (fully connected head).
        batch_norm: batch normalisation after each convolution (not in the paper).
        head: "fc" (the paper): flatten, fully connected ``hidden``, fully connected S*S*(B*5 + C);
            "conv" (YOLOv2's): 3x3 convolution of ``hidden`` filters, 1x1 convolution to B*5 + C
            per cell; needs the trunk to end at S x S.
    """

    def __init__(self, layers=PAPER_LAYERS, S: int = 7, B: int = 2, C: int = 20, image_size: int = 448,
                 in_channels: int = 3, hidden: int | None = 4096, dropout: float = 0.5, batch_norm: bool = False,
                 head: str = "fc"):
        super().__init__()
        self.S, self.B, self.C = S, B, C
        trunk, channels, size = [], in_channels, image_size
        for layer in layers:
            if layer == "M":
                trunk.append(nn.MaxPool2d(2))
                size //= 2
                continue
            out, k, stride = layer
            trunk.append(nn.Conv2d(channels, out, k, stride=stride, padding=k // 2, bias=not batch_norm))
            if batch_norm:
                trunk.append(nn.BatchNorm2d(out))
            trunk.append(nn.LeakyReLU(0.1))
            channels, size = out, (size + 2 * (k // 2) - k) // stride + 1
        if size < 1:
            raise ValueError(f"YOLOv1: image_size {image_size} is too small for the layers (down-sampling "
                             "leaves nothing)")
        self.features = nn.Sequential(*trunk)
        self.fully_connected = head == "fc"
        if head == "conv":
            if size != S:
                raise ValueError(f"YOLOv1: a convolutional head needs the trunk's output ({size}x{size} for "
                                 f"image_size {image_size}) to be the S x S grid, S={S}")
            self.head = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.LeakyReLU(0.1),
                                      nn.Conv2d(hidden, B * 5 + C, 1))
        elif head != "fc":
            raise ValueError(f"YOLOv1: head must be 'fc' or 'conv', got {head!r}")
        elif hidden:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, hidden), nn.LeakyReLU(0.1),
                                      nn.Dropout(dropout), nn.Linear(hidden, S * S * (B * 5 + C)))
        else:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, S * S * (B * 5 + C)))
        if self.fully_connected:  # the output layer starts at zero (see the module's notes)
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)

    def forward(self, x):
        y = self.head(self.features(x))
        if not self.fully_connected:  # (N, B*5 + C, S, S) -> (N, S, S, B*5 + C)
            return y.permute(0, 2, 3, 1)
        return y.reshape(x.shape[0], self.S, self.S, self.B * 5 + self.C)


def yolo_v1(S: int = 7, B: int = 2, C: int = 20, image_size: int = 448, **kwargs) -> YOLOv1:
    """The paper's 24-convolution + 2-fully-connected YOLOv1 (271,703,550 parameters at the defaults)."""
    return YOLOv1(PAPER_LAYERS, S, B, C, image_size, **kwargs)


def fast_yolo(S: int = 7, B: int = 2, C: int = 20, image_size: int = 448, **kwargs) -> YOLOv1:
    """Fast YOLO: 9 convolutions and one fully connected layer (36,531,294 parameters at the defaults)."""
    kwargs.setdefault("hidden", None)
    return YOLOv1(FAST_LAYERS, S, B, C, image_size, **kwargs)


def yolo_v1_small(S: int = 7, B: int = 2, C: int = 6, image_size: int = 56, head: str = "fc",
                  hidden: int | None = None, **kwargs) -> YOLOv1:
    """The CPU-sized YOLOv1 of ``pyfastdl train yolov1`` (7,477,536 parameters at the defaults; with
    ``head="conv"``, 400,032). ``hidden`` defaults to 1024 for the fully connected head (wider than the
    S*S*(B*5 + C) outputs, as the paper's 4096 is), 128 for the convolutional one."""
    kwargs.setdefault("batch_norm", True)
    hidden = hidden if hidden is not None else (1024 if head == "fc" else 128)
    return YOLOv1(SMALL_LAYERS, S, B, C, image_size, hidden=hidden, head=head, **kwargs)


# ---- the training recipes: yolov1 (CPU default), yolov1-paper, fast-yolo ----

class YOLORecipe(DetectionRecipe):
    """YOLOv1 through the shared detection recipe (:class:`pyfastdl.train.detection.DetectionRecipe`):
    targets encoded per cell, the paper's loss (lambda_coord 5, lambda_noobj 0.5, square roots of
    w and h, responsible predictor by IoU, IoU as the confidence target), decoding with
    class-specific confidence and per-class NMS, VOC mAP@0.5 on the decoded test predictions."""

    def __init__(self, name, description, build, image_size, hparams, batch_norm=False, head="fc",
                 dropout=0.5, train_size=4000):
        self.name, self.description = name, description
        self.build, self.default_image_size, self.hparams = build, image_size, hparams
        self.batch_norm, self.head, self.dropout, self.default_train_size = batch_norm, head, dropout, train_size

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--grid", type=int, default=7, help="S: the grid is S x S cells (default 7)")
        parser.add_argument("--boxes", type=int, default=2, help="B: boxes predicted per cell (default 2)")
        add_option(parser, "norm", "batch" if self.batch_norm else "none",
                   "batch: batch normalisation after each convolution; none: as the paper", choices=("none", "batch"))
        parser.add_argument("--head", choices=["fc", "conv"], default=self.head,
                            help=f"fc: the paper's two fully connected layers; conv: a convolutional head "
                                 f"(default {self.head})")
        add_option(parser, "hidden", None, "width of the hidden fully connected layer (or the convolutional "
                                           "head's 3x3 layer); none: the model's")
        add_option(parser, "dropout", self.dropout, "dropout after the hidden fully connected layer (the paper: 0.5)")

    def default_hparams(self, args: argparse.Namespace) -> dict:
        return dict(self.hparams)

    def build_model(self, args: argparse.Namespace) -> YOLOv1:
        kwargs = {} if args.hidden is None else {"hidden": args.hidden}
        return self.build(S=args.grid, B=args.boxes, C=self.num_classes(args), image_size=args.image_size,
                          batch_norm=args.norm == "batch", head=args.head, dropout=args.dropout, **kwargs)

    def encode(self, boxes: np.ndarray, classes: np.ndarray, image_size: int, args: argparse.Namespace):
        return yolo_ops.encode_targets([(boxes, classes)], image_size, S=args.grid, C=self.num_classes(args))[0]

    def loss_fn(self, output, target):
        S, C = target.encoded.shape[1], target.num_classes
        return yolo_ops.yolo_v1_loss(output, target.encoded, S=S, B=(output.shape[-1] - C) // 5, C=C)

    def decode(self, output: np.ndarray, num_classes: int, image_size: int, score_threshold: float) -> list:
        S, C = output.shape[1], num_classes
        B = (output.shape[-1] - C) // 5
        return [yolo_ops.decode(o, image_size, S=S, B=B, C=C, score_threshold=score_threshold) for o in output]


register_recipe(YOLORecipe(
    "yolov1", "YOLOv1 (Redmon et al. 2016), CPU-sized: 56x56 synthetic shapes, S=7 (or PASCAL VOC)",
    yolo_v1_small, 56,
    dict(epochs=3, batch_size=32, lr=5e-4, optimizer="adamw", weight_decay=5e-4, momentum=0.9,
         schedule="onecycle", threads=1),
    batch_norm=True, head="fc", dropout=0.0, train_size=16000))
register_recipe(YOLORecipe(
    "yolov1-paper", "YOLOv1 as in the paper: 24 convolutions + 2 fully connected on 448x448",
    yolo_v1, 448,
    dict(epochs=135, batch_size=64, lr=1e-2, optimizer="sgd", weight_decay=5e-4, momentum=0.9,
         schedule="onecycle", threads=None)))
register_recipe(YOLORecipe(
    "fast-yolo", "Fast YOLO (Redmon et al. 2016): 9 convolutions + 1 fully connected on 448x448",
    fast_yolo, 448,
    dict(epochs=135, batch_size=64, lr=1e-2, optimizer="sgd", weight_decay=5e-4, momentum=0.9,
         schedule="onecycle", threads=None)))
