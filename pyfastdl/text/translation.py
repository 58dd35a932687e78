"""Translation plumbing shared by every encoder-decoder model: batches, decoding, metrics, plots.

The pieces a translation recipe (``pyfastdl.models.translation``) strings together:

* :class:`TranslationDataset` holds sentence pairs as id arrays; :func:`collate_translation` pads a
  list of them into one batch ``(src, src_lengths, tgt_in, tgt_out)``::

      src         (N, S) int64   source ids followed by <eos>, padded with <pad> (id 0)
      src_lengths (N,)   int64   tokens per source row, <eos> included
      tgt_in      (N, T) int64   <bos> followed by the target ids     (the decoder's input)
      tgt_out     (N, T) int64   the target ids followed by <eos>     (what it must predict)

* :func:`translate` decodes a batch with greedy or beam search through the *decoding protocol*
  every translation model implements::

      model(src, src_lengths, tgt_in)       -> logits (N, T, V)   (teacher forcing)
      model.encode(src, src_lengths)        -> state             (Tensors, batch first)
      model.decode_step(tokens, state)      -> (logits (n, V), new state)
                                               tokens: (n, t) prefixes starting with <bos>; the
                                               state may carry caches (hidden states, past inputs)
      model.select_state(state, rows)       (optional; default :func:`select_rows`: keep
                                               ``rows`` (an int64 Tensor) of every Tensor in the
                                               state along axis 0 -- override for states that are
                                               not batch-first, e.g. LSTM (layers, n, h))
      model.alignment(src, src_lengths, tgt_in) (optional) -> attention (N, T, S), rows sum to 1

* :func:`exact_match` and :func:`corpus_bleu` (sacrebleu) score decoded sentences;
  :func:`plot_alignment` draws an attention heat map; :func:`sinusoidal_positions` is the
  Transformer's fixed position table.
"""

from __future__ import annotations

import math

import numpy as np

from ..data.translation import Vocab, detokenize, pad_sequences
from ..train.metrics import Metric
from .decoding import beam_search, greedy_search

__all__ = ["TranslationDataset", "collate_translation", "translate", "exact_match", "corpus_bleu",
           "plot_alignment", "sinusoidal_positions", "TokenAccuracy", "select_rows"]


class TranslationDataset:
    """Tokenised sentence pairs as id arrays: item i is ``(source ids + <eos>, target ids + <eos>)``.
    ``pairs``: list of (source tokens, target tokens); unknown tokens map to <unk>."""

    def __init__(self, pairs, src_vocab: Vocab, tgt_vocab: Vocab):
        self.pairs = list(pairs)
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self._items = [(src_vocab.encode(s), tgt_vocab.encode(t)) for s, t in self.pairs]

    def __len__(self):
        return len(self._items)

    def __getitem__(self, i):
        return self._items[i]


def collate_translation(samples):
    """A list of (source ids, target ids) -> ``(src, src_lengths, tgt_in, tgt_out)`` (module doc)."""
    src, src_lengths = pad_sequences([s for s, _ in samples])
    tgt_in, _ = pad_sequences([np.concatenate([[Vocab.BOS], t[:-1]]) for _, t in samples])
    tgt_out, _ = pad_sequences([t for _, t in samples])
    return src, src_lengths, tgt_in, tgt_out


def select_rows(state, rows):
    """Keep ``rows`` (in order) along axis 0 of every Tensor inside ``state`` (dicts, tuples, lists)."""
    from ..tensor import Tensor

    if isinstance(state, Tensor):
        return state[rows]
    if isinstance(state, dict):
        return {k: select_rows(v, rows) for k, v in state.items()}
    if isinstance(state, (tuple, list)):
        return type(state)(select_rows(v, rows) for v in state)
    return state


