"""Seq2seq: I. Sutskever, O. Vinyals and Q. V. Le, "Sequence to sequence learning with neural
networks", NIPS 2014.

    encoder   the source sentence, its words in reverse order (then <eos>), through a stack of
              L LSTM layers; its final states (h, c) of every layer are the summary
    decoder   a second L-layer LSTM that starts from those states and reads the target shifted
              right (<bos> y1 y2 ...), trained with teacher forcing
    output    softmax(Linear(h_t)) over the target vocabulary at every step

Reversing the source puts its first words next to the first target words, which the paper found
made the long dependencies short and the optimisation easy (section 3.3). Decoding is greedy or
beam search (:mod:`pyfastdl.text.decoding`, through :func:`pyfastdl.text.translation.translate`).

Departures from the paper:
  * Sizes for a 2-core CPU and the number task: 2 layers of 128 units and 128-wide embeddings by
    default, not 4 layers of 1000 with 1000-wide embeddings; dropout between layers (Zaremba et
    al. 2014), which the paper did not use.
  * Adam (AdamW) with a one-cycle schedule instead of SGD at 0.7 halved every half epoch, and the
    gradient is not clipped to norm 5; uniform(-1/sqrt(H), 1/sqrt(H)) initialisation (the
    library's LSTM default) rather than uniform(-0.08, 0.08), forget-gate biases at 1.
  * The <eos> of the source stays last after the reversal (it marks "start decoding"); padding is
    handled by the LSTM's per-sequence lengths rather than by bucketing sentences by length.
"""

from __future__ import annotations

import argparse

from .. import arange, nn, where
from ..train.options import add_option
from ..train.recipe import register_recipe
from .lstm import init_forget_bias
from .translation import TranslationRecipe

__all__ = ["Seq2Seq", "reverse_source", "Seq2SeqRecipe"]


def reverse_source(src, src_lengths):
    """Reverse the words of each padded source row, keeping its final <eos> last and its padding
    where it is: row [a, b, c, <eos>, <pad>] -> [c, b, a, <eos>, <pad>]. src (N, S) ids, src_lengths (N,)."""
    pos = arange(src.shape[1], device=src.device).unsqueeze(0)  # (1, S)
    last = src_lengths.unsqueeze(1) - 1  # (N, 1): index of the <eos>
    index = where(pos < last, last - 1 - pos, pos)
    rows = arange(src.shape[0], device=src.device).unsqueeze(1)
    return src[rows, index]


class Seq2Seq(nn.Module):
    """LSTM encoder-decoder over token ids; implements the translation decoding protocol
    (:mod:`pyfastdl.text.translation`). ``forward(src (N, S), src_lengths (N,), tgt_in (N, T))``
    -> logits (N, T, tgt_vocab)."""

    def __init__(self, src_vocab, tgt_vocab, embed_dim=128, hidden=128, num_layers=2, dropout=0.1,
                 reverse=True, pad=0):
        super().__init__()
        self.reverse = reverse
        self.src_embed = nn.Embedding(src_vocab, embed_dim, padding_idx=pad)
        self.tgt_embed = nn.Embedding(tgt_vocab, embed_dim, padding_idx=pad)
        self.encoder = init_forget_bias(nn.LSTM(embed_dim, hidden, num_layers, batch_first=True, dropout=dropout))
        self.decoder = init_forget_bias(nn.LSTM(embed_dim, hidden, num_layers, batch_first=True, dropout=dropout))
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, tgt_vocab)

    def encode(self, src, src_lengths):
        """-> state {"h", "c"}: the encoder's final states, batch first (N, num_layers, hidden)."""
        if self.reverse:
            src = reverse_source(src, src_lengths)
        _, (h, c) = self.encoder(self.dropout(self.src_embed(src)), lengths=src_lengths)
        return {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}

    def decode(self, tgt_in, state):
        """Teacher-forced decoder: tgt_in (n, t) -> (logits (n, t, V), state after the last step)."""
        hx = (state["h"].transpose(0, 1), state["c"].transpose(0, 1))
        out, (h, c) = self.decoder(self.dropout(self.tgt_embed(tgt_in)), hx)
        return self.output(self.dropout(out)), {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}

    def forward(self, src, src_lengths, tgt_in):
        return self.decode(tgt_in, self.encode(src, src_lengths))[0]

    def decode_step(self, tokens, state):
        """tokens (n, t) prefixes -> (logits (n, V) for the next token, the state after reading
        the last token). The state already holds the rest of the prefix."""
        logits, state = self.decode(tokens[:, -1:], state)
        return logits[:, -1], state


class Seq2SeqRecipe(TranslationRecipe):
    """Seq2seq sized for the 2-core CPU: embeddings 128, 2 LSTM layers of 128, dropout 0.1,
    reversed source, AdamW with a one-cycle schedule, batches of 128."""

    name = "seq2seq"
    description = "Seq2seq LSTM (Sutskever et al. 2014) on English -> German numbers"

    def add_model_arguments(self, parser) -> None:
        add_option(parser, "embed_dim", 128)
        add_option(parser, "hidden", 128, "LSTM units per layer")
        add_option(parser, "layers", 2, "LSTM layers in the encoder and the decoder")
        add_option(parser, "dropout", 0.1)
        parser.add_argument("--reverse", action=argparse.BooleanOptionalAction, default=True,
                            help="read the source reversed, as the paper does (--no-reverse: in its own order)")

    def default_hparams(self, args: argparse.Namespace) -> dict:
        return dict(epochs=3, batch_size=128, lr=3e-3, optimizer="adamw", weight_decay=0.01, momentum=0.9,
                    schedule="onecycle", threads=1)

    def make_model(self, args, src_vocab_size, tgt_vocab_size) -> Seq2Seq:
        return Seq2Seq(src_vocab_size, tgt_vocab_size, embed_dim=args.embed_dim, hidden=args.hidden,
                       num_layers=args.layers, dropout=args.dropout, reverse=args.reverse)


register_recipe(Seq2SeqRecipe())
