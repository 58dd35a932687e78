"""Translation data with no download: English → German number words, generated deterministically,
and a loader for user-supplied parallel text, with a simple tokenizer and a vocabulary.

The number task is small enough to train on a laptop CPU yet has the features that make
translation hard for a sequence model: the output is not a word-for-word copy (German says the
units before the tens, "zwei und vierzig" for "forty-two"), lengths differ between the languages,
and a number's words depend on its position in the whole (thousands).

    >>> english_words(342), german_words(342)
    ('three hundred forty-two', 'drei hundert zwei und vierzig')
"""

from __future__ import annotations

import collections
import os
import re

import numpy as np

MAX_NUMBER = 999_999

_EN_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
             "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_EN_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

# German number words, written with a space between the parts ("drei hundert zwei und vierzig") so
# that each part is one token. "ein" is the combining form of "eins" (ein und zwanzig, ein hundert).
_DE_UNITS = ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn", "elf",
             "zwölf", "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn", "achtzehn", "neunzehn"]
_DE_TENS = ["", "", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig", "achtzig", "neunzig"]


def _check_number(n):
    if not isinstance(n, (int, np.integer)) or not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"number must be an integer in [0, {MAX_NUMBER}], got {n!r}")


def _english_below_1000(n):
    words = []
    if n >= 100:
        words += [_EN_UNITS[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_EN_TENS[n // 10] + (f"-{_EN_UNITS[n % 10]}" if n % 10 else ""))
    elif n:
        words.append(_EN_UNITS[n])
    return words


def english_words(n: int) -> str:
    """American English without "and": 342 -> "three hundred forty-two"."""
    _check_number(n)
    if n == 0:
        return "zero"
    thousands, rest = divmod(n, 1000)
    words = (_english_below_1000(thousands) + ["thousand"]) if thousands else []
    return " ".join(words + _english_below_1000(rest))


def _german_below_1000(n, final):
    """Parts of a German number below 1000; ``final`` says whether nothing follows (eins vs ein)."""
    words = []
    if n >= 100:
        words += ["ein" if n // 100 == 1 else _DE_UNITS[n // 100], "hundert"]
        n %= 100
    if n >= 20:
        unit = n % 10
        if unit:
            words += ["ein" if unit == 1 else _DE_UNITS[unit], "und"]
        words.append(_DE_TENS[n // 10])
    elif n:
        words.append("ein" if n == 1 and not final else _DE_UNITS[n])
    return words


def german_words(n: int) -> str:
    """German with its units-before-tens order, one token per part: 342 -> "drei hundert zwei und vierzig"."""
    _check_number(n)
    if n == 0:
        return "null"
    thousands, rest = divmod(n, 1000)
    words = (_german_below_1000(thousands, final=False) + ["tausend"]) if thousands else []
    return " ".join(words + _german_below_1000(rest, final=True))


def number_split(n_train=20_000, n_test=2_000, seed=0):
    """Disjoint train and test numbers in [1, 999,999]: no test number appears in training.

    The 99 numbers below 100 are the building blocks of all others and are always in training;
    test numbers are drawn from 100 up. Lengths are balanced: a number's digit count is drawn
    uniformly (1..6 for training, 3..6 for testing) before its value, so short numbers are not
    drowned by the 900,000 six-digit ones. Deterministic for a seed."""
    if n_train < 99 or n_test < 1 or n_train + n_test > 500_000:
        raise ValueError(f"number_split: need n_train >= 99, n_test >= 1 and n_train + n_test <= 500,000; "
                         f"got {n_train} and {n_test}")
    rng = np.random.default_rng(seed)
    seen = set(range(1, 100))

    def draw(count, min_digits):
        out = []
        while len(out) < count:
            low = 10 ** int(rng.integers(min_digits - 1, 6))
            v = int(rng.integers(low, low * 10))
            if v not in seen:
                seen.add(v)
                out.append(v)
        return out

    test = draw(n_test, 3)
    train = list(range(1, 100)) + draw(n_train - 99, 1)
    rng.shuffle(train)
    return train, test


def number_pairs(numbers):
    """(english, german) sentence pairs for the given numbers."""
    return [(english_words(n), german_words(n)) for n in numbers]


_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks: "Forty-two!" -> ["forty", "-", "two", "!"]."""
    return _TOKEN.findall(text.lower())


def detokenize(tokens) -> str:
    """Inverse of :func:`tokenize` for the number task (hyphens rejoin their neighbours)."""
    return " ".join(tokens).replace(" - ", "-")


_DE_NUMBER_PARTS = frozenset(_DE_UNITS + _DE_TENS[2:] + ["ein", "hundert", "tausend"])


def german_number_text(tokens) -> str:
    """The number task's German tokens as German writes them: a number below a million is one word
    ("drei hundert zwei und vierzig" -> "dreihundertzweiundvierzig"). Runs of number parts are
    joined ("und" only between a unit and a tens word); any other token keeps its spaces, so a
    sentence that is not a number reads as :func:`detokenize` gives it. For display only: the
    metrics score the tokens."""
    tokens = list(tokens)
    words, run = [], []
    for i, tok in enumerate(tokens):
        joins = tok in _DE_NUMBER_PARTS or (
            tok == "und" and run and i + 1 < len(tokens) and tokens[i + 1] in _DE_TENS[2:])
        if joins:
            run.append(tok)
            continue
        if run:
            words.append("".join(run))
            run = []
        words.append(tok)
    if run:
        words.append("".join(run))
    return detokenize(words)


class Vocab:
    """Token <-> id. Ids 0..3 are the specials <pad>, <bos>, <eos>, <unk>; the rest are sorted by
    frequency (ties alphabetically) and kept when they occur at least ``min_freq`` times."""

    PAD, BOS, EOS, UNK = 0, 1, 2, 3
    SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

    def __init__(self, tokens):
        self.itos = list(tokens)
        if tuple(self.itos[:4]) != self.SPECIALS:
            raise ValueError(f"Vocab: the first tokens must be {self.SPECIALS}")
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("Vocab: tokens must be unique")

    @classmethod
    def build(cls, sentences, min_freq=1):
        """From tokenised sentences (lists of tokens)."""
        if min_freq < 1:
            raise ValueError(f"Vocab.build: min_freq must be >= 1, got {min_freq}")
        counts = collections.Counter(t for s in sentences for t in s)
        kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in cls.SPECIALS),
                      key=lambda t: (-counts[t], t))
        return cls(list(cls.SPECIALS) + kept)

    def __len__(self):
        return len(self.itos)

    def encode(self, tokens, bos=False, eos=True):
        ids = [self.stoi.get(t, self.UNK) for t in tokens]
        return np.array(([self.BOS] if bos else []) + ids + ([self.EOS] if eos else []), dtype=np.int64)

    def decode(self, ids):
        """Tokens up to the first <eos>, without <pad> and <bos>."""
        out = []
        for i in (int(v) for v in ids):
            if i == self.EOS:
                break
            if i not in (self.PAD, self.BOS):
                out.append(self.itos[i] if 0 <= i < len(self.itos) else self.SPECIALS[self.UNK])
        return out


def read_parallel_text(source_path, target_path):
    """Sentence pairs from two files with one sentence a line (line i of one translates line i of
    the other). Mismatched line counts, missing files and empty files are errors that say which."""
    lines = []
    for path in (source_path, target_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"parallel text: no file at {path!r}")
        try:
            with open(path, encoding="utf-8") as f:
                lines.append([line.rstrip("\n") for line in f])
        except UnicodeDecodeError as e:
            raise ValueError(f"parallel text: {path!r} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    src, tgt = lines
    if len(src) != len(tgt):
        raise ValueError(f"parallel text: {source_path!r} has {len(src)} lines but {target_path!r} has "
                         f"{len(tgt)}; line i of one must translate line i of the other")
    if not src:
        raise ValueError(f"parallel text: {source_path!r} and {target_path!r} are empty")
    return list(zip(src, tgt))


def pad_sequences(seqs, pad=Vocab.PAD):
    """A batch of 1-D id arrays as one (batch, max_len) int64 array plus their lengths."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    out = np.full((len(seqs), int(lengths.max(initial=0))), pad, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths
