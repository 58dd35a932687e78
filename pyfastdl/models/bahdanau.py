"""Attention-based translation: D. Bahdanau, K. Cho and Y. Bengio, "Neural machine translation by
jointly learning to align and translate", ICLR 2015.

    encoder    annotations h_j = [forward h_j ; backward h_j]   a bidirectional RNN over the
               source embeddings (N, S, 2H)                                    (section 3.2)
    init       s_0 = tanh(W_init backward h_1)        from the backward RNN's summary (app. A.2.2)
    attention  e_ij = v^T tanh(W_a s_{i-1} + U_a h_j)  additive ("concat") scores,
               alpha_ij = softmax_j(e_ij) over the real source words (padding masked),
               c_i = sum_j alpha_ij h_j                                         (section 3.1)
    decoder    s_i = RNN([E y_{i-1} ; c_i], s_{i-1})
    output     p(y_i) = softmax(W_o tanh(L [s_i ; c_i ; E y_{i-1}]))    a deep output layer

``U_a h_j`` is computed once per sentence; each decoder step then costs one (N, A) projection of
the state, a tanh over (N, S, A) and a weighted sum over the annotations. The model returns its
attention weights (:meth:`BahdanauAttention.forward` with ``need_weights``, :meth:`alignment`) and
``pyfastdl translate --alignment map.png`` draws them.

Departures from the paper:
  * LSTMs instead of GRUs in the encoder and the decoder (the library's fused LSTM; the decoder
    runs one ``LSTMCell`` step at a time because each step's input needs the new context). The
    decoder's cell state starts at zero; its hidden state starts at tanh(W_init backward h_1).
  * The deep output uses tanh of the new state s_i instead of a maxout over s_{i-1}.
  * Sizes for a 2-core CPU and the number task (embeddings 64, 128 units per direction and in the
    decoder, attention width 128) rather than 620 / 1000 / 1000; dropout 0.1 on embeddings and
    before the output layer; AdamW with a one-cycle schedule instead of Adadelta.
"""

from __future__ import annotations

import argparse

from .. import cat, nn, stack, zeros_like
from ..nn import functional as F
from ..train.options import add_option
from ..train.recipe import register_recipe
from .lstm import init_forget_bias
from .transformer import padding_mask
from .translation import TranslationRecipe

__all__ = ["AdditiveAttention", "BahdanauAttention", "BahdanauRecipe"]


