"""LeNet-5: Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based learning applied to
document recognition", Proc. IEEE 86(11):2278-2324, 1998 (section II-B).

Layers, on a 32x32 single-channel input (MNIST's 28x28 digits centred in it, as in the paper):

    C1  convolution 6@5x5           -> 6 x 28 x 28      156 parameters
    S2  2x2 subsampling, stride 2   -> 6 x 14 x 14
    C3  convolution 16@5x5          -> 16 x 10 x 10   2,416 parameters
    S4  2x2 subsampling, stride 2   -> 16 x 5 x 5
    C5  convolution 120@5x5         -> 120 x 1 x 1   48,120 parameters
    F6  fully connected 84          -> 84            10,164 parameters
    output fully connected 10       -> 10               850 parameters    (61,706 in all)

Departures from the paper, each a common modern simplification:
  * C3 connects every S2 map to every C3 map; the paper's sparse connection table (Table I, 60 of
    the 96 map pairs, 1,516 weights) is not used, hence 61,706 rather than 60,000 parameters.
  * S2/S4 are plain pooling; the paper's subsampling units multiply the 2x2 average by a trainable
    coefficient, add a trainable bias and squash the result (12 and 32 more parameters).
  * The output layer is a linear layer trained with softmax cross-entropy, not the paper's
    Euclidean RBF units with fixed 7x12 bitmap codes and its MAP criterion.
  * Defaults: ReLU and max pooling (``activation="relu"``, ``pooling="max"``), which train faster;
    the paper's choices are ``activation="scaled_tanh"`` (f(a) = 1.7159 tanh(2a/3), its appendix A)
    and ``pooling="avg"``. ``activation="tanh"`` gives plain tanh.
  * Optional, for the reading list's part two (off by default, so the network is the paper's):
    ``norm="batch"`` puts batch normalisation (Ioffe & Szegedy 2015) after C1, C3, C5 and F6, before
    their activation, as that paper places it (those layers then have no bias: the norm's shift
    replaces it); ``norm="layer"`` puts layer normalisation (Ba, Kiros & Hinton 2016) in the same
    places, over each sample's whole map (C, H, W) after a convolution and its 84 units after F6.
    ``dropout=p`` (Srivastava et al. 2014) drops the inputs of the two fully connected layers F6 and
    output, where that paper applies it to convolutional networks' dense top; the convolutions share
    their weights over positions and are left without.
  * Initialisation is pyfastdl's default for Conv2d/Linear, not the paper's uniform
    +-2.4/fan_in; training uses AdamW (or SGD with momentum) on minibatches, not the stochastic
    diagonal Levenberg-Marquardt method.
The input scaling follows the paper: background -0.1, full ink 1.175 (see pyfastdl.data.lecun_scale).

``pyfastdl train lenet`` trains it through the shared loop with the :class:`LeNetRecipe` below.
"""

from __future__ import annotations

import argparse

import numpy as np

from .. import nn
from ..train.options import NORMS, add_option
from ..tasks.classification import ClassificationRecipe, RandomShift

__all__ = ["LeNet5", "ScaledTanh", "LeNetRecipe"]

ACTIVATIONS = ("relu", "tanh", "scaled_tanh")
POOLINGS = ("max", "avg")


class ScaledTanh(nn.Module):
    """The paper's squashing function f(a) = A tanh(S a) with A = 1.7159, S = 2/3 (appendix A):
    f(1) = 1 and f(-1) = -1, and the second derivative is largest at a = +-1."""

    def forward(self, x):
        return (x * (2.0 / 3.0)).tanh() * 1.7159


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "scaled_tanh":
        return ScaledTanh()
    raise ValueError(f"LeNet5: activation must be one of {ACTIVATIONS}, got {name!r}")


def _pooling(name: str) -> nn.Module:
    if name == "max":
        return nn.MaxPool2d(2)
    if name == "avg":
        return nn.AvgPool2d(2)
    raise ValueError(f"LeNet5: pooling must be one of {POOLINGS}, got {name!r}")


def _norm(name: str, shape: tuple) -> nn.Module:
    """The normalisation after a layer whose output per sample has ``shape`` ((C, H, W) or (units,))."""
    if name == "none":
        return nn.Identity()
    if name == "batch":
        return nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])
    if name == "layer":
        return nn.LayerNorm(list(shape))
    raise ValueError(f"LeNet5: norm must be one of {NORMS}, got {name!r}")


