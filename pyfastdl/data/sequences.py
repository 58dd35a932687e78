"""Sequence tasks generated deterministically (nothing downloaded): the long-time-lag problems of
Hochreiter & Schmidhuber's LSTM paper (1997) and character data for a language model.

* The **adding problem** (:func:`adding_problem`): a sequence of (value, marker) pairs; the target
  is the sum of the two values whose marker is 1. We use the now-standard form (Le, Jaitly &
  Hinton 2015; Arjovsky et al. 2016) rather than the paper's Experiment 4: values uniform in
  [0, 1], one marker in each half of the sequence, target = plain sum. Always answering the mean
  (1.0) scores an MSE of Var(U1 + U2) = 1/6 ~ 0.167.
* The **embedded Reber grammar** (paper's Experiment 1): strings ``B T <reber> T E`` or
  ``B P <reber> P E``; predicting the symbol before last means remembering the second symbol
  across the whole inner string. :func:`reber_legal_next` gives the set of symbols the grammar
  allows after every prefix (the "legal next symbol" metric).
* **Characters** (:func:`default_corpus`, :class:`CharVocab`, :class:`TextWindows`): a text as
  windows of character ids for next-character prediction. The default corpus is a few passages
  of public-domain English prose bundled with the package (``pyfastdl/data/corpus/``).
"""

from __future__ import annotations

import os

import numpy as np

from .dataset import Dataset

__all__ = ["adding_problem", "REBER_SYMBOLS", "reber_string", "embedded_reber_string", "reber_legal_next",
           "reber_split", "ReberDataset", "collate_reber", "reber_strings_from_targets", "IGNORE", "default_corpus",
           "CharVocab", "TextWindows"]


# ---- the adding problem ----

def adding_problem(n: int, length: int = 100, seed: int = 0):
    """``n`` adding-problem sequences of ``length`` steps.

    Returns ``(x, y)``: x (n, length, 2) float32 with x[..., 0] values ~ U(0, 1) and x[..., 1] the
    markers (exactly two 1s per sequence, one in each half), and y (n,) float32 the sum of the two
    marked values. Deterministic for a seed."""
    if n < 1 or length < 2:
        raise ValueError(f"adding_problem: need n >= 1 and length >= 2, got n={n}, length={length}")
    rng = np.random.default_rng(seed)
    half = length // 2
    x = np.zeros((n, length, 2), dtype=np.float32)
    x[..., 0] = rng.random((n, length), dtype=np.float32)
    rows = np.arange(n)
    first = rng.integers(0, half, n)
    second = rng.integers(half, length, n)
    x[rows, first, 1] = 1.0
    x[rows, second, 1] = 1.0
    y = x[rows, first, 0] + x[rows, second, 0]
    return x, y.astype(np.float32)


# ---- the (embedded) Reber grammar ----

#: The grammar's seven symbols; a symbol's index is its id.
REBER_SYMBOLS = "BTSXPVE"

# Reber's finite-state graph after the initial B: state -> [(symbol, next state)], each edge taken
# with probability 1/2; None is the end of the string.
_REBER_GRAPH = {
    1: [("T", 2), ("P", 3)],
    2: [("S", 2), ("X", 4)],
    3: [("T", 3), ("V", 5)],
    4: [("X", 3), ("S", 6)],
    5: [("P", 4), ("V", 6)],
    6: [("E", None)],
}


def reber_string(rng: np.random.Generator) -> str:
    """One string of the plain Reber grammar, e.g. ``"BTSSXXTVVE"``."""
    out, state = ["B"], 1
    while state is not None:
        edges = _REBER_GRAPH[state]
        symbol, state = edges[int(rng.integers(len(edges)))]
        out.append(symbol)
    return "".join(out)


def embedded_reber_string(rng: np.random.Generator) -> str:
    """One string of the embedded Reber grammar: B, T or P, a Reber string, the same T or P, E."""
    branch = "TP"[int(rng.integers(2))]
    return "B" + branch + reber_string(rng) + branch + "E"


def _reber_next(string: str, start: int):
    """Legal next symbols after each symbol of the Reber string beginning at ``string[start]``
    (which must be B); returns (list of sets, index just past the string's E)."""
    if string[start:start + 1] != "B":
        raise ValueError(f"reber_legal_next: expected a Reber string starting with B at {start} of {string!r}")
    sets, state, i = [{"T", "P"}], 1, start + 1
    while state is not None:
        edges = dict(_REBER_GRAPH[state])
        if i >= len(string) or string[i] not in edges:
            raise ValueError(f"reber_legal_next: {string!r} leaves the grammar at position {i}")
        state = edges[string[i]]
        if state is not None:
            sets.append({s for s, _ in _REBER_GRAPH[state]})
        i += 1
    return sets, i


