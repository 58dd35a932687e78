"""LSTMCell and LSTM over ``nn.functional``'s fused LSTM ops, with torch.nn's parameter names,
shapes and initialisation (every weight and bias U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))).
Gate layout along 4H: input, forget, cell (g), output, as torch."""

from __future__ import annotations

import math
import numbers

from .. import functional as F
from .. import init
from . import _factory
from .module import Module

__all__ = ["LSTMCell", "LSTM"]


def _reset_uniform(module):
    bound = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0
    for p in module.parameters():
        init.uniform_(p, -bound, bound)


class LSTMCell(Module):
    """One step: (input (B, I) or (I,), (h, c) each (B, H), or None for zeros) -> (h', c').
    Parameters weight_ih (4H, I), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,)."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        self.input_size = input_size = _factory.size(self, "input_size", input_size)
        self.hidden_size = hidden_size = _factory.size(self, "hidden_size", hidden_size)
        self.bias = bias
        self.weight_ih = _factory.parameter(self, (4 * hidden_size, input_size), device, dtype)
        self.weight_hh = _factory.parameter(self, (4 * hidden_size, hidden_size), device, dtype)
        for name in ("bias_ih", "bias_hh"):
            self.register_parameter(name, _factory.parameter(self, (4 * hidden_size,), device, dtype) if bias else None)
        self.reset_parameters()

    def reset_parameters(self):
        _reset_uniform(self)

    def forward(self, input, hx=None):  # noqa: A002
        return F.lstm_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class LSTM(Module):
    """Multi-layer, optionally bidirectional LSTM.

    forward(input, hx=None, lengths=None): input (T, B, I) ((B, T, I) if batch_first, (T, I)
    unbatched); hx = (h_0, c_0) each (num_layers * D, B, H) or None for zeros; ``lengths`` (B ints,
    optional) the valid steps of each padded sequence (what torch expresses with a PackedSequence).
    Returns output (T, B, D * H) and (h_n, c_n). ``dropout`` applies to the outputs of every layer
    but the last, in training. Parameters per layer k and direction (suffix "_reverse"):
    weight_ih_l{k} (4H, I_k), weight_hh_l{k} (4H, H), bias_ih_l{k}, bias_hh_l{k} (4H,).
    Not supported: proj_size."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        if proj_size:
            raise NotImplementedError("LSTM: proj_size is not supported")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"LSTM: dropout should be a number in range [0, 1), got {dropout!r}")
        input_size = _factory.size(self, "input_size", input_size)
        hidden_size = _factory.size(self, "hidden_size", hidden_size, 1)
        num_layers = _factory.size(self, "num_layers", num_layers, 1)
        directions = 2 if bidirectional else 1
        per_direction = 4 * hidden_size * (hidden_size + 2 * bias)  # weight_hh, bias_ih, bias_hh
        _factory.check_memory(self, directions * (4 * hidden_size * input_size + per_direction
                                                  + (num_layers - 1) * (4 * hidden_size * hidden_size * directions
                                                                        + per_direction)), dtype)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self._flat_weights_names = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for suffix in ("", "_reverse")[:directions]:
                shapes = {"weight_ih": (4 * hidden_size, layer_input), "weight_hh": (4 * hidden_size, hidden_size)}
                if bias:
                    shapes.update(bias_ih=(4 * hidden_size,), bias_hh=(4 * hidden_size,))
                for kind, shape in shapes.items():
                    name = f"{kind}_l{layer}{suffix}"
                    self.register_parameter(name, _factory.parameter(self, shape, device, dtype))
                    self._flat_weights_names.append(name)
        self.reset_parameters()

    def reset_parameters(self):
        _reset_uniform(self)

    def forward(self, input, hx=None, lengths=None):  # noqa: A002
        params = [getattr(self, name) for name in self._flat_weights_names]
        return F.lstm(input, hx, params, self.num_layers, self.bidirectional, self.batch_first, lengths,
                      self.dropout, self.training)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s
