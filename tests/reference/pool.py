"""float64 numpy references for the pooling family, written for clarity: a loop over output
positions, each window handled for all planes (N*C) at once. torch's rules throughout."""

import numpy as np


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def out_size(n, k, s, p, d, ceil_mode):
    """Output length of a pooling axis (torch's pooling_output_shape)."""
    eff = d * (k - 1) + 1
    num = n + 2 * p - eff
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:  # the last window must start inside the input or left padding
        out -= 1
    return out


def _planes(x):
    """(planes, H, W) view of a (N, C, H, W) or (C, H, W) array, and the leading shape."""
    return x.reshape(-1, *x.shape[-2:]), x.shape[:-2]


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Returns (y, indices); indices are flat ih * W + iw within each plane."""
    (kh, kw), (ph, pw), (dh, dw) = pair(kernel_size), pair(padding), pair(dilation)
    sh, sw = pair(stride if stride is not None else kernel_size)
    xp, lead = _planes(np.asarray(x, dtype=np.float64))
    P, H, W = xp.shape
    OH, OW = out_size(H, kh, sh, ph, dh, ceil_mode), out_size(W, kw, sw, pw, dw, ceil_mode)
    y = np.empty((P, OH, OW))
    idx = np.empty((P, OH, OW), dtype=np.int64)
    for oh in range(OH):
        for ow in range(OW):
            best = np.full(P, -np.inf)
            arg = np.full(P, -1, dtype=np.int64)
            for i in range(kh):
                for j in range(kw):
                    ih, iw = oh * sh - ph + i * dh, ow * sw - pw + j * dw
                    if not (0 <= ih < H and 0 <= iw < W):
                        continue  # padding never wins
                    v = xp[:, ih, iw]
                    # first in-bounds cell, a strictly larger value, or a NaN (so the last NaN wins)
                    take = (arg < 0) | (v > best) | np.isnan(v)
                    best = np.where(take, v, best)
                    arg = np.where(take, ih * W + iw, arg)
            y[:, oh, ow], idx[:, oh, ow] = best, arg
    return y.reshape(*lead, OH, OW), idx.reshape(*lead, OH, OW)


def max_pool2d_backward(grad_y, indices, input_shape):
    g, _ = _planes(np.asarray(grad_y, dtype=np.float64))
    idx = indices.reshape(g.shape)
    gx = np.zeros((g.shape[0], input_shape[-2] * input_shape[-1]))
    for p in range(g.shape[0]):
        hit = idx[p].ravel() >= 0  # -1: a window with no input cell sends its gradient nowhere
        np.add.at(gx[p], idx[p].ravel()[hit], g[p].ravel()[hit])
    return gx.reshape(input_shape)


def _avg_windows(H, W, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """[(oh, ow, rows, cols, divisor)]: the input rows/columns each output averages."""
    (kh, kw), (ph, pw) = pair(kernel_size), pair(padding)
    sh, sw = pair(stride if stride is not None else kernel_size)
    OH, OW = out_size(H, kh, sh, ph, 1, ceil_mode), out_size(W, kw, sw, pw, 1, ceil_mode)
    windows = []
    for oh in range(OH):
        for ow in range(OW):
            hs, ws = oh * sh - ph, ow * sw - pw
            he, we = min(hs + kh, H + ph), min(ws + kw, W + pw)  # clipped to the padded input
            rows = range(max(hs, 0), min(he, H))
            cols = range(max(ws, 0), min(we, W))
            if divisor_override:
                div = divisor_override
            elif count_include_pad:
                div = (he - hs) * (we - ws)
            else:
                div = len(rows) * len(cols)
            windows.append((oh, ow, rows, cols, div))
    return (OH, OW), windows


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    xp, lead = _planes(np.asarray(x, dtype=np.float64))
    (OH, OW), windows = _avg_windows(*xp.shape[1:], kernel_size, stride, padding, ceil_mode, count_include_pad,
                                     divisor_override)
    y = np.empty((xp.shape[0], OH, OW))
    for oh, ow, rows, cols, div in windows:
        y[:, oh, ow] = xp[:, rows.start:rows.stop, cols.start:cols.stop].sum(axis=(1, 2)) / div
    return y.reshape(*lead, OH, OW)


def avg_pool2d_backward(grad_y, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    g, _ = _planes(np.asarray(grad_y, dtype=np.float64))
    _, windows = _avg_windows(*input_shape[-2:], kernel_size, stride, padding, ceil_mode, count_include_pad,
                              divisor_override)
    gx = np.zeros((g.shape[0], *input_shape[-2:]))
    for oh, ow, rows, cols, div in windows:
        gx[:, rows.start:rows.stop, cols.start:cols.stop] += (g[:, oh, ow] / div)[:, None, None]
    return gx.reshape(input_shape)


def _adaptive_range(o, n_in, n_out):
    return range((o * n_in) // n_out, -(-((o + 1) * n_in) // n_out))


def adaptive_avg_pool2d(x, output_size):
    xp, lead = _planes(np.asarray(x, dtype=np.float64))
    OH, OW = pair(output_size)
    H, W = xp.shape[1:]
    y = np.empty((xp.shape[0], OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            r, c = _adaptive_range(oh, H, OH), _adaptive_range(ow, W, OW)
            y[:, oh, ow] = xp[:, r.start:r.stop, c.start:c.stop].mean(axis=(1, 2))
    return y.reshape(*lead, OH, OW)


def adaptive_avg_pool2d_backward(grad_y, input_shape):
    g, _ = _planes(np.asarray(grad_y, dtype=np.float64))
    OH, OW = g.shape[1:]
    H, W = input_shape[-2:]
    gx = np.zeros((g.shape[0], H, W))
    for oh in range(OH):
        for ow in range(OW):
            r, c = _adaptive_range(oh, H, OH), _adaptive_range(ow, W, OW)
            gx[:, r.start:r.stop, c.start:c.stop] += (g[:, oh, ow] / (len(r) * len(c)))[:, None, None]
    return gx.reshape(input_shape)