def translate(model, src, src_lengths, device="cpu", beam_size=1, alpha=0.6, max_len=None):
    """Decode a padded batch: ``src`` (N, S), ``src_lengths`` (N,) numpy int64 -> list of N id lists
    (without <bos>/<eos>). ``beam_size`` 1 is greedy search; more is beam search with GNMT's length
    penalty ``alpha``. ``max_len`` defaults to 2 * longest source + 10. Runs without a graph in eval mode."""
    from .. import no_grad, tensor
    from ..nn import functional as F

    src, src_lengths = np.asarray(src), np.asarray(src_lengths)
    max_len = max_len or 2 * int(src_lengths.max()) + 10
    select = getattr(model, "select_state", None) or select_rows
    was_training = model.training
    model.eval()

    def step(tokens, state):
        logits, state = model.decode_step(tensor(tokens, device=device), state)
        return F.log_softmax(logits, dim=-1).cpu().numpy(), state

    try:
        with no_grad():
            state = model.encode(tensor(src, device=device), tensor(src_lengths, device=device))
            if beam_size == 1:
                return greedy_search(step, state, len(src), Vocab.BOS, Vocab.EOS, max_len)
            return beam_search(step, lambda s, rows: select(s, tensor(rows, device=device)), state, len(src),
                               Vocab.BOS, Vocab.EOS, max_len, beam_size=beam_size, alpha=alpha)
    finally:
        model.train(was_training)


def exact_match(hypotheses, references) -> float:
    """Fraction of hypotheses (token lists) identical to their reference."""
    if len(hypotheses) != len(references):
        raise ValueError(f"exact_match: {len(hypotheses)} hypotheses but {len(references)} references")
    return sum(list(h) == list(r) for h, r in zip(hypotheses, references)) / max(len(references), 1)


def corpus_bleu(hypotheses, references) -> float:
    """Corpus BLEU (0..100) of detokenised sentences through sacrebleu (its 13a tokenizer, one
    reference per sentence). Hypotheses and references are token lists."""
    import sacrebleu

    hyp = [detokenize(h) for h in hypotheses]
    ref = [detokenize(r) for r in references]
    return float(sacrebleu.corpus_bleu(hyp, [ref]).score)


class TokenAccuracy(Metric):
    """Teacher-forced next-token accuracy over non-<pad> targets:
    output (N, T, V) logits, target (N, T) ids."""

    def __init__(self, ignore_index=Vocab.PAD):
        self.ignore_index = ignore_index
        self.reset()

    def reset(self):
        self.correct, self.count = 0, 0

    def update(self, output, target):
        valid = target != self.ignore_index
        self.correct += int(((output.argmax(-1) == target) & valid).sum())
        self.count += int(valid.sum())

    def compute(self):
        return self.correct / self.count if self.count else float("nan")


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """Vaswani et al.'s position table (length, dim) float32: PE[p, 2i] = sin(p / 10000^(2i/dim)),
    PE[p, 2i+1] = cos(p / 10000^(2i/dim))."""
    pos = np.arange(length)[:, None]
    freq = np.exp(-math.log(10000.0) * np.arange(0, dim, 2) / dim)
    table = np.zeros((length, dim))
    table[:, 0::2] = np.sin(pos * freq)
    table[:, 1::2] = np.cos(pos * freq)[:, : dim // 2]
    return table.astype(np.float32)


def plot_alignment(weights, source_tokens, target_tokens, path, title=""):
    """Save an attention heat map: ``weights`` (len(target_tokens), len(source_tokens)), row i the
    attention of target token i over the source tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import textwrap

    weights = np.asarray(weights)
    title_lines = textwrap.wrap(title, 40) if title else []
    # wide enough for the tokens and a colour scale; tall enough for the output tokens and the title
    fig, ax = plt.subplots(figsize=(max(4.0, 2 + 0.5 * len(source_tokens)),
                                    max(3.0, 1.5 + 0.4 * len(target_tokens) + 0.3 * len(title_lines))))
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=max(float(weights.max()), 1e-9), aspect="auto")
    fig.colorbar(image, ax=ax, label="attention weight")
    ax.set_xticks(range(len(source_tokens)), source_tokens, rotation=60, ha="right")
    ax.set_yticks(range(len(target_tokens)), target_tokens)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title_lines:
        ax.set_title("\n".join(title_lines))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
