"""LSTM on the long-time-lag tasks of Hochreiter & Schmidhuber, "Long Short-Term Memory", Neural
Computation 9(8), 1997, and a character-level language model.

Three models, each an ``nn.LSTM`` with a linear read-out:

* :class:`AddingLSTM` -- the adding problem (the paper's Experiment 4): read a sequence of
  (value, marker) pairs, output the sum of the two marked values from the last hidden state.
* :class:`ReberLSTM` -- the embedded Reber grammar (Experiment 1): read a string one symbol at a
  time (one-hot, the paper's "local" input coding) and predict the next symbol at every step.
* :class:`CharLSTM` -- a character-level language model (Graves 2013; Karpathy 2015): embedding,
  stacked LSTM, softmax over characters; sampled with a temperature.

Departures from the paper:
  * The cell is today's LSTM (``nn.LSTM``, Gers et al. 2000 / Graves 2005): it has a forget gate
    and no peepholes, its gates see the whole hidden state, and it is trained by full
    back-propagation through time; the paper's cell had input and output gates only, "memory
    cell blocks", and a truncated gradient. The forget-gate biases start at 1 (Gers et al. 2000;
    Jozefowicz et al. 2015) so that cells remember by default at the start of training.
  * Training uses Adam on minibatches with a cross-entropy (Reber, characters) or squared-error
    (adding) loss, not online gradient descent with the paper's learning rates.
  * The adding problem is the modern variant (values in [0, 1], one marker in each half, plain
    sum; see :func:`pyfastdl.data.sequences.adding_problem`), not the paper's values in [-1, 1]
    with target 0.5 + (X1 + X2) / 4.
  * Reber: the target is the symbol that actually comes next (cross-entropy), and success is
    measured as the fraction of predictions (argmax) the grammar allows, on strings never seen in
    training -- the paper's criterion was that the possible next symbols are always the most
    active outputs, over training and test sets.

The recipes ``lstm-adding``, ``lstm-reber`` and ``char-lm`` train them through the shared loop;
``pyfastdl sample RUN`` samples text from a char-lm checkpoint.
"""

from __future__ import annotations

import os

import numpy as np

from .. import nn
from ..data import sequences as seqdata
from ..tasks.language_modelling import LanguageModelRecipe
from ..train.metrics import Metric
from ..train.options import add_option
from ..train.recipe import Recipe

__all__ = ["AddingLSTM", "ReberLSTM", "CharLSTM", "init_forget_bias", "AddingRecipe", "ReberRecipe",
           "CharLMRecipe", "sample_checkpoint"]


def init_forget_bias(lstm, value: float = 1.0):
    """Set the forget-gate block (the second quarter of the 4H gate axis) of every ``bias_ih`` of
    an ``nn.LSTM`` or ``nn.LSTMCell`` to ``value`` and of ``bias_hh`` to 0, so that the gate starts
    at sigmoid(value). Returns the module."""
    from .. import no_grad

    H = lstm.hidden_size
    with no_grad():
        for name, p in lstm.named_parameters():
            if name.startswith("bias_"):
                p[H:2 * H] = value if name.startswith("bias_ih") else 0.0
    return lstm


class AddingLSTM(nn.Module):
    """(N, T, input_size) sequences -> (N,) predicted sums, read from the last hidden state."""

    def __init__(self, hidden_size: int = 64, input_size: int = 2):
        super().__init__()
        self.lstm = init_forget_bias(nn.LSTM(input_size, hidden_size, batch_first=True))
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return self.head(h[-1]).reshape(-1)


class ReberLSTM(nn.Module):
    """One-hot symbols (N, T, num_symbols) with their lengths (N,) -> next-symbol scores
    (N, T, num_symbols) (steps past a sequence's length score from a zero hidden state)."""

    def __init__(self, num_symbols: int = len(seqdata.REBER_SYMBOLS), hidden_size: int = 32):
        super().__init__()
        self.lstm = init_forget_bias(nn.LSTM(num_symbols, hidden_size, batch_first=True))
        self.head = nn.Linear(hidden_size, num_symbols)

    def forward(self, x, lengths=None):
        out, _ = self.lstm(x, lengths=lengths)
        return self.head(out)


