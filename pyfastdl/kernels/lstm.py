"""Raw LSTM kernels on numpy (CPU) or cupy (CUDA) arrays: no autograd.

Gate layout is PyTorch's: the 4H axis of every weight, bias and gate buffer holds the blocks
i, f, g, o. A sequence is (seq_len, batch, features).

* :func:`lstm_cell_forward` / :func:`lstm_cell_backward`: one step (the fused cell).
* :func:`lstm_layer_forward` / :func:`lstm_layer_backward`: one layer and one direction over a
  whole sequence, with optional per-sequence ``lengths`` and ``reverse``.

On the CPU each call is one C++ kernel (csrc/cpu/lstm.cpp): the per-step products run on a
small-batch matrix kernel with the weights packed once per sequence (csrc/cpu/batch_gemm.h), the
big products of the backward on OpenBLAS; it is compiled per instruction set and the widest one the
CPU supports runs (``pyfastdl._C.cpu.get_isa()``). On the GPU the matrix
products go to cuBLAS through cupy and the kernels in kernels/lstm.cu do the rest. The CUDA layer
forward has two variants, ``variant="step"`` (the simple reference: one cuBLAS product and one fused
pointwise kernel per step) and ``variant="persistent"`` (one cooperative kernel for all steps that
keeps ``weight_hh`` in shared memory); ``"auto"`` takes the persistent one where it fits.
"""

from __future__ import annotations

from .. import backend
from .._core import _C

__all__ = [
    "lstm_cell_forward",
    "lstm_cell_backward",
    "lstm_layer_forward",
    "lstm_layer_backward",
    "LSTM_LAYER_VARIANTS",
]

LSTM_LAYER_VARIANTS = ("auto", "step", "persistent")


def _new(xp, shape, dtype):
    """Every output and workspace of this module is allocated here (tests poison it with NaN)."""
    return xp.empty(shape, dtype)