class AdditiveAttention(nn.Module):
    """e_j = v^T tanh(W q + U k_j), softmax over j where ``mask`` is False.

    ``project_keys(keys (N, S, K))`` -> U k (N, S, A) (once per sentence);
    ``forward(query (N, Q), projected_keys (N, S, A), values (N, S, D), mask (N, S) bool, True at
    padding)`` -> (context (N, D), weights (N, S)); padded positions get weight exactly 0."""

    def __init__(self, query_size, key_size, attention_size):
        super().__init__()
        self.query = nn.Linear(query_size, attention_size, bias=False)
        self.key = nn.Linear(key_size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def project_keys(self, keys):
        return self.key(keys)

    def forward(self, query, projected_keys, values, mask):
        energy = self.score((projected_keys + self.query(query).unsqueeze(1)).tanh()).squeeze(-1)  # (N, S)
        weights = F.softmax(energy.masked_fill(mask, float("-inf")), dim=-1)
        context = (weights.unsqueeze(1) @ values).squeeze(1)
        return context, weights


class BahdanauAttention(nn.Module):
    """Bidirectional LSTM encoder, additive attention, LSTM decoder over token ids; implements the
    translation decoding protocol (:mod:`pyfastdl.text.translation`). ``forward(src (N, S),
    src_lengths (N,), tgt_in (N, T))`` -> logits (N, T, tgt_vocab)."""

    def __init__(self, src_vocab, tgt_vocab, embed_dim=64, hidden=128, attention_dim=128, dropout=0.1, pad=0):
        super().__init__()
        self.src_embed = nn.Embedding(src_vocab, embed_dim, padding_idx=pad)
        self.tgt_embed = nn.Embedding(tgt_vocab, embed_dim, padding_idx=pad)
        self.encoder = init_forget_bias(nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True))
        self.init_state = nn.Linear(hidden, hidden)
        self.attention = AdditiveAttention(hidden, 2 * hidden, attention_dim)
        self.cell = init_forget_bias(nn.LSTMCell(embed_dim + 2 * hidden, hidden))
        self.deep_output = nn.Linear(hidden + 2 * hidden + embed_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, tgt_vocab)

    def encode(self, src, src_lengths):
        """-> state {"h", "c" (N, H): the decoder state; "annotations" (N, S, 2H); "keys" U_a h_j
        (N, S, A); "mask" (N, S) bool, True at source padding}."""
        annotations, (h_n, _) = self.encoder(self.dropout(self.src_embed(src)), lengths=src_lengths)
        h = self.init_state(h_n[1]).tanh()  # the backward direction's state at the first word
        return {"h": h, "c": zeros_like(h), "annotations": annotations,
                "keys": self.attention.project_keys(annotations), "mask": padding_mask(src_lengths, src.shape[1])}

    def decode(self, tgt_in, state, need_weights=False):
        """Teacher-forced decoding of tgt_in (n, t) -> (logits (n, t, V), state after the last
        step, attention weights (n, t, S) or None)."""
        embedded = self.dropout(self.tgt_embed(tgt_in))  # (n, t, E)
        h, c = state["h"], state["c"]
        states, contexts, weights = [], [], []
        for i in range(tgt_in.shape[1]):
            context, alpha = self.attention(h, state["keys"], state["annotations"], state["mask"])
            h, c = self.cell(cat([embedded[:, i], context], dim=1), (h, c))
            states.append(h)
            contexts.append(context)
            weights.append(alpha)
        s, ctx = stack(states, dim=1), stack(contexts, dim=1)
        logits = self.output(self.dropout(self.deep_output(cat([s, ctx, embedded], dim=2)).tanh()))
        return logits, dict(state, h=h, c=c), (stack(weights, dim=1) if need_weights else None)

    def forward(self, src, src_lengths, tgt_in):
        return self.decode(tgt_in, self.encode(src, src_lengths))[0]

    def decode_step(self, tokens, state):
        """tokens (n, t) prefixes -> (logits (n, V) for the next token, the state after reading
        the last token). The state already holds the rest of the prefix."""
        logits, state, _ = self.decode(tokens[:, -1:], state)
        return logits[:, -1], state

    def alignment(self, src, src_lengths, tgt_in):
        """Attention weights (N, T, S) of teacher-forced decoding; each row sums to 1 over the
        source words and is 0 at source padding."""
        return self.decode(tgt_in, self.encode(src, src_lengths), need_weights=True)[2]


class BahdanauRecipe(TranslationRecipe):
    """Bahdanau attention sized for the 2-core CPU: embeddings 64, a bidirectional LSTM of 128 per
    direction, an LSTM decoder of 128, attention width 128, dropout 0.1, AdamW, one-cycle."""

    name = "bahdanau"
    description = "RNN encoder-decoder with additive attention (Bahdanau et al. 2015) on English -> German numbers"

    def add_model_arguments(self, parser) -> None:
        add_option(parser, "embed_dim", 64)
        add_option(parser, "hidden", 128, "LSTM units per direction and in the decoder")
        parser.add_argument("--attention-dim", type=int, default=128, help="attention width (default 128)")
        add_option(parser, "dropout", 0.1)

    def default_hparams(self, args: argparse.Namespace) -> dict:
        return dict(epochs=2, batch_size=128, lr=3e-3, optimizer="adamw", weight_decay=0.01, momentum=0.9,
                    schedule="onecycle", threads=1)

    def make_model(self, args, src_vocab_size, tgt_vocab_size) -> BahdanauAttention:
        return BahdanauAttention(src_vocab_size, tgt_vocab_size, embed_dim=args.embed_dim, hidden=args.hidden,
                                 attention_dim=args.attention_dim, dropout=args.dropout)


register_recipe(BahdanauRecipe())
