"""float64 references of softmax, log_softmax and their gradients along the last axis, written for
clarity (the cross-entropy reference is reference.nn.cross_entropy)."""

import numpy as np


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def softmax(x):
    return np.exp(log_softmax(x))


def softmax_backward(y, g):
    """d x from the output y = softmax(x) and the output gradient g (the Jacobian diag(y) - y y^T)."""
    y, g = y.astype(np.float64), g.astype(np.float64)
    return y * (g - (g * y).sum(axis=-1, keepdims=True))


def log_softmax_backward(y, g):
    y, g = y.astype(np.float64), g.astype(np.float64)
    return g - np.exp(y) * g.sum(axis=-1, keepdims=True)


def cross_entropy_grad(x, t, weight, ignore_index, eps):
    """d loss_i / d x for each row of x (rows, C), by the definition loss_i = -sum_c q_c w_c lp_c with
    q = (1 - eps) onehot(t) + eps / C, weighted per class (rows with an ignored target: 0)."""
    x = x.astype(np.float64)
    rows, c = x.shape
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    p = softmax(x)
    grad = np.zeros_like(x)
    for i in range(rows):
        if t[i] == ignore_index:
            continue
        q = np.full(c, eps / c)
        q[t[i]] += 1 - eps
        qw = q * w  # loss = -sum_c qw_c (x_c - lse)  ->  d/dx_j = -qw_j + p_j sum(qw)
        grad[i] = -qw + p[i] * qw.sum()
    return grad