class CharLSTM(nn.Module):
    """Character ids (N, T) -> next-character scores (N, T, vocab_size).

    :meth:`step` also takes and returns the LSTM state, for sampling one character at a time."""

    def __init__(self, vocab_size: int, embedding_dim: int = 64, hidden_size: int = 256, num_layers: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = init_forget_bias(nn.LSTM(embedding_dim, hidden_size, num_layers, batch_first=True,
                                             dropout=dropout))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def step(self, ids, state=None):
        """ids (N, T), state (h, c) each (num_layers, N, H) or None -> (scores (N, T, V), state)."""
        out, state = self.lstm(self.embed(ids), state)
        return self.head(self.drop(out)), state

    def forward(self, ids):
        return self.step(ids)[0]


# ---- metrics ----

class MeanSquaredError(Metric):
    """Mean of (output - target)^2 over all elements."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.total, self.count = 0.0, 0

    def update(self, output, target):
        self.total += float(((np.asarray(output, np.float64) - target) ** 2).sum())
        self.count += np.size(target)

    def compute(self):
        return self.total / self.count if self.count else float("nan")


class LegalNextSymbol(Metric):
    """Reber grammar: the fraction of steps whose predicted (argmax) next symbol is one the grammar
    allows after the prefix read so far. output (N, T, 7) scores, target (N, T) next-symbol ids
    (-100 past each string's end), from which the strings themselves are rebuilt."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.legal, self.count = 0, 0

    def update(self, output, target):
        predicted = output.argmax(-1)
        for row, string in zip(predicted, seqdata.reber_strings_from_targets(target)):
            allowed = seqdata.reber_legal_next(string)
            self.legal += sum(seqdata.REBER_SYMBOLS[p] in ok for p, ok in zip(row, allowed))
            self.count += len(allowed)

    def compute(self):
        return self.legal / self.count if self.count else float("nan")


class ReberBranchAccuracy(Metric):
    """Embedded Reber grammar: the fraction of strings whose symbol before last -- the T or P that
    must match the second symbol, the long time lag -- is predicted correctly."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.correct, self.count = 0, 0

    def update(self, output, target):
        lengths = (target != seqdata.IGNORE).sum(1)
        rows = np.arange(len(target))
        at = lengths - 2  # the step that reads the inner E and must predict the branch symbol
        self.correct += int((output[rows, at].argmax(-1) == target[rows, at]).sum())
        self.count += len(target)

    def compute(self):
        return self.correct / self.count if self.count else float("nan")


# ---- recipes ----

class _LstmTaskRecipe(Recipe):
    """What the three LSTM recipes share: Adam, one kernel thread (their per-step kernels are
    small; on a busy 2-core machine a second OpenMP thread made them several times slower)."""

    def default_hparams(self, args) -> dict:
        return dict(optimizer="adam", weight_decay=0.0, momentum=0.0, schedule="cosine", threads=1)


class AddingRecipe(_LstmTaskRecipe):
    """The adding problem at ``--seq-len`` (default 100): squared-error loss, test MSE as the
    metric (answering the mean scores ~0.167; "solved" is below 0.01). Training, validation and
    test sequences are drawn from disjoint seeds."""

    name = "lstm-adding"
    description = "LSTM (Hochreiter & Schmidhuber 1997) on the adding problem"
    main_metric = "mse"

    def add_arguments(self, parser) -> None:
        add_option(parser, "seq_len", 100, "sequence length T")
        add_option(parser, "hidden", 64, "LSTM units")
        add_option(parser, "train_size", 40_000, "training sequences")
        add_option(parser, "val_size", 2_000, "validation sequences")
        add_option(parser, "test_size", 2_000, "test sequences")

    def default_hparams(self, args) -> dict:
        return dict(super().default_hparams(args), epochs=5, batch_size=64, lr=3e-3)

    def build_model(self, args):
        return AddingLSTM(args.hidden)

    def datasets(self, args) -> dict:
        from ..data import ArrayDataset

        return {name: ArrayDataset(*seqdata.adding_problem(n, args.seq_len, seed=seed))
                for name, n, seed in (("train", args.train_size, 1), ("val", args.val_size, 2),
                                      ("test", args.test_size, 3))}

    def loss_fn(self, output, target):
        from ..nn import functional as F

        return F.mse_loss(output, target)

    def metrics(self) -> dict:
        return {"mse": MeanSquaredError()}

    def predict(self, output):
        return output

    def load_inputs(self, paths, args):
        """.npy arrays of sequences (T, 2) or stacks of them (N, T, 2): values and markers, all of one T."""
        from ..data import load_npy

        arrays = [load_npy(p) for p in paths]
        for path, a in zip(paths, arrays):
            if a.ndim not in (2, 3) or a.shape[-1] != 2:
                raise ValueError(f"{path}: expected a sequence (T, 2) or a stack (N, T, 2), got shape {a.shape}")
        batch = [s for a in arrays for s in (a[None] if a.ndim == 2 else a)]
        if len({len(s) for s in batch}) > 1:
            raise ValueError(f"predict: the sequences differ in length: {sorted({len(s) for s in batch})}")
        return np.stack(batch)

    def prediction_rows(self, inputs, output, names, targets, args, out_dir) -> list[dict]:
        """The predicted sum of each sequence's two marked values (and the true sum where known)."""
        return [{"input": name, "prediction": round(float(p), 4)}
                | ({} if t is None else {"target": round(float(t), 4)})
                for name, p, t in zip(names, self.predict(output), targets)]


class ReberRecipe(_LstmTaskRecipe):
    """The embedded Reber grammar: next-symbol prediction on ``--train-size`` strings, scored on
    ``--val-size`` and ``--test-size`` strings that never occur in training (``legal``: the
    fraction of predicted next symbols the grammar allows; ``branch``: the fraction of strings
    whose long-lag symbol before last is right)."""

    name = "lstm-reber"
    description = "LSTM (Hochreiter & Schmidhuber 1997) on the embedded Reber grammar"
    main_metric = "legal"
    collate_fn = staticmethod(seqdata.collate_reber)

    def add_arguments(self, parser) -> None:
        add_option(parser, "hidden", 32, "LSTM units")
        add_option(parser, "train_size", 4_000, "training strings")
        add_option(parser, "val_size", 1_000, "held-out validation strings")
        add_option(parser, "test_size", 1_000, "held-out test strings")

    def default_hparams(self, args) -> dict:
        return dict(super().default_hparams(args), epochs=20, batch_size=32, lr=1e-2)

    def build_model(self, args):
        return ReberLSTM(hidden_size=args.hidden)

    def datasets(self, args) -> dict:
        train, held = seqdata.reber_split(args.train_size, args.val_size + args.test_size, seed=0)
        return {"train": seqdata.ReberDataset(train), "val": seqdata.ReberDataset(held[args.test_size:]),
                "test": seqdata.ReberDataset(held[: args.test_size])}

    def split_batch(self, batch):
        x, lengths, nxt = batch
        return (x, lengths), nxt

    def loss_fn(self, output, target):
        from ..nn import functional as F

        return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1), ignore_index=seqdata.IGNORE)

    def metrics(self) -> dict:
        return {"legal": LegalNextSymbol(), "branch": ReberBranchAccuracy()}

    def predict(self, output):
        return output.argmax(-1)

    def load_inputs(self, strings, args):
        """Strings of the grammar's symbols (``BTBTSSXSETE``, or any prefix): the model reads each whole."""
        for string in strings:
            if not string or set(string) - set(seqdata.REBER_SYMBOLS):
                raise ValueError(f"predict: {string!r} is not a string of the symbols {seqdata.REBER_SYMBOLS}")
        ids = [np.array([seqdata.REBER_SYMBOLS.index(c) for c in string]) for string in strings]
        x, lengths, _ = seqdata.collate_reber([(i, i) for i in ids])
        return x, lengths

    def prediction_rows(self, inputs, output, names, targets, args, out_dir) -> list[dict]:
        """Per string read, the symbol predicted after each of its prefixes (and the true next symbols
        where known)."""
        x, lengths = inputs
        symbols = seqdata.REBER_SYMBOLS
        rows = []
        for i, (n, p, t) in enumerate(zip(lengths, self.predict(output), targets)):
            row = {"input": "".join(symbols[j] for j in x[i, :n].argmax(-1)),
                   "prediction": "".join(symbols[j] for j in p[:n])}
            if t is not None:
                row["target"] = "".join(symbols[j] for j in t[:n])
            rows.append(row)
        return rows


