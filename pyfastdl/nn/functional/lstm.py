"""LSTM with autograd: the fused cell and the multi-layer, bidirectional sequence op behind
``nn.LSTMCell`` and ``nn.LSTM``. PyTorch's equations and gate layout (i, f, g, o along 4H).

Signatures (the nn modules are built on these):

``lstm_cell(input, hx, weight_ih, weight_hh, bias_ih=None, bias_hh=None) -> (h', c')``
    input (B, I) or (I,) unbatched; hx = (h, c), each (B, H) (or (H,)), or None for zeros;
    weight_ih (4H, I); weight_hh (4H, H); biases (4H,) or None.

``lstm(input, hx, params, num_layers=1, bidirectional=False, batch_first=False, lengths=None,
dropout=0.0, training=False) -> (output, (h_n, c_n))``
    input (T, B, I) ((B, T, I) if batch_first), or (T, I) unbatched.
    hx = (h_0, c_0), each (num_layers * D, B, H) (D = 2 if bidirectional else 1), or None for zeros.
    params: a flat sequence in torch.nn.LSTM's order, per layer k and direction (suffix "_reverse"
    for the second): weight_ih_l{k} (4H, I_k), weight_hh_l{k} (4H, H), bias_ih_l{k} (4H,),
    bias_hh_l{k} (4H,) -- i.e. [w_ih_l0, w_hh_l0, b_ih_l0, b_hh_l0, w_ih_l0_reverse, ...,
    w_ih_l1, ...]; without biases only the two weights per layer and direction. I_0 = I and
    I_k = D * H after the first layer.
    lengths: None, or B ints in [1, T] (a list, numpy array or CPU Tensor), the valid steps of each
    sequence, as for a packed sequence: output is zero past each sequence's length, h_n/c_n are the
    states at each sequence's last valid step, and the reverse direction starts there.
    dropout: probability of zeroing each output element of every layer but the last, when
    training (:func:`pyfastdl.nn.functional.dropout`, masks from pyfastdl's global generator).
    Returns output (T, B, D * H) (batch-first if batch_first), h_n and c_n (num_layers * D, B, H).

Each layer and direction is one autograd node (``_LstmLayer``), whose forward and backward are
the whole-sequence kernels in :mod:`pyfastdl.kernels.lstm`. Non-contiguous inputs (e.g. the
transposed batch-first input) are copied to contiguous arrays before the kernels run.
"""

from __future__ import annotations

import numbers

import numpy as np

from ... import backend
from ...autograd import Function
from ...creation import cat, stack
from ...kernels import lstm as K
from ...kernels._dispatch import int_arg
from ...tensor import Tensor
from .dropout import dropout as _dropout

__all__ = ["lstm", "lstm_cell"]


def _c(a):
    return None if a is None else backend.contiguous(a)


class _LstmCell(Function):
    @staticmethod
    def forward(ctx, x, h, c, w_ih, w_hh, b_ih, b_hh):
        x, h, c, w_ih, w_hh = map(_c, (x, h, c, w_ih, w_hh))
        hy, cy, gates = K.lstm_cell_forward(x, h, c, w_ih, w_hh, _c(b_ih), _c(b_hh))
        ctx.save_for_backward(x, h, c, w_ih, w_hh, gates)
        ctx.bias = (b_ih is not None, b_hh is not None)
        return hy, cy

    @staticmethod
    def backward(ctx, grad_hy, grad_cy):
        x, h, c, w_ih, w_hh, gates = ctx.saved_tensors
        gx, gh, gc, gw_ih, gw_hh, gb = K.lstm_cell_backward(_c(grad_hy), _c(grad_cy), gates, x, h, c, w_ih, w_hh)
        return (gx, gh, gc, gw_ih, gw_hh, gb if ctx.bias[0] else None, gb if ctx.bias[1] else None)


class _LstmLayer(Function):
    """One layer and one direction over the whole sequence (T, B, I) -> (output, h_n, c_n)."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, lengths):
        x, h0, c0, w_ih, w_hh = map(_c, (x, h0, c0, w_ih, w_hh))
        save = any(ctx.needs_input_grad)  # inference keeps no per-step state
        out, hn, cn, saved = K.lstm_layer_forward(x, h0, c0, w_ih, w_hh, _c(b_ih), _c(b_hh), reverse, lengths,
                                                  save=save)
        if save:
            ctx.save_for_backward(x, w_ih, w_hh, *saved)
        ctx.reverse, ctx.lengths = reverse, lengths
        ctx.bias = (b_ih is not None, b_hh is not None)
        return out, hn, cn

    @staticmethod
    def backward(ctx, grad_out, grad_hn, grad_cn):
        x, w_ih, w_hh, *saved = ctx.saved_tensors
        gx, gh0, gc0, gw_ih, gw_hh, gb = K.lstm_layer_backward(
            _c(grad_out), _c(grad_hn), _c(grad_cn), x, w_ih, w_hh, saved, ctx.reverse, ctx.lengths)
        return (gx, gh0, gc0, gw_ih, gw_hh, gb if ctx.bias[0] else None, gb if ctx.bias[1] else None, None, None)


def _zeros_like_state(input, shape):
    return Tensor(backend.get_array_module(input.data).zeros(shape, input.dtype))


def lstm_cell(input, hx, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One LSTM step (torch.nn.LSTMCell): returns ``(h', c')``. Shapes in the module docstring."""
    _check_tensors("lstm_cell", input=input, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih,
                   bias_hh=bias_hh, **({} if hx is None else _pair_of_tensors("lstm_cell", "hx", hx)))
    unbatched = input.ndim == 1
    if input.ndim not in (1, 2):
        raise ValueError(f"lstm_cell: input must have 1 or 2 dimensions ((input_size,) or (batch, input_size)), "
                         f"got shape {tuple(input.shape)}")
    if unbatched:
        input = input.unsqueeze(0)
    H = weight_hh.shape[-1]
    if weight_hh.ndim != 2 or weight_hh.shape[0] != 4 * H:
        raise ValueError(f"lstm_cell: weight_hh must have shape (4*hidden_size, hidden_size), got "
                         f"{tuple(weight_hh.shape)}")
    if hx is None:
        h = c = _zeros_like_state(input, (input.shape[0], H))
    else:
        h, c = hx
        if unbatched:
            h, c = h.unsqueeze(0), c.unsqueeze(0)
        for name, t in (("hx[0] (h)", h), ("hx[1] (c)", c)):
            if tuple(t.shape) != (input.shape[0], H):
                raise ValueError(f"lstm_cell: {name} has shape {tuple(t.shape)}, expected (batch, hidden_size) = "
                                 f"{(input.shape[0], H)}")
    hy, cy = _LstmCell.apply(input, h, c, weight_ih, weight_hh, bias_ih, bias_hh)
    if unbatched:
        hy, cy = hy.squeeze(0), cy.squeeze(0)
    return hy, cy


