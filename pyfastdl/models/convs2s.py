"""ConvS2S: J. Gehring, M. Auli, D. Grangier, D. Yarats and Y. N. Dauphin, "Convolutional sequence
to sequence learning", ICML 2017.

    embeddings  e_j = w_j + p_j            token plus learned position embedding   (section 3.1)
    encoder     h = Linear(e)              to the convolution width
                L x [ h = (GLU(Conv1d(dropout(h))) + h) * sqrt(0.5) ]              (3.2, 3.4)
                z = Linear(h)              back to the embedding width: the attention keys
                values = (z + e) * sqrt(0.5)                                         (3.3)
    decoder     g = target embeddings; h = Linear(g)
                L x [ c = GLU(CausalConv1d(dropout(h)))          (k-1 pad steps on the left only)
                      d = (Linear(c) + g) * sqrt(0.5)            decoder state + target embedding
                      a = softmax(d z^T)  (source padding masked) multi-step attention, every layer
                      s = (a values) * m sqrt(1/m)               m = source length (3.4)
                      c = (c + Linear(s)) * sqrt(0.5)
                      h = (c + h) * sqrt(0.5) ]
                logits = Linear(dropout(Linear(h)))

Convolutions are :class:`pyfastdl.nn.Conv1d` (the library's convolution kernels) and the gates
``F.glu`` over the channel axis. Padded source positions are set to zero before every encoder
convolution (and in z), so no output depends on what the padding holds.

Departures from the paper:
  * No weight normalisation and no dropout-aware initialisation (section 3.5): the library's
    default initialisation and AdamW train the small configurations well; the scaled residuals
    (sqrt(0.5)) are kept. Gradients of the encoder are not scaled by 1/(2 * attention layers).
  * The optimiser is AdamW with a one-cycle schedule rather than Nesterov SGD with gradient
    clipping; label smoothing 0.1 (the paper uses none; fairseq's recipes do).
  * Position ids count from 0 at the first token of every sentence (fairseq offsets them by the
    padding index); the encoder uses 'same' zero padding, so kernel sizes must be odd.
  * ``alignment()`` averages the attention of all decoder layers (as fairseq reports it).
  * Decoding is incremental: a step computes only the newest position, keeping each decoder
    layer's last k inputs.
"""

from __future__ import annotations

import argparse
import math

from .. import arange, cat, nn
from ..nn import functional as F
from ..train.options import add_option
from ..train.recipe import register_recipe
from .transformer import padding_mask
from .translation import TranslationRecipe

__all__ = ["ConvS2S", "ConvGLU", "ConvS2SRecipe"]

SQRT_HALF = math.sqrt(0.5)