class CharLMRecipe(_LstmTaskRecipe, LanguageModelRecipe):
    """Character-level language model on ``--text FILE`` (default: the bundled public-domain
    passages, :func:`pyfastdl.data.sequences.default_corpus`). The text is split in order: the
    first 80% for training (windows of ``--seq-len`` characters every ``--stride``), the next 10%
    for validation and the last 10% for testing (non-overlapping windows). Metric: perplexity per
    character. The character set is saved in the checkpoint; ``pyfastdl sample RUN`` samples."""

    name = "char-lm"
    description = "character-level LSTM language model on a text file (default: bundled public-domain text)"

    def add_arguments(self, parser) -> None:
        parser.add_argument("--text", help="a UTF-8 text file (default: the bundled public-domain passages)")
        add_option(parser, "seq_len", 100, "characters per training window")
        parser.add_argument("--stride", type=int, default=25, help="offset between training windows (default 25)")
        add_option(parser, "embed_dim", 64, "character embedding width")
        add_option(parser, "hidden", 256, "LSTM units per layer")
        add_option(parser, "layers", 2, "LSTM layers")
        add_option(parser, "dropout", 0.2, "dropout between layers")

    def default_hparams(self, args) -> dict:
        return dict(super().default_hparams(args), epochs=30, batch_size=32, lr=3e-3)

    def _text(self, args) -> str:
        if args.text is None:
            return seqdata.default_corpus()
        if not os.path.isfile(args.text):
            raise FileNotFoundError(f"--text: no file at {args.text!r}")
        try:
            with open(args.text, encoding="utf-8") as f:
                return f.read()
        except UnicodeDecodeError as e:
            raise ValueError(f"--text: {args.text!r} is not UTF-8 text ({e.reason} at byte {e.start})") from None

    def datasets(self, args) -> dict:
        text = self._text(args)
        if getattr(args, "chars", None) is None:  # a restored checkpoint brings its own
            args.chars = "".join(seqdata.CharVocab.build(text).itos)
        ids = seqdata.CharVocab(args.chars).encode(text)
        a, b = int(0.8 * len(ids)), int(0.9 * len(ids))
        if min(a, b - a, len(ids) - b) <= args.seq_len:
            raise ValueError(f"char-lm: the text ({len(ids)} characters) is too short for --seq-len {args.seq_len}: "
                             f"each of its 10% validation and test parts must be longer than that")
        return {"train": seqdata.TextWindows(ids[:a], args.seq_len, args.stride),
                "val": seqdata.TextWindows(ids[a:b], args.seq_len),
                "test": seqdata.TextWindows(ids[b:], args.seq_len)}

    def build_model(self, args):
        if getattr(args, "chars", None) is None:
            self.datasets(args)
        return CharLSTM(len(args.chars), args.embed_dim, args.hidden, args.layers, args.dropout)

    def checkpoint_metadata(self, args) -> dict:
        return {"chars": args.chars}

    def restore_metadata(self, args, metadata: dict) -> None:
        args.chars = metadata["chars"]

    def predictions(self, model, args, inputs, count, out_dir) -> list[dict]:
        """The likeliest continuation (greedy) of each text in ``inputs`` (``PREDICT_LENGTH``
        characters), or else of the first half of each of ``count`` test windows, with the window's
        second half as the target."""
        if inputs:
            pairs = [(text, None) for text in inputs]
        else:
            test = self.datasets(args)["test"]
            half = args.seq_len // 2
            vocab = seqdata.CharVocab(args.chars)
            pairs = [(vocab.decode(ids[:half]), vocab.decode(ids[half:]))
                     for ids, _ in (test[i] for i in range(min(count, len(test))))]
        rows = []
        for prime, target in pairs:
            length = len(target) if target is not None else PREDICT_LENGTH
            row = {"input": prime, "prediction": continue_text(model, args, prime, length, temperature=0.0)}
            rows.append(row if target is None else dict(row, target=target))
        return rows


