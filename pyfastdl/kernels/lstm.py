"""Raw LSTM kernels on numpy (CPU) or cupy (CUDA) arrays: no autograd.

Gate layout is PyTorch's: the 4H axis of every weight, bias and gate buffer holds the blocks
i, f, g, o. A sequence is (seq_len, batch, features).

* :func:`lstm_cell_forward` / :func:`lstm_cell_backward`: one step (the fused cell).
* :func:`lstm_layer_forward` / :func:`lstm_layer_backward`: one layer and one direction over a
  whole sequence, with optional per-sequence ``lengths`` and ``reverse``.

Each call is one compiled kernel. ``variant="fast"`` (default): on the CPU (csrc/cpu/lstm.cpp) the
per-step products run on a small-batch matrix kernel with the weights packed once per sequence
(csrc/cpu/batch_gemm.h), the big products of the backward on OpenBLAS, compiled per instruction
set with the widest one the CPU supports running (``pyfastdl._C.cpu.get_isa()``); on the GPU the
layer forward is one cooperative kernel for all steps that keeps ``weight_hh`` in shared memory
where it fits (kernels/lstm.cu), and otherwise the step loop. ``variant="reference"``: on the CPU
the textbook recurrence in plain loops (csrc/cpu/lstm_reference.cpp); on the GPU the step loop
(one cuBLAS product through cupy and one fused pointwise kernel per step).
``out=`` takes the tuple of output arrays, in the order returned (the layer forward: output, hn, cn).
The Args are cached (kernels._dispatch.cached), so the backward reuses the forward's.
"""

from __future__ import annotations

from .. import backend
from .._core import _C
from . import _dispatch

__all__ = [
    "lstm_cell_forward",
    "lstm_cell_backward",
    "lstm_layer_forward",
    "lstm_layer_backward",
]

_cell_args = _dispatch.cached(_C.LstmCellArgs)
_layer_args_of = _dispatch.cached(_C.LstmLayerArgs)


def _shapes(op, input, weight_ih, weight_hh, **others):
    """The shapes of input, weight_ih and weight_hh, after checking that they and ``others`` (the
    arrays a call reads before the binding sees them) are arrays: a TypeError naming the argument."""
    for name, a in dict(input=input, weight_ih=weight_ih, weight_hh=weight_hh, **others).items():
        if not backend.is_array(a):
            raise TypeError(f"{op}: {name} must be a numpy or cupy array, got {type(a).__name__}")
    return tuple(input.shape), tuple(weight_ih.shape), tuple(weight_hh.shape)


def _layer_args(input, weight_ih, weight_hh, reverse, lengths, **others):
    if lengths is not None and (getattr(lengths, "ndim", 1) != 1 or isinstance(lengths, (str, bytes))):
        raise ValueError(f"lstm: lengths must be a 1-D sequence of B ints, got "
                         f"{getattr(lengths, 'shape', type(lengths).__name__)}")
    return _layer_args_of(*_shapes("lstm", input, weight_ih, weight_hh, **others), bool(reverse),
                          None if lengths is None else tuple(_dispatch.int_arg("lstm", "lengths", n) for n in lengths))


def lstm_cell_forward(input, hx, cx, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *, variant="fast",
                      out=None):
    """One LSTM step.

    input (B, I), hx and cx (B, H), weight_ih (4H, I), weight_hh (4H, H), biases (4H,) or None.
    Returns ``(hy, cy, gates)``: the new state (B, H) each, and the gate activations (B, 4H) that
    :func:`lstm_cell_backward` needs.
    """
    a = _cell_args(*_shapes("lstm_cell", input, weight_ih, weight_hh))
    hy, cy, gates = _dispatch.outputs(out, input, a.state_shape, a.state_shape, a.gates_shape)
    _dispatch.launch("lstm_cell_forward", variant, a, input, hx, cx, weight_ih, weight_hh, bias_ih, bias_hh, hy, cy,
                     gates)
    return hy, cy, gates


def lstm_cell_backward(grad_hy, grad_cy, gates, input, hx, cx, weight_ih, weight_hh, *, variant="fast", out=None):
    """Gradients of :func:`lstm_cell_forward` from grad_hy, grad_cy (B, H).

    Returns ``(grad_input, grad_hx, grad_cx, grad_weight_ih, grad_weight_hh, grad_bias)``;
    grad_bias (4H,) is the gradient of bias_ih and of bias_hh alike.
    """
    a = _cell_args(*_shapes("lstm_cell", input, weight_ih, weight_hh, grad_hy=grad_hy))
    grads = _dispatch.outputs(out, grad_hy, input.shape, a.state_shape, a.state_shape, weight_ih.shape,
                              weight_hh.shape, (4 * a.hidden_size,))
    _dispatch.launch("lstm_cell_backward", variant, a, grad_hy, grad_cy, gates, input, hx, cx, weight_ih, weight_hh,
                     *grads)
    return grads


def lstm_layer_forward(input, h0, c0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse=False,
                       lengths=None, save=True, *, variant="fast", out=None):
    """One LSTM layer and direction over a whole sequence.

    input (T, B, I); h0, c0 (B, H); weight_ih (4H, I); weight_hh (4H, H); biases (4H,) or None.
    ``lengths``: None, or B ints in [1, T] (host values): sequence b is live for its first
    lengths[b] steps; later outputs are zero and its state stays that of its last live step.
    ``reverse``: run each sequence from its own last live step back to step 0.

    Returns ``(output, hn, cn, saved)``: output (T, B, H), hn and cn (B, H), and ``saved`` (what
    :func:`lstm_layer_backward` needs: gate activations (T, B, 4H), the c and h each step started
    from (T, B, H) each). ``save=False`` (inference) keeps none of them and returns ``saved=None``.
    """
    a = _layer_args(input, weight_ih, weight_hh, reverse, lengths)
    output, hn, cn = _dispatch.outputs(out, input, a.out_shape, a.state_shape, a.state_shape)
    saved = (_dispatch.outputs(None, input, a.gates_shape, a.saved_state_shape, a.saved_state_shape) if save
             else (None, None, None))
    _dispatch.launch("lstm_layer_forward", variant, a, input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, output,
                     hn, cn, *saved)
    return output, hn, cn, (saved if save else None)


def lstm_layer_backward(grad_output, grad_hn, grad_cn, input, weight_ih, weight_hh, saved, reverse=False,
                        lengths=None, *, variant="fast", out=None):
    """Backpropagation through time for :func:`lstm_layer_forward` (same ``reverse``/``lengths``).

    grad_output (T, B, H), grad_hn and grad_cn (B, H); ``saved`` as returned by the forward.
    Returns ``(grad_input, grad_h0, grad_c0, grad_weight_ih, grad_weight_hh, grad_bias)``;
    grad_bias (4H,) is the gradient of bias_ih and of bias_hh alike.
    """
    a = _layer_args(input, weight_ih, weight_hh, reverse, lengths, grad_output=grad_output)
    grads = _dispatch.outputs(out, grad_output, input.shape, a.state_shape, a.state_shape, weight_ih.shape,
                              weight_hh.shape, (4 * a.hidden_size,))
    _dispatch.launch("lstm_layer_backward", variant, a, grad_output, grad_hn, grad_cn, input, weight_ih, weight_hh,
                     *saved, *grads)
    return grads