class ConvGLU(nn.Module):
    """Conv1d to 2x the channels, then GLU over the channels: (N, C, T) -> (N, C, T). ``causal``:
    pad k-1 steps on the left only, so output t sees inputs <= t; else 'same' padding (odd k)."""

    def __init__(self, channels, kernel_size, causal):
        super().__init__()
        if not causal and kernel_size % 2 == 0:
            raise ValueError(f"ConvGLU: an encoder (non-causal) kernel size must be odd, got {kernel_size}")
        self.causal, self.kernel_size = causal, kernel_size
        self.conv = nn.Conv1d(channels, 2 * channels, kernel_size, padding=0 if causal else kernel_size // 2)

    def forward(self, x):
        if self.causal:
            x = F.pad(x, (self.kernel_size - 1, 0))
        return F.glu(self.conv(x), dim=1)

    def step(self, window):
        """Causal output at the last position only, from the last <= k inputs (N, C, w) -> (N, C, 1)."""
        return F.glu(self.conv(F.pad(window, (self.kernel_size - window.shape[2], 0))), dim=1)


class ConvS2S(nn.Module):
    """Convolutional encoder-decoder over token ids; implements the translation decoding protocol
    (:mod:`pyfastdl.text.translation`). ``forward(src (N, S), src_lengths (N,), tgt_in (N, T))``
    -> logits (N, T, tgt_vocab)."""

    def __init__(self, src_vocab, tgt_vocab, embed_dim=256, hidden=256, encoder_layers=4, decoder_layers=4,
                 kernel_size=3, dropout=0.1, max_positions=1024, pad=0):
        super().__init__()
        self.src_embed = nn.Embedding(src_vocab, embed_dim, padding_idx=pad)
        self.tgt_embed = nn.Embedding(tgt_vocab, embed_dim, padding_idx=pad)
        self.src_pos = nn.Embedding(max_positions, embed_dim)
        self.tgt_pos = nn.Embedding(max_positions, embed_dim)
        for emb in (self.src_embed, self.tgt_embed, self.src_pos, self.tgt_pos):  # N(0, 0.1) as in the paper
            nn.init.normal_(emb.weight, std=0.1)
        self.src_embed.weight.data[pad] = 0
        self.tgt_embed.weight.data[pad] = 0
        self.dropout = nn.Dropout(dropout)
        self.enc_in = nn.Linear(embed_dim, hidden)
        self.enc_convs = nn.ModuleList([ConvGLU(hidden, kernel_size, causal=False) for _ in range(encoder_layers)])
        self.enc_out = nn.Linear(hidden, embed_dim)
        self.dec_in = nn.Linear(embed_dim, hidden)
        self.dec_convs = nn.ModuleList([ConvGLU(hidden, kernel_size, causal=True) for _ in range(decoder_layers)])
        self.att_in = nn.ModuleList([nn.Linear(hidden, embed_dim) for _ in range(decoder_layers)])
        self.att_out = nn.ModuleList([nn.Linear(embed_dim, hidden) for _ in range(decoder_layers)])
        self.dec_out = nn.Linear(hidden, embed_dim)
        self.output = nn.Linear(embed_dim, tgt_vocab)

    @staticmethod
    def _embed(tokens, positions, ids):
        return tokens(ids) + positions(arange(ids.shape[1], device=ids.device))

    def encode(self, src, src_lengths):
        """-> state {"keys" z (N, S, E), "values" (N, S, E), "src_mask" (N, 1, S) bool (True at
        padding), "scale" m sqrt(1/m) = sqrt(m) (N, 1, 1)}."""
        mask = padding_mask(src_lengths, src.shape[1]).unsqueeze(1)  # (N, 1, S)
        e = self._embed(self.src_embed, self.src_pos, src)
        h = self.enc_in(self.dropout(e)).transpose(1, 2)  # (N, H, S)
        for conv in self.enc_convs:
            h = (conv(self.dropout(h).masked_fill(mask, 0.0)) + h) * SQRT_HALF
        z = self.enc_out(h.transpose(1, 2)).masked_fill(mask.transpose(1, 2), 0.0)
        return {"keys": z, "values": (z + e) * SQRT_HALF, "src_mask": mask,
                "scale": src_lengths.float().sqrt().reshape(-1, 1, 1)}

    def _layer(self, i, c, h, g, state):
        """Attention and residuals of decoder layer i around its convolution output c (N, H, T):
        -> (the next layer's input (N, H, T), attention (N, T, S))."""
        c = c.transpose(1, 2)  # (N, T, H)
        d = (self.att_in[i](c) + g) * SQRT_HALF  # decoder state + target embedding
        a = F.softmax((d @ state["keys"].transpose(1, 2)).masked_fill(state["src_mask"], float("-inf")), dim=-1)
        s = (a @ state["values"]) * state["scale"]
        c = (c + self.att_out[i](s)) * SQRT_HALF
        return (c.transpose(1, 2) + h) * SQRT_HALF, a

    def _logits(self, h):
        return self.output(self.dropout(self.dec_out(h.transpose(1, 2))))

    def decode(self, tgt_in, state, need_weights=False):
        """tgt_in (N, T) -> (logits (N, T, V), attention averaged over layers (N, T, S) or None)."""
        g = self._embed(self.tgt_embed, self.tgt_pos, tgt_in)  # (N, T, E)
        h = self.dec_in(self.dropout(g)).transpose(1, 2)  # (N, H, T)
        total = None
        for i, conv in enumerate(self.dec_convs):
            h, a = self._layer(i, conv(self.dropout(h)), h, g, state)
            if need_weights:
                total = a if total is None else total + a
        return self._logits(h), None if total is None else total * (1.0 / len(self.dec_convs))

    def forward(self, src, src_lengths, tgt_in):
        return self.decode(tgt_in, self.encode(src, src_lengths))[0]

    def decode_step(self, tokens, state):
        """tokens (n, t) prefixes -> (logits (n, V) for the next token, state). Incremental: only
        the newest position is computed; ``state["past"]`` keeps each layer's last k inputs."""
        t = tokens.shape[1]
        g = self.tgt_embed(tokens[:, t - 1:]) + self.tgt_pos(arange(t - 1, t, device=tokens.device))
        h = self.dec_in(g).transpose(1, 2)  # (n, H, 1)
        past = []
        for i, (conv, cached) in enumerate(zip(self.dec_convs, state.get("past") or [None] * len(self.dec_convs))):
            window = h if cached is None else cat([cached, h], dim=2)[:, :, -conv.kernel_size:]
            past.append(window)
            h, _ = self._layer(i, conv.step(window), h, g, state)
        return self._logits(h)[:, 0], dict(state, past=past)

    def alignment(self, src, src_lengths, tgt_in):
        """Attention (N, T, S) averaged over the decoder layers."""
        return self.decode(tgt_in, self.encode(src, src_lengths), need_weights=True)[1]


class ConvS2SRecipe(TranslationRecipe):
    """ConvS2S sized for the 2-core CPU: embeddings 128, convolution width 128, 4 + 4 layers of
    kernel 3, dropout 0.1, label smoothing 0.1, AdamW (peak lr 3e-3, weight decay 0.01) with a one-cycle
    schedule, 2 epochs of 128-sentence batches (one epoch already gave 98% exact match on the
    validation numbers; two fit the 15-minute budget on a heavily loaded 2-core CPU)."""

    name = "convs2s"
    description = "ConvS2S (Gehring et al. 2017) on English -> German numbers"
    label_smoothing = 0.1

    def add_model_arguments(self, parser) -> None:
        add_option(parser, "embed_dim", 128)
        add_option(parser, "hidden", 128, "convolution channels")
        add_option(parser, "layers", 4, "encoder and decoder layers")
        parser.add_argument("--kernel-size", type=int, default=3, help="convolution kernel size, odd (default 3)")
        add_option(parser, "dropout", 0.1)

    def default_hparams(self, args: argparse.Namespace) -> dict:
        return dict(epochs=2, batch_size=128, lr=3e-3, optimizer="adamw", weight_decay=0.01, momentum=0.9,
                    schedule="onecycle", threads=1)

    def make_model(self, args, src_vocab_size, tgt_vocab_size) -> ConvS2S:
        return ConvS2S(src_vocab_size, tgt_vocab_size, embed_dim=args.embed_dim, hidden=args.hidden,
                       encoder_layers=args.layers, decoder_layers=args.layers, kernel_size=args.kernel_size,
                       dropout=args.dropout)


register_recipe(ConvS2SRecipe())