def _check_tensors(op, **tensors):
    """Each argument a Tensor (None allowed for the biases): a TypeError naming it otherwise."""
    for name, t in tensors.items():
        if not isinstance(t, Tensor) and not (t is None and name.startswith("bias")):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")


def _pair_of_tensors(op, name, hx):
    """hx = (h, c) as keyword arguments for :func:`_check_tensors`."""
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError(f"{op}: {name} must be a pair (h, c) of Tensors or None, got {type(hx).__name__}")
    return {f"{name}[0]": hx[0], f"{name}[1]": hx[1]}


def _host_lengths(lengths):
    """lengths as a tuple of Python ints (they steer host-side loops), or None."""
    if lengths is None:
        return None
    if isinstance(lengths, Tensor):
        lengths = lengths.tolist()
    arr = np.asarray(lengths)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"lstm: lengths must be a 1-D sequence of integers, got {arr.dtype} with shape {arr.shape}")
    return tuple(int(n) for n in arr)


def lstm(input, hx, params, num_layers=1, bidirectional=False, batch_first=False, lengths=None, dropout=0.0,
         training=False):
    """Multi-layer (bidirectional) LSTM over a sequence (torch.nn.LSTM's computation).

    Returns ``(output, (h_n, c_n))``. Shapes and the order of ``params`` in the module docstring."""
    params = list(params) if isinstance(params, (tuple, list)) else params
    if not isinstance(params, list):
        raise TypeError(f"lstm: params must be a list of Tensors, got {type(params).__name__}")
    _check_tensors("lstm", input=input, **{f"params[{i}]": p for i, p in enumerate(params)},
                   **({} if hx is None else _pair_of_tensors("lstm", "hx", hx)))
    num_layers = int_arg("lstm", "num_layers", num_layers)
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
        raise TypeError(f"lstm: dropout must be a number, got {dropout!r}")
    if input.ndim not in (2, 3):
        raise ValueError(f"lstm: input must have 3 dimensions ((seq_len, batch, input_size), or batch first), or "
                         f"2 unbatched; got shape {tuple(input.shape)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"lstm: dropout must be in [0, 1), got {dropout}")
    D = 2 if bidirectional else 1
    params = list(params)
    per = len(params) // max(num_layers * D, 1)
    if num_layers < 1 or per not in (2, 4) or len(params) != per * num_layers * D:
        raise ValueError(f"lstm: params must hold 4 (with biases) or 2 tensors per layer and direction, "
                         f"{num_layers * D} layer-directions; got {len(params)} tensors")
    unbatched = input.ndim == 2
    if unbatched:
        input = input.unsqueeze(1)
    elif batch_first:
        input = input.transpose(0, 1)
    T, B = input.shape[0], input.shape[1]
    H = params[1].shape[-1]
    state_shape = (num_layers * D, B, H)
    if hx is None:
        h0 = c0 = _zeros_like_state(input, state_shape)
    else:
        h0, c0 = hx
        if unbatched:
            h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
        for name, t in (("hx[0] (h_0)", h0), ("hx[1] (c_0)", c0)):
            if tuple(t.shape) != state_shape:
                raise ValueError(f"lstm: {name} has shape {tuple(t.shape)}, expected (num_layers * num_directions, "
                                 f"batch, hidden_size) = {state_shape}")
    lengths = _host_lengths(lengths)

    x = input
    hn, cn = [], []
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            k = layer * D + d
            w_ih, w_hh, *bias = params[k * per:(k + 1) * per]
            b_ih, b_hh = bias if bias else (None, None)
            out, h, c = _LstmLayer.apply(x, h0[k], c0[k], w_ih, w_hh, b_ih, b_hh, d == 1, lengths)
            outs.append(out)
            hn.append(h)
            cn.append(c)
        x = outs[0] if D == 1 else cat(outs, dim=2)
        if layer < num_layers - 1:
            x = _dropout(x, dropout, training)
    h_n, c_n = stack(hn, dim=0), stack(cn, dim=0)
    if unbatched:
        x, h_n, c_n = x.squeeze(1), h_n.squeeze(1), c_n.squeeze(1)
    elif batch_first:
        x = x.transpose(0, 1)
    return x, (h_n, c_n)
