"""float64 references of batch norm and layer norm, forward and backward, written for clarity:
statistics over the group's axes, then the textbook gradients (Ioffe & Szegedy 2015, section 3)."""

import numpy as np


def _stats(x, axes, eps):
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return mean, 1 / np.sqrt(var + eps)


def normalize_backward(g, x, w, axes, mean, invstd, batch_stats):
    """d x of y = (x - mean) * invstd * w with the statistics over ``axes`` (through them when batch_stats)."""
    n = np.prod([x.shape[a] for a in axes])
    x_hat = (x - mean) * invstd
    gw = g * w
    if not batch_stats:
        return gw * invstd
    return invstd * (gw - gw.sum(axis=axes, keepdims=True) / n - x_hat * (gw * x_hat).sum(axis=axes, keepdims=True) / n)


def batch_norm(x, w, b, eps, running=None):
    """-> (y, mean, invstd) over all axes but 1; running=(mean, var) uses those statistics instead."""
    x = x.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = [1] * x.ndim
    shape[1] = -1
    if running is None:
        mean, invstd = _stats(x, axes, eps)
    else:
        mean = np.reshape(running[0], shape)
        invstd = 1 / np.sqrt(np.reshape(running[1], shape) + eps)
    y = (x - mean) * invstd * np.reshape(w, shape) + np.reshape(b, shape)
    return y, mean.reshape(-1), invstd.reshape(-1)


def batch_norm_backward(g, x, w, eps, running=None):
    """-> (d x, d w, d b) of batch_norm."""
    g, x = g.astype(np.float64), x.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = [1] * x.ndim
    shape[1] = -1
    _, mean, invstd = batch_norm(x, w, np.zeros_like(w), eps, running)
    mean, invstd = mean.reshape(shape), invstd.reshape(shape)
    gx = normalize_backward(g, x, np.reshape(w, shape), axes, mean, invstd, running is None)
    return gx, (g * (x - mean) * invstd).sum(axis=axes), g.sum(axis=axes)


def layer_norm(x, k, w, b, eps):
    """-> (y, mean, invstd) over the last k axes (statistics with the row's shape)."""
    x = x.astype(np.float64)
    axes = tuple(range(x.ndim - k, x.ndim))
    mean, invstd = _stats(x, axes, eps)
    lead = x.shape[:x.ndim - k]
    return (x - mean) * invstd * w + b, mean.reshape(lead), invstd.reshape(lead)


def layer_norm_backward(g, x, k, w, eps):
    g, x = g.astype(np.float64), x.astype(np.float64)
    axes = tuple(range(x.ndim - k, x.ndim))
    lead = tuple(range(x.ndim - k))
    mean, invstd = _stats(x, axes, eps)
    gx = normalize_backward(g, x, w, axes, mean, invstd, True)
    return gx, (g * (x - mean) * invstd).sum(axis=lead), g.sum(axis=lead)
