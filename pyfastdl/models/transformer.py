"""The Transformer: A. Vaswani, N. Shazeer, N. Parmar, J. Uszkoreit, L. Jones, A. N. Gomez,
L. Kaiser and I. Polosukhin, "Attention is all you need", NeurIPS 2017.

    encoder  x = dropout(embed(src) * sqrt(d_model) + PE)
             N x [ x = LayerNorm(x + dropout(SelfAttn(x, key padding masked)))
                   x = LayerNorm(x + dropout(W2 relu(W1 x))) ]
    decoder  y = dropout(embed(tgt_in) * sqrt(d_model) + PE)
             N x [ y = LayerNorm(y + dropout(SelfAttn(y, causal)))
                   y = LayerNorm(y + dropout(CrossAttn(y, x, key padding masked)))
                   y = LayerNorm(y + dropout(FFN(y))) ]
    logits = y W_out^T   (W_out tied to the target embedding, section 3.4, when shared)

PE is the fixed sinusoidal table (section 3.5). Attention is :class:`pyfastdl.nn.MultiheadAttention`
(batch first; its masks follow torch: ``key_padding_mask`` True = padding, not attended), which runs
``F.scaled_dot_product_attention`` unless attention weights or attention dropout are needed.
``pyfastdl train transformer`` is a small CPU configuration; ``transformer-base`` is the paper's
base model (6 + 6 layers, d_model 512, 8 heads, d_ff 2048, dropout 0.1, label smoothing 0.1, Adam
with the warm-up schedule of section 5.3, 4000 warm-up steps).

Departures from the paper / options:
  * ``norm_first=True`` (``--pre-norm``) puts LayerNorm before each sub-layer (x + f(LN(x))) with
    a final LayerNorm on both stacks (Wang et al. 2019), which trains more stably without warm-up;
    the default is the paper's post-norm.
  * ``share_embeddings`` ties source embedding, target embedding and output projection (the
    paper's shared BPE vocabulary); it needs one vocabulary for both sides, so it is off for the
    number task (English and German words) and the output projection is tied to the target
    embedding only (``tie_output``, on by default).
  * No attention dropout by default (the paper does not use it; ``attention_dropout`` enables it).
  * Decoding is incremental: each step runs only the newest token through the decoder, caching
    every layer's inputs (not the projected keys/values -- a little more work, much less code).
  * Batches are sentences, not ~25,000-token buckets; the defaults for the small model use
    AdamW and the warm-up schedule normalised to a peak rate (``--schedule inverse_sqrt``).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from .. import arange, cat, nn, tensor
from ..nn import functional as F
from ..tasks.translation import TranslationRecipe
from ..train.options import add_option

__all__ = ["Transformer", "TransformerEncoderLayer", "TransformerDecoderLayer", "TransformerRecipe",
           "TransformerBaseRecipe", "padding_mask", "sinusoidal_positions"]


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """Vaswani et al.'s position table (length, dim) float32: PE[p, 2i] = sin(p / 10000^(2i/dim)),
    PE[p, 2i+1] = cos(p / 10000^(2i/dim))."""
    pos = np.arange(length)[:, None]
    freq = np.exp(-math.log(10000.0) * np.arange(0, dim, 2) / dim)
    table = np.zeros((length, dim))
    table[:, 0::2] = np.sin(pos * freq)
    table[:, 1::2] = np.cos(pos * freq)[:, : dim // 2]
    return table.astype(np.float32)


def padding_mask(lengths, max_len: int):
    """(N, max_len) bool Tensor, True where position >= length (padding; not to be attended)."""
    return arange(max_len, device=lengths.device).unsqueeze(0) >= lengths.unsqueeze(1)


class FeedForward(nn.Module):
    """Position-wise W2 dropout(act(W1 x)) (section 3.3); ``activation`` "relu" (the paper's) or
    "gelu" (GPT's and BERT's)."""

    def __init__(self, d_model, d_ff, dropout, activation="relu"):
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"FeedForward: activation must be 'relu' or 'gelu', got {activation!r}")
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.activation = getattr(F, activation)

    def forward(self, x):
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class _Sublayers(nn.Module):
    """Residual sub-layers with LayerNorm after (post-norm, the paper) or before (pre-norm)."""

    def __init__(self, d_model, count, dropout, norm_first):
        super().__init__()
        self.norms = nn.ModuleList([nn.LayerNorm(d_model) for _ in range(count)])
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def residual(self, i, x, fn):
        if self.norm_first:
            return x + self.dropout(fn(self.norms[i](x)))
        return self.norms[i](x + self.dropout(fn(x)))


class TransformerEncoderLayer(nn.Module):
    def __init__(self, d_model, nhead, d_ff, dropout=0.1, attention_dropout=0.0, norm_first=False, activation="relu"):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=attention_dropout, batch_first=True)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.sub = _Sublayers(d_model, 2, dropout, norm_first)

    def forward(self, x, src_mask, attn_mask=None):
        """x (N, S, d_model); src_mask (N, S) bool, True at padding; ``attn_mask``: an additive float
        mask (S, S) or (N * heads, S, S) on the attention scores (e.g. position biases), or None."""
        x = self.sub.residual(0, x, lambda h: self.self_attn(h, h, h, key_padding_mask=src_mask,
                                                          need_weights=False, attn_mask=attn_mask)[0])
        return self.sub.residual(1, x, self.ff)


class TransformerDecoderLayer(nn.Module):
    def __init__(self, d_model, nhead, d_ff, dropout=0.1, attention_dropout=0.0, norm_first=False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=attention_dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, nhead, dropout=attention_dropout, batch_first=True)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.sub = _Sublayers(d_model, 3, dropout, norm_first)

    def forward(self, y, memory, src_mask, need_weights=False, past=None):
        """y (N, T, d_model); memory (N, S, d_model); src_mask (N, S) bool, True at padding.
        ``past``: for incremental decoding, this layer's inputs at all positions so far (N, t, d),
        y being the last of them (N, 1, d); it attends to all of them (no causal mask needed).
        Returns (y, cross-attention weights (N, T, S) averaged over heads, or None)."""
        weights = []

        def self_attn(h):
            if past is None:
                return self.self_attn(h, h, h, need_weights=False, is_causal=True)[0]
            kv = self.sub.norms[0](past) if self.sub.norm_first else past
            return self.self_attn(h, kv, kv, need_weights=False)[0]

        def cross(h):
            out, w = self.cross_attn(h, memory, memory, key_padding_mask=src_mask, need_weights=need_weights)
            weights.append(w)
            return out

        y = self.sub.residual(0, y, self_attn)
        y = self.sub.residual(1, y, cross)
        return self.sub.residual(2, y, self.ff), weights[0]


class Transformer(nn.Module):
    """Encoder-decoder Transformer over token ids; implements the translation decoding protocol
    (:mod:`pyfastdl.tasks.translation`). ``forward(src (N, S), src_lengths (N,), tgt_in (N, T))``
    -> logits (N, T, tgt_vocab)."""

    def __init__(self, src_vocab, tgt_vocab, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                 dim_feedforward=2048, dropout=0.1, attention_dropout=0.0, norm_first=False,
                 share_embeddings=False, tie_output=True, max_len=1024, pad=0):
        super().__init__()
        if share_embeddings and src_vocab != tgt_vocab:
            raise ValueError(f"Transformer: share_embeddings needs one vocabulary for both sides, got sizes "
                             f"{src_vocab} and {tgt_vocab}")
        self.d_model, self.norm_first = d_model, norm_first
        self.src_embed = nn.Embedding(src_vocab, d_model, padding_idx=pad)
        self.tgt_embed = self.src_embed if share_embeddings else nn.Embedding(tgt_vocab, d_model, padding_idx=pad)
        for emb in (self.src_embed, self.tgt_embed):  # N(0, d^-1/2): times sqrt(d) gives unit scale
            nn.init.normal_(emb.weight, std=d_model ** -0.5)
            emb.weight.data[pad] = 0
        self.register_buffer("positions", tensor(sinusoidal_positions(max_len, d_model)), persistent=False)
        self.dropout = nn.Dropout(dropout)
        layer_args = (d_model, nhead, dim_feedforward, dropout, attention_dropout, norm_first)
        self.encoder = nn.ModuleList([TransformerEncoderLayer(*layer_args) for _ in range(num_encoder_layers)])
        self.decoder = nn.ModuleList([TransformerDecoderLayer(*layer_args) for _ in range(num_decoder_layers)])
        self.encoder_norm = nn.LayerNorm(d_model) if norm_first else None
        self.decoder_norm = nn.LayerNorm(d_model) if norm_first else None
        self.output = None if (tie_output or share_embeddings) else nn.Linear(d_model, tgt_vocab, bias=False)

    def _embed(self, embedding, ids, start=0):
        x = embedding(ids) * math.sqrt(self.d_model) + self.positions[start: start + ids.shape[1]]
        return self.dropout(x)

    def encode(self, src, src_lengths):
        """-> state {"memory": (N, S, d_model), "src_mask": (N, S) bool (True at padding)}."""
        mask = padding_mask(src_lengths, src.shape[1])
        x = self._embed(self.src_embed, src)
        for layer in self.encoder:
            x = layer(x, mask)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        return {"memory": x, "src_mask": mask}

    def decode(self, tgt_in, state, need_weights=False):
        """tgt_in (N, T) -> (logits (N, T, V), last layer's cross-attention (N, T, S) or None)."""
        y = self._embed(self.tgt_embed, tgt_in)
        weights = None
        for i, layer in enumerate(self.decoder):
            y, weights = layer(y, state["memory"], state["src_mask"],
                               need_weights=need_weights and i == len(self.decoder) - 1)
        return self._logits(y), weights

    def _logits(self, y):
        if self.decoder_norm is not None:
            y = self.decoder_norm(y)
        return self.output(y) if self.output is not None else F.linear(y, self.tgt_embed.weight)

    def forward(self, src, src_lengths, tgt_in):
        return self.decode(tgt_in, self.encode(src, src_lengths))[0]

    def decode_step(self, tokens, state):
        """tokens (n, t) prefixes -> (logits (n, V) for the next token, state). Incremental: only
        the newest token goes through the decoder; the state caches every layer's inputs at the
        earlier positions (``state["past"]``), which causal attention makes final once computed."""
        t = tokens.shape[1]
        y = self._embed(self.tgt_embed, tokens[:, t - 1:], start=t - 1)
        past = []
        for layer, cached in zip(self.decoder, state.get("past") or [None] * len(self.decoder)):
            inputs = y if cached is None else cat([cached, y], dim=1)
            past.append(inputs)
            y, _ = layer(y, state["memory"], state["src_mask"], past=inputs)
        return self._logits(y)[:, 0], dict(state, past=past)

    def alignment(self, src, src_lengths, tgt_in):
        """The last decoder layer's cross-attention (N, T, S), averaged over heads."""
        return self.decode(tgt_in, self.encode(src, src_lengths), need_weights=True)[1]


# ---- recipes: the small CPU model (default) and the paper's base configuration ----

class TransformerRecipe(TranslationRecipe):
    """A small Transformer for the 2-core CPU: 3 + 3 layers, d_model 128, 4 heads, d_ff 256,
    dropout 0.1, label smoothing 0.1; AdamW (weight decay 0.01) at peak lr 2e-3 with the
    inverse-square-root warm-up schedule (--warmup-steps 200), 2 epochs of 128-sentence batches
    (one epoch gave 93.7% exact match on the validation numbers)."""

    name = "transformer"
    description = "Transformer (Vaswani et al. 2017), small CPU configuration, on English -> German numbers"
    label_smoothing = 0.1
    config = dict(layers=3, d_model=128, heads=4, d_ff=256, dropout=0.1, warmup_steps=200)

    def add_model_arguments(self, parser) -> None:
        c = self.config
        add_option(parser, "layers", c["layers"], "encoder and decoder layers")
        add_option(parser, "d_model", c["d_model"])
        add_option(parser, "heads", c["heads"])
        add_option(parser, "d_ff", c["d_ff"])
        add_option(parser, "dropout", c["dropout"])
        parser.add_argument("--pre-norm", action="store_true", help="LayerNorm before each sub-layer (default: "
                                                                    "after, as in the paper)")
        parser.add_argument("--share-embeddings", action="store_true",
                            help="tie source/target embeddings and output (needs one shared vocabulary)")
        parser.add_argument("--warmup-steps", type=int, default=c["warmup_steps"],
                            help=f"warm-up of the inverse_sqrt schedule (default {c['warmup_steps']})")

    def default_hparams(self, args: argparse.Namespace) -> dict:
        return dict(epochs=2, batch_size=128, lr=2e-3, optimizer="adamw", weight_decay=0.01, momentum=0.9,
                    schedule="inverse_sqrt", threads=1)

    def make_model(self, args, src_vocab_size, tgt_vocab_size) -> Transformer:
        return Transformer(src_vocab_size, tgt_vocab_size, d_model=args.d_model, nhead=args.heads,
                           num_encoder_layers=args.layers, num_decoder_layers=args.layers,
                           dim_feedforward=args.d_ff, dropout=args.dropout, norm_first=args.pre_norm,
                           share_embeddings=args.share_embeddings)


class TransformerBaseRecipe(TransformerRecipe):
    """The paper's base model (Table 3): 6 + 6 layers, d_model 512, 8 heads, d_ff 2048, dropout 0.1,
    label smoothing 0.1; Adam (beta2 0.98 in the paper; here the library's Adam) with the warm-up
    schedule, 4000 warm-up steps and the peak rate d_model^-0.5 * 4000^-0.5 = 7.0e-4 of section 5.3."""

    name = "transformer-base"
    description = "Transformer base (Vaswani et al. 2017): 6 layers, d_model 512, 8 heads, d_ff 2048"
    config = dict(layers=6, d_model=512, heads=8, d_ff=2048, dropout=0.1, warmup_steps=4000)

    def default_hparams(self, args: argparse.Namespace) -> dict:
        return dict(epochs=20, batch_size=64, lr=512 ** -0.5 * 4000 ** -0.5, optimizer="adam", weight_decay=0.0,
                    momentum=0.9, schedule="inverse_sqrt", threads=None)

