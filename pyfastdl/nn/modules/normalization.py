"""BatchNorm1d, BatchNorm2d, SyncBatchNorm and LayerNorm, with torch's parameters, buffers and running statistics."""

from __future__ import annotations

import numpy as np

from ...tensor import Tensor
from .. import functional as F
from .. import init
from . import _factory
from .module import Module

__all__ = ["BatchNorm1d", "BatchNorm2d", "SyncBatchNorm", "LayerNorm"]


class _BatchNorm(Module):
    """Parameters weight (C,) = 1 and bias (C,) = 0 (if affine; bias=False drops the bias); buffers running_mean = 0,
    running_var = 1 and num_batches_tracked (int64) if track_running_stats.

    Training: normalise with the batch's statistics and update the running ones with ``momentum``
    (None: a cumulative average, factor 1/num_batches_tracked). Eval: use the running statistics
    (or the batch's when track_running_stats=False)."""

    _input_dims: tuple = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None,
                 dtype=None, *, bias=True):
        super().__init__()
        self.num_features = num_features = _factory.size(self, "num_features", num_features)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        c = (num_features,)
        self.register_parameter("weight", _factory.parameter(self, c, device, dtype) if affine else None)
        self.register_parameter("bias", _factory.parameter(self, c, device, dtype) if affine and bias else None)
        if track_running_stats:
            self.register_buffer("running_mean", _factory.buffer(self, 0, c, device, dtype))
            self.register_buffer("running_var", _factory.buffer(self, 1, c, device, dtype))
            self.register_buffer("num_batches_tracked", _factory.buffer(self, 0, (), device, np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)
        self.reset_parameters()

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data.fill(0)
            self.running_var.data.fill(1)
            self.num_batches_tracked.data.fill(0)

    def reset_parameters(self):
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):  # noqa: A002
        if not isinstance(input, Tensor):
            raise TypeError(f"{type(self).__name__}: input must be a Tensor, got {type(input).__name__}")
        if input.ndim not in self._input_dims:
            raise ValueError(f"{type(self).__name__}: expected {' or '.join(f'{d}D' for d in self._input_dims)} "
                             f"input (got {input.ndim}D input of shape {input.shape})")
        if input.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: input has {input.shape[1]} channels (dim 1 of shape "
                             f"{input.shape}) but num_features is {self.num_features}")
        held = next((t for t in (self.weight, self.running_mean) if t is not None), None)
        if held is not None and held.dtype != input.dtype:
            raise TypeError(f"{type(self).__name__}: input is {input.dtype} but the module's dtype is {held.dtype} "
                            "(convert one with .to(dtype))")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.item())
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(input, self.running_mean if track else None, self.running_var if track else None,
                            self.weight, self.bias, use_batch_stats, factor, self.eps, synced=self._synced())

    def _synced(self) -> bool:
        return False

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) inputs."""

    _input_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) inputs (statistics over N, H and W per channel)."""

    _input_dims = (4,)


class SyncBatchNorm(_BatchNorm):
    """Batch norm over (N, C, *) inputs whose training statistics span the batches of every rank of
    the process group (:mod:`pyfastdl.distributed`), so that data parallel training normalises as one
    process with the whole batch would. Without a process group it is BatchNorm exactly (with a group
    of one rank, the same values through the synchronised sums).
    Use :meth:`convert_sync_batchnorm` to swap it in for a model's batch norms."""

    _input_dims = (2, 3, 4, 5)

    def _synced(self) -> bool:
        from ... import distributed

        # under a process group, one rank included, the statistics are taken the synchronised way
        # (sums all-reduced): the same arithmetic whatever the number of ranks, so N ranks retrace
        # one process to the rounding of the sums' order
        return self.training and distributed.is_initialized()

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """``module`` with every BatchNorm inside it replaced by a SyncBatchNorm holding the same
        parameters and running statistics (in place for containers; returns the converted module)."""
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            sync = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            for name, value in (*module._parameters.items(), *module._buffers.items()):
                (sync._parameters if name in module._parameters else sync._buffers)[name] = value
            sync.training = module.training
            return sync
        for name, child in module.named_children():
            module._modules[name] = cls.convert_sync_batchnorm(child, process_group)  # keeps the order
        return module


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` dimensions; weight = 1 and bias = 0 of that shape
    (if elementwise_affine)."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        dims = normalized_shape if isinstance(normalized_shape, (tuple, list)) else (normalized_shape,)
        shape = tuple(_factory.size(self, "normalized_shape", d) for d in dims)
        self.normalized_shape = shape
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self.register_parameter("weight",
                                _factory.parameter(self, shape, device, dtype) if elementwise_affine else None)
        self.register_parameter("bias", _factory.parameter(self, shape, device, dtype) if elementwise_affine and bias
                                else None)
        self.reset_parameters()

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):  # noqa: A002
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")
