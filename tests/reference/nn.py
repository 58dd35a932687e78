"""float64 numpy references for the layers, losses and optimizers, written for clarity (loops
where a loop says it best). Never the code under test."""

import math

import numpy as np


def rel_err(out, ref):
    """||out - ref|| / ||ref|| in float64 (NaN never passes: it compares false)."""
    out, ref = np.asarray(out, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    denom = np.linalg.norm(ref)
    return np.linalg.norm(out - ref) / (denom if denom > 0 else 1.0)


def gelu(x):
    return np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x.ravel()]).reshape(x.shape)


def log_softmax(x, axis):
    out = np.empty_like(x, dtype=np.float64)
    for idx in np.ndindex(*np.delete(np.array(x.shape), axis)):
        sl = list(idx)
        sl.insert(axis, slice(None))
        row = x[tuple(sl)].astype(np.float64)
        m = row.max()
        out[tuple(sl)] = row - m - math.log(sum(math.exp(v - m) for v in row))
    return out


def cross_entropy(x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Per-row definition: classes in dim 1 of x (N, C, *), target (N, *); or x (C,), target ()."""
    if x.ndim == 1:
        out = cross_entropy(x[None], np.asarray(target).reshape(1), weight, ignore_index, reduction, label_smoothing)
        return out.reshape(()) if reduction == "none" else out
    c = x.shape[1]
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    lp = log_softmax(x, 1)
    losses = np.zeros(target.shape)
    denom = 0.0
    for idx in np.ndindex(*target.shape):
        t = int(target[idx])
        if t == ignore_index:
            continue
        row = lp[(idx[0], slice(None)) + idx[1:]]
        losses[idx] = (1 - label_smoothing) * w[t] * -row[t] + label_smoothing / c * -(w * row).sum()
        denom += w[t]
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.sum() / denom


def batch_norm_train(x, weight, bias, eps):
    """Returns (y, batch mean, biased batch variance) with statistics over all axes but 1."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = [1] * x.ndim
    shape[1] = -1
    mean = x.mean(axis=axes)
    var = ((x - mean.reshape(shape)) ** 2).mean(axis=axes)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * weight.reshape(shape) + bias.reshape(shape)
    return y, mean, var


def layer_norm(x, k, weight, bias, eps):
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def sgd_step(p, g, buf, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """One SGD step in float64; returns (p, buf)."""
    g = g + weight_decay * p
    if momentum:
        buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf


def adam_step(p, g, state, lr, betas, eps, weight_decay, amsgrad, decoupled):
    """One Adam/AdamW step in float64; ``state`` dict is updated."""
    b1, b2 = betas
    state["t"] = state.get("t", 0) + 1
    t = state["t"]
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
    state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
    v = state["v"]
    if amsgrad:
        state["vmax"] = np.maximum(state.get("vmax", 0.0), v)
        v = state["vmax"]
    m_hat = state["m"] / (1 - b1**t)
    v_hat_sqrt = np.sqrt(v) / math.sqrt(1 - b2**t)
    return p - lr * m_hat / (v_hat_sqrt + eps)