def lstm_cell_forward(input, hx, cx, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One LSTM step.

    input (B, I), hx and cx (B, H), weight_ih (4H, I), weight_hh (4H, H), biases (4H,) or None.
    Returns ``(hy, cy, gates)``: the new state (B, H) each, and the gate activations (B, 4H) that
    :func:`lstm_cell_backward` needs.
    """
    device = backend.device_of(input)
    xp = backend.array_module(device)
    a = _C.LstmCellArgs(input.shape, weight_ih.shape, weight_hh.shape)
    hy, cy = _new(xp, a.state_shape, input.dtype), _new(xp, a.state_shape, input.dtype)
    if device == "cpu":
        gates = _new(xp, a.gates_shape, input.dtype)
        backend.launch("lstm_cell_forward", device, a, input, hx, cx, weight_ih, weight_hh, bias_ih, bias_hh,
                       hy, cy, gates)
    else:
        gates = input @ weight_ih.T
        gates += hx @ weight_hh.T
        backend.launch("lstm_cell_pointwise_forward", device, a, gates, bias_ih, bias_hh, cx, hy, cy)
    return hy, cy, gates


def lstm_cell_backward(grad_hy, grad_cy, gates, input, hx, cx, weight_ih, weight_hh):
    """Gradients of :func:`lstm_cell_forward` from grad_hy, grad_cy (B, H).

    Returns ``(grad_input, grad_hx, grad_cx, grad_weight_ih, grad_weight_hh, grad_bias)``;
    grad_bias (4H,) is the gradient of bias_ih and of bias_hh alike.
    """
    device = backend.device_of(input)
    xp = backend.array_module(device)
    a = _C.LstmCellArgs(input.shape, weight_ih.shape, weight_hh.shape)
    dt = input.dtype
    grad_cx = _new(xp, a.state_shape, dt)
    if device == "cpu":
        grads = (_new(xp, input.shape, dt), _new(xp, a.state_shape, dt), grad_cx,
                 _new(xp, weight_ih.shape, dt), _new(xp, weight_hh.shape, dt), _new(xp, (4 * a.hidden_size,), dt))
        backend.launch("lstm_cell_backward", device, a, grad_hy, grad_cy, gates, input, hx, cx, weight_ih,
                       weight_hh, *grads)
        return grads
    grad_gates = _new(xp, a.gates_shape, dt)
    backend.launch("lstm_cell_pointwise_backward", device, a, grad_hy, grad_cy, gates, cx, grad_gates, grad_cx)
    return (grad_gates @ weight_ih, grad_gates @ weight_hh, grad_cx, grad_gates.T @ input, grad_gates.T @ hx,
            grad_gates.sum(axis=0))


def _layer_args(input, weight_ih, weight_hh, reverse, lengths):
    return _C.LstmLayerArgs(input.shape, weight_ih.shape, weight_hh.shape, bool(reverse),
                            None if lengths is None else [int(n) for n in lengths])


def lstm_layer_forward(input, h0, c0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse=False,
                       lengths=None, variant="auto", save=True):
    """One LSTM layer and direction over a whole sequence.

    input (T, B, I); h0, c0 (B, H); weight_ih (4H, I); weight_hh (4H, H); biases (4H,) or None.
    ``lengths``: None, or B ints in [1, T] (host values): sequence b is live for its first
    lengths[b] steps; later outputs are zero and its state stays that of its last live step.
    ``reverse``: run each sequence from its own last live step back to step 0.
    ``variant`` (CUDA only): "auto", "step" or "persistent" (see the module docstring).

    Returns ``(output, hn, cn, saved)``: output (T, B, H), hn and cn (B, H), and ``saved`` (what
    :func:`lstm_layer_backward` needs: gate activations (T, B, 4H), the c and h each step started
    from (T, B, H) each). ``save=False`` (inference) stores none of them on the CPU and returns
    ``saved=None``.
    """
    if variant not in LSTM_LAYER_VARIANTS:
        raise ValueError(f"lstm_layer_forward: variant must be one of {LSTM_LAYER_VARIANTS}, got {variant!r}")
    device = backend.device_of(input)
    xp = backend.array_module(device)
    a = _layer_args(input, weight_ih, weight_hh, reverse, lengths)
    dt = input.dtype
    out = _new(xp, a.out_shape, dt)
    hn, cn = _new(xp, a.state_shape, dt), _new(xp, a.state_shape, dt)
    if device == "cpu":
        gates, c_prev, h_prev = ((_new(xp, a.gates_shape, dt), _new(xp, a.saved_state_shape, dt),
                                  _new(xp, a.saved_state_shape, dt)) if save else (None, None, None))
        backend.launch("lstm_layer_forward", device, a, input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh,
                       out, hn, cn, gates, c_prev, h_prev)
        return out, hn, cn, ((gates, c_prev, h_prev) if save else None)

    c_prev, h_prev = _new(xp, a.saved_state_shape, dt), _new(xp, a.saved_state_shape, dt)

    T, B, H = a.seq_len, a.batch, a.hidden_size
    gates = (input.reshape(T * B, a.input_size) @ weight_ih.T).reshape(a.gates_shape)
    hn[...] = h0
    cn[...] = c0
    lens = None if lengths is None else xp.asarray(a.lengths, dtype=xp.int64)
    if variant == "persistent" or (variant == "auto" and _C.cuda.lstm_layer_persistent_fits(a)):
        h_buf = _new(xp, (2, B, H), dt)
        backend.launch("lstm_layer_persistent_forward", device, a, weight_hh, bias_ih, bias_hh, lens, gates, out,
                       hn, cn, c_prev, h_prev, h_buf)
    else:
        rec = _new(xp, (B, 4 * H), dt)
        w_hh_t = weight_hh.T
        for s in range(T):
            xp.matmul(hn, w_hh_t, out=rec)
            backend.launch("lstm_layer_step_forward", device, a, s, rec, bias_ih, bias_hh, lens, gates, out, hn, cn,
                           c_prev, h_prev)
    return out, hn, cn, (gates, c_prev, h_prev)


def lstm_layer_backward(grad_output, grad_hn, grad_cn, input, weight_ih, weight_hh, saved, reverse=False,
                        lengths=None):
    """Backpropagation through time for :func:`lstm_layer_forward` (same ``reverse``/``lengths``).

    grad_output (T, B, H), grad_hn and grad_cn (B, H); ``saved`` as returned by the forward.
    Returns ``(grad_input, grad_h0, grad_c0, grad_weight_ih, grad_weight_hh, grad_bias)``;
    grad_bias (4H,) is the gradient of bias_ih and of bias_hh alike.
    """
    device = backend.device_of(input)
    xp = backend.array_module(device)
    a = _layer_args(input, weight_ih, weight_hh, reverse, lengths)
    gates, c_prev, h_prev = saved
    dt = input.dtype
    grad_h0, grad_c0 = _new(xp, a.state_shape, dt), _new(xp, a.state_shape, dt)
    if device == "cpu":
        grads = (_new(xp, input.shape, dt), grad_h0, grad_c0, _new(xp, weight_ih.shape, dt),
                 _new(xp, weight_hh.shape, dt), _new(xp, (4 * a.hidden_size,), dt))
        backend.launch("lstm_layer_backward", device, a, grad_output, grad_hn, grad_cn, input, weight_ih,
                       weight_hh, gates, c_prev, h_prev, *grads)
        return grads

    T, B, I, H = a.seq_len, a.batch, a.input_size, a.hidden_size
    lens = None if lengths is None else xp.asarray(a.lengths, dtype=xp.int64)
    grad_c0[...] = grad_cn
    grad_gates = _new(xp, a.gates_shape, dt)
    grad_step = _new(xp, (B, 4 * H), dt)
    for s in range(T - 1, -1, -1):
        # grad_h0 holds the previous iteration's product: the dh of step s for rows live at s + 1.
        backend.launch("lstm_layer_step_backward", device, a, s, grad_output, grad_hn, gates, c_prev, lens, grad_h0,
                       grad_c0, grad_gates, grad_step)
        xp.matmul(grad_step, weight_hh, out=grad_h0)
    dz = grad_gates.reshape(T * B, 4 * H)
    grad_input = (dz @ weight_ih).reshape(T, B, I)
    return (grad_input, grad_h0, grad_c0, dz.T @ input.reshape(T * B, I), dz.T @ h_prev.reshape(T * B, H),
            dz.sum(axis=0))