class LeNet5(nn.Module):
    """LeNet-5 on (N, in_channels, 32, 32) inputs -> (N, num_classes) class scores (logits).

    ``norm`` ("none", "batch" or "layer") and ``dropout`` (a probability) add the part-two techniques
    where the module docstring says; with the defaults the network is the paper's (61,706 parameters)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, activation: str = "relu",
                 pooling: str = "max", norm: str = "none", dropout: float = 0.0):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"LeNet5: norm must be one of {NORMS}, got {norm!r}")
        bias = norm != "batch"  # batch norm's shift does a bias's job
        self.c1 = nn.Conv2d(in_channels, 6, 5, bias=bias)
        self.n1 = _norm(norm, (6, 28, 28))
        self.s2 = _pooling(pooling)
        self.c3 = nn.Conv2d(6, 16, 5, bias=bias)
        self.n3 = _norm(norm, (16, 10, 10))
        self.s4 = _pooling(pooling)
        self.c5 = nn.Conv2d(16, 120, 5, bias=bias)
        self.n5 = _norm(norm, (120, 1, 1))
        self.drop5 = nn.Dropout(dropout)
        self.f6 = nn.Linear(120, 84, bias=bias)
        self.n6 = _norm(norm, (84,))
        self.drop6 = nn.Dropout(dropout)
        self.output = nn.Linear(84, num_classes)
        self.act = _activation(activation)

    def forward(self, x):
        x = self.s2(self.act(self.n1(self.c1(x))))
        x = self.s4(self.act(self.n3(self.c3(x))))
        x = self.act(self.n5(self.c5(x))).reshape(x.shape[0], 120)
        x = self.act(self.n6(self.f6(self.drop5(x))))
        return self.output(self.drop6(x))


# ---- the training recipe: LeNet-5 on digits (default), MNIST or Fashion-MNIST ----

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
#: Seed of the fixed train/validation split (a dataset's validation set never changes with --seed).
VAL_SPLIT_SEED = 1


class LeNetRecipe(ClassificationRecipe):
    """LeNet-5 on scikit-learn's digits (default, bundled), MNIST or Fashion-MNIST (IDX files).

    Training defaults, chosen for the 2-core CPU target (>= 98% test accuracy on digits in well
    under two minutes) and set up for >= 99% on MNIST: AdamW with weight decay 5e-4 and a one-cycle
    schedule (15% warm-up then cosine decay), random translations of up to 2 pixels as the only
    augmentation, and 10% of the training images held out for validation. One CPU thread by default:
    LeNet's kernel calls take about a millisecond, too little work to share between threads, and on
    a busy machine spinning OpenMP/OpenBLAS thread pools made a 2-thread run ~50x slower
    (``--threads 2`` to try otherwise).
    """

    name = "lenet"
    description = "LeNet-5 (LeCun et al. 1998) on digits, MNIST or Fashion-MNIST"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dataset", choices=["digits", "mnist", "fashion-mnist"], default="digits",
                            help="digits: scikit-learn's bundled 8x8 digits at 32x32 (default); mnist, "
                                 "fashion-mnist: the IDX files in --data-dir")
        parser.add_argument("--data-dir", help="directory holding the four IDX files (mnist, fashion-mnist)")
        parser.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                            help="relu (default) or the paper's scaled_tanh, or tanh")
        parser.add_argument("--pooling", choices=POOLINGS, default="max", help="max (default) or the paper's avg")
        add_option(parser, "norm", "none", "normalisation after C1, C3, C5 and F6: none (the paper's), batch "
                                           "(Ioffe & Szegedy 2015) or layer (Ba et al. 2016)", choices=NORMS)
        add_option(parser, "dropout", 0.0, "dropout probability on the inputs of F6 and the output layer "
                                           "(Srivastava et al. 2014; 0: none)")
        parser.add_argument("--shift", type=int, default=2,
                            help="augmentation: random translation of up to this many pixels (default 2; 0: none)")
        parser.add_argument("--val-fraction", type=float, default=0.1,
                            help="fraction of the training images held out for validation (default 0.1)")

    def default_hparams(self, args: argparse.Namespace) -> dict:
        common = dict(optimizer="adamw", weight_decay=5e-4, momentum=0.9, schedule="onecycle", threads=1)
        if args.dataset == "digits":
            return dict(common, epochs=15, batch_size=32, lr=3e-3)
        return dict(common, epochs=12, batch_size=64, lr=2e-3)

    def build_model(self, args: argparse.Namespace) -> LeNet5:
        return LeNet5(num_classes=10, activation=args.activation, pooling=args.pooling,
                      norm=getattr(args, "norm", "none"), dropout=getattr(args, "dropout", 0.0))

    def datasets(self, args: argparse.Namespace) -> dict:
        from ..data import LECUN_BACKGROUND, ArrayDataset, Subset, load_digits, load_mnist
        from ..data import random_split_indices

        if args.dataset == "digits":
            data = load_digits()
        else:
            data = load_mnist(args.data_dir, args.dataset)
        x, y = data["train"]
        train_idx, val_idx = random_split_indices(len(y), [1 - args.val_fraction, args.val_fraction],
                                                  VAL_SPLIT_SEED)
        augment = RandomShift(args.shift, fill=LECUN_BACKGROUND, seed=args.seed) if args.shift > 0 else None
        return {
            "train": Subset(ArrayDataset(x, y, transform=augment), train_idx),
            "val": Subset(ArrayDataset(x, y), val_idx) if len(val_idx) else None,
            "test": ArrayDataset(*data["test"]),
        }

    def class_names(self, args: argparse.Namespace) -> tuple:
        return FASHION_CLASSES if args.dataset == "fashion-mnist" else tuple(str(d) for d in range(10))

    def load_inputs(self, paths: list[str], args: argparse.Namespace) -> np.ndarray:
        """Grayscale images (PNG, or .npy arrays (H, W) / (N, H, W)), any size, dark or light
        background -> (N, 1, 32, 32) inputs laid out like the training data."""
        from ..data import lecun_scale, load_npy, pad_to, resize_bilinear

        images = []
        for path in paths:
            if path.endswith(".npy"):
                a = load_npy(path, np.float64)
                a = a / 255.0 if a.max() > 1.0 else a
            else:
                import matplotlib.image

                a = np.asarray(matplotlib.image.imread(path), dtype=np.float64)
                a = a / 255.0 if a.max() > 1.0 else a
                if a.ndim == 3:  # RGB(A) -> luminance
                    a = a[..., :3] @ np.array([0.299, 0.587, 0.114])
            if a.ndim not in (2, 3):
                raise ValueError(f"{path}: expected an image (H, W) or a stack (N, H, W), got shape {a.shape}")
            images.extend(a[None] if a.ndim == 2 else a)
        out = []
        for a in images:
            if a.mean() > 0.5:  # dark ink on a light background -> the datasets' light-on-dark
                a = 1.0 - a
            out.append(np.clip(resize_bilinear(a, (28, 28)), 0.0, 1.0))
        return lecun_scale(pad_to(np.stack(out), (32, 32)))[:, None]