def reber_legal_next(string: str, embedded: bool = True) -> list[set]:
    """For each of the first ``len(string) - 1`` symbols, the set of symbols the grammar allows
    next (after the prefix ending there). Raises ValueError if ``string`` is not in the grammar."""
    if not embedded:
        sets, end = _reber_next(string, 0)
    else:
        branch = string[1:2]
        if string[:1] != "B" or branch not in ("T", "P"):
            raise ValueError(f"reber_legal_next: {string!r} is not an embedded Reber string")
        inner, end = _reber_next(string, 2)
        if string[end:end + 2] != branch + "E":
            raise ValueError(f"reber_legal_next: {string!r} does not close with {branch}E")
        # after B: T or P; after the branch: the inner B; after the inner E: the branch again; then E
        sets = [{"T", "P"}, {"B"}] + inner + [{branch}, {"E"}]
        end += 2
    if end != len(string):
        raise ValueError(f"reber_legal_next: {string!r} has symbols after its end")
    return sets


def reber_split(n_train: int, n_test: int, seed: int = 0, embedded: bool = True):
    """Training and held-out strings: ``n_train`` strings as the grammar draws them, then
    ``n_test`` strings none of which occurs in training. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    draw = embedded_reber_string if embedded else reber_string
    train = [draw(rng) for _ in range(n_train)]
    seen, test = set(train), []
    while len(test) < n_test:
        s = draw(rng)
        if s not in seen:
            test.append(s)
    return train, test


class ReberDataset(Dataset):
    """Next-symbol prediction on Reber strings: item i is ``(input ids, next ids)``, both of
    length ``len(string) - 1`` (ids index :data:`REBER_SYMBOLS`)."""

    def __init__(self, strings):
        self.strings = list(strings)
        self._ids = [np.array([REBER_SYMBOLS.index(c) for c in s], dtype=np.int64) for s in self.strings]

    def __len__(self):
        return len(self._ids)

    def __getitem__(self, i):
        ids = self._ids[i]
        return ids[:-1], ids[1:]


#: target id of padded steps (the cross-entropy's default ignore_index)
IGNORE = -100


def collate_reber(samples):
    """A list of ReberDataset items -> ``(x, lengths, next)``: x (N, T, 7) float32 one-hot inputs
    (zeros past each length), lengths (N,) int64, next (N, T) int64 with -100 past each length."""
    lengths = np.array([len(x) for x, _ in samples], dtype=np.int64)
    T = int(lengths.max())
    x = np.zeros((len(samples), T, len(REBER_SYMBOLS)), dtype=np.float32)
    nxt = np.full((len(samples), T), IGNORE, dtype=np.int64)
    for i, (ids, target) in enumerate(samples):
        x[i, np.arange(len(ids)), ids] = 1.0
        nxt[i, : len(target)] = target
    return x, lengths, nxt


def reber_strings_from_targets(targets: np.ndarray) -> list[str]:
    """Rebuild the strings of a batch from its next-symbol targets (N, T) (-100 = padding): every
    string starts with B, and the targets are the rest of it."""
    return ["B" + "".join(REBER_SYMBOLS[t] for t in row if t != IGNORE) for row in np.asarray(targets)]


# ---- characters ----

CORPUS_DIR = os.path.join(os.path.dirname(__file__), "corpus")


def default_corpus() -> str:
    """The bundled public-domain passages (``pyfastdl/data/corpus/*.txt``, see its README), joined
    by blank lines, in file-name order."""
    names = sorted(n for n in os.listdir(CORPUS_DIR) if n.endswith(".txt"))
    parts = []
    for name in names:
        with open(os.path.join(CORPUS_DIR, name), encoding="utf-8") as f:
            parts.append(f.read().strip())
    return "\n\n".join(parts) + "\n"


class CharVocab:
    """Character <-> id over the sorted distinct characters of a text; a character outside it
    encodes as a space if the vocabulary has one (else as id 0)."""

    def __init__(self, chars):
        self.itos = list(chars)
        if len(set(self.itos)) != len(self.itos) or not self.itos:
            raise ValueError("CharVocab: characters must be unique and at least one")
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.fallback = self.stoi.get(" ", 0)

    @classmethod
    def build(cls, text: str) -> "CharVocab":
        return cls(sorted(set(text)))

    def __len__(self):
        return len(self.itos)

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.stoi.get(c, self.fallback) for c in text], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)


class TextWindows(Dataset):
    """Windows of a character-id array for next-character prediction: item i is ``(ids[s:s+L],
    ids[s+1:s+L+1])`` with s = i * stride and L = ``seq_len``."""

    def __init__(self, ids: np.ndarray, seq_len: int, stride: int | None = None):
        ids = np.asarray(ids, dtype=np.int64)
        stride = stride or seq_len
        if seq_len < 1 or stride < 1 or len(ids) < seq_len + 1:
            raise ValueError(f"TextWindows: need seq_len, stride >= 1 and more than seq_len ({seq_len}) "
                             f"characters, got {len(ids)} characters, stride {stride}")
        self.ids, self.seq_len, self.stride = ids, seq_len, stride

    def __len__(self):
        return (len(self.ids) - self.seq_len - 1) // self.stride + 1

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"TextWindows: index {i} out of range for {len(self)} windows")
        s = i * self.stride
        return self.ids[s:s + self.seq_len], self.ids[s + 1:s + self.seq_len + 1]
