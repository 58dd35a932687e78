"""float64 numpy references of the convolution family, written for clarity.

Every convolution is a sum over kernel taps (r, s): tap (r, s) multiplies the strided window of the
(padded) input that starts at (r*dilation, s*dilation) by the weight column w[:, :, r, s]. The
transposed convolution scatters each input pixel's contribution into its window of the output."""

import numpy as np


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _window(r, s, P, Q, stride, dilation):
    """The (rows, cols) slices of a padded input read by tap (r, s) for a P x Q output."""
    (sh, sw), (dh, dw) = stride, dilation
    return (slice(r * dh, r * dh + sh * (P - 1) + 1, sh), slice(s * dw, s * dw + sw * (Q - 1) + 1, sw))


def _sizes(x, w, stride, padding, dilation):
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    P = (H + 2 * padding[0] - dilation[0] * (R - 1) - 1) // stride[0] + 1
    Q = (W + 2 * padding[1] - dilation[1] * (S - 1) - 1) // stride[1] + 1
    return stride, padding, dilation, P, Q


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """y (N, K, P, Q) = conv2d(x (N, C, H, W), w (K, C/groups, R, S)) + b."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    stride, (ph, pw), dilation, P, Q = _sizes(x, w, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    K, Cg, R, S = w.shape
    Kg = K // groups
    y = np.zeros((x.shape[0], K, P, Q))
    for g in range(groups):
        xg, wg = xp[:, g * Cg : (g + 1) * Cg], w[g * Kg : (g + 1) * Kg]
        for r in range(R):
            for s in range(S):
                rows, cols = _window(r, s, P, Q, stride, dilation)
                y[:, g * Kg : (g + 1) * Kg] += np.einsum("ncpq,kc->nkpq", xg[:, :, rows, cols], wg[:, :, r, s])
    if b is not None:
        y += np.asarray(b, np.float64).reshape(1, -1, 1, 1)
    return y


def conv2d_grads(x, w, grad_y, stride=1, padding=0, dilation=1, groups=1):
    """(grad_x, grad_w, grad_b) of conv2d for the output gradient grad_y (N, K, P, Q)."""
    x, w, gy = (np.asarray(a, np.float64) for a in (x, w, grad_y))
    stride, (ph, pw), dilation, P, Q = _sizes(x, w, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    K, Cg, R, S = w.shape
    Kg = K // groups
    for g in range(groups):
        cs, ks = slice(g * Cg, (g + 1) * Cg), slice(g * Kg, (g + 1) * Kg)
        for r in range(R):
            for s in range(S):
                rows, cols = _window(r, s, P, Q, stride, dilation)
                gxp[:, cs, rows, cols] += np.einsum("nkpq,kc->ncpq", gy[:, ks], w[ks, :, r, s])
                gw[ks, :, r, s] = np.einsum("nkpq,ncpq->kc", gy[:, ks], xp[:, cs, rows, cols])
    H, W = x.shape[2:]
    return gxp[:, :, ph : ph + H, pw : pw + W], gw, gy.sum(axis=(0, 2, 3))


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """y = conv_transpose2d(x (N, Cin, H, W), w (Cin, Cout/groups, R, S)) + b: each input pixel adds
    x * w[c, :, r, s] at output (h*stride + r*dilation - padding, ...)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    (sh, sw), (ph, pw), (oh, ow), (dh, dw) = (_pair(v) for v in (stride, padding, output_padding, dilation))
    N, Cin, H, W = x.shape
    _, Cog, R, S = w.shape
    Cig = Cin // groups
    full = np.zeros((N, Cog * groups, (H - 1) * sh + dh * (R - 1) + 1 + oh, (W - 1) * sw + dw * (S - 1) + 1 + ow))
    for g in range(groups):
        xg, wg = x[:, g * Cig : (g + 1) * Cig], w[g * Cig : (g + 1) * Cig]
        for r in range(R):
            for s in range(S):
                rows, cols = _window(r, s, H, W, (sh, sw), (dh, dw))
                full[:, g * Cog : (g + 1) * Cog, rows, cols] += np.einsum("nchw,co->nohw", xg, wg[:, :, r, s])
    y = full[:, :, ph : full.shape[2] - ph, pw : full.shape[3] - pw]
    if b is not None:
        y = y + np.asarray(b, np.float64).reshape(1, -1, 1, 1)
    return y