#: characters ``pyfastdl predict`` continues a text of the user's by
PREDICT_LENGTH = 80


def continue_text(model, args, prime: str, length: int, temperature: float = 1.0, seed: int | None = 0) -> str:
    """``length`` characters the char-lm ``model`` (of the run ``args``) writes after reading
    ``prime``; ``temperature`` 0 takes the likeliest character each step."""
    from .. import no_grad, tensor
    from ..text.sampling import sample

    vocab = seqdata.CharVocab(args.chars)
    model.eval()

    def step(ids, state):
        scores, state = model.step(tensor(ids, device=args.device), state)
        return scores[:, -1].cpu().numpy()[0], state

    with no_grad():
        return vocab.decode(sample(step, vocab.encode(prime or "\n"), length, temperature, seed))


def sample_checkpoint(path: str, length: int = 200, temperature: float = 1.0, prime: str = "\n",
                      seed: int | None = 0, device: str = "auto") -> str:
    """``length`` characters sampled from the char-lm saved at ``path`` (a run directory or its
    checkpoint), after reading ``prime``; ``temperature`` 0 takes the likeliest character each step."""
    from ..train.loop import CHECKPOINT_NAME, _restore, kernel_threads

    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_NAME)
    recipe, args, model = _restore(path, {"device": device})
    if not isinstance(recipe, CharLMRecipe):
        raise ValueError(f"{path}: a {recipe.name} checkpoint is not a character language model")
    with kernel_threads(getattr(args, "threads", None)):
        return continue_text(model, args, prime, length, temperature, seed)
