"""float64 numpy reference for the LSTM family: PyTorch's equations written step by step.

Gate blocks along the 4H axis are i, f, g, o:
    z = x W_ih^T + b_ih + h W_hh^T + b_hh
    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g)
    c' = f c + i g;   h' = o tanh(c')
"""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """One step: x (B, I), h and c (B, H) -> (h', c')."""
    z = x @ w_ih.T + h @ w_hh.T
    if b_ih is not None:
        z = z + b_ih
    if b_hh is not None:
        z = z + b_hh
    H = h.shape[1]
    i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
    c_new = f * c + i * g
    return o * np.tanh(c_new), c_new


def lstm_layer(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False, lengths=None):
    """One layer, one direction; every sequence of the batch run on its own, one step at a time.

    x (T, B, I) -> output (T, B, H) (zeros after each sequence's length), hn, cn (B, H)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    out = np.zeros((T, B, H))
    hn, cn = np.zeros((B, H)), np.zeros((B, H))
    for b in range(B):
        L = T if lengths is None else int(lengths[b])
        h, c = h0[b:b + 1], c0[b:b + 1]
        for t in (range(L - 1, -1, -1) if reverse else range(L)):
            h, c = lstm_cell(x[t, b:b + 1], h, c, w_ih, w_hh, b_ih, b_hh)
            out[t, b] = h[0]
        hn[b], cn[b] = h[0], c[0]
    return out, hn, cn


def lstm(x, h0, c0, params, num_layers, bidirectional=False, batch_first=False, lengths=None):
    """A stack of layers like torch.nn.LSTM. params: per layer and direction (w_ih, w_hh, b_ih, b_hh),
    in torch's order (layer 0, layer 0 reverse, layer 1, ...). h0, c0 (layers * directions, B, H).
    Returns output (T, B, D*H) (or batch-first), hn, cn."""
    if batch_first:
        x = x.transpose(1, 0, 2)
    D = 2 if bidirectional else 1
    hn, cn = [], []
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            k = layer * D + d
            out, h, c = lstm_layer(x, h0[k], c0[k], *params[k], reverse=d == 1, lengths=lengths)
            outs.append(out)
            hn.append(h)
            cn.append(c)
        x = np.concatenate(outs, axis=2)
    if batch_first:
        x = x.transpose(1, 0, 2)
    return x, np.stack(hn), np.stack(cn)
