"""The standard library's docstrings: real English text for the GPT and BERT recipes, no download.

The corpus (``docstrings.jsonl.xz`` beside this file, made by ``tools/gather_docstrings.py``; see
the README here for its size and licence) holds every module, class and function docstring of
CPython 3.11's standard library, one JSON line per module. Modules are assigned to the training,
validation and test splits (70/10/20 of the docstrings) *by module*, so no module's docstrings
appear in two splits: the test text is from code the models never read.

The tokenizer (``tokenizer.json``, trained on the training split by the same script) is a
byte-level BPE of the Hugging Face ``tokenizers`` library (GPT-2's scheme: bytes, then merges), with
BERT's five special tokens first: ``[PAD] [UNK] [CLS] [SEP] [MASK]`` = ids 0..4.

Datasets built on it:

* :class:`LMWindows` -- the split's docstrings joined by ``[SEP]`` into one token stream, cut into
  windows for next-token prediction (GPT); :func:`bigram_perplexity` scores the same windows with
  an interpolated bigram model as the baseline.
* :class:`MLMWindows` -- ``[CLS]`` + a window of the stream, masked by BERT's rule
  (:func:`mask_tokens`): 15% of the ordinary tokens (or another fraction) are selected, of those 80%
  become ``[MASK]``, 10% a random token and 10% stay; the targets are the selected tokens' ids (-100 elsewhere).
* :class:`PackageDocstrings` -- classification: which package (``asyncio``, ``email``, ...) a
  docstring comes from, ``[CLS] docstring [SEP]`` padded to a fixed length, classes balanced.
"""

from __future__ import annotations

import functools
import json
import lzma
import os
import zlib

import numpy as np

from ..dataset import Dataset

__all__ = ["CORPUS_PATH", "TOKENIZER_PATH", "SPECIAL_TOKENS", "PAD", "UNK", "CLS", "SEP", "MASK", "IGNORE",
           "SPLIT_FRACTIONS", "PACKAGES", "load_modules", "split_modules", "split_docstrings", "train_tokenizer",
           "load_tokenizer", "token_stream", "mask_tokens", "LMWindows", "MLMWindows", "PackageDocstrings",
           "bigram_perplexity"]

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS_PATH = os.path.join(HERE, "docstrings.jsonl.xz")
TOKENIZER_PATH = os.path.join(HERE, "tokenizer.json")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD, UNK, CLS, SEP, MASK = range(5)
IGNORE = -100  # target of the tokens a loss skips (cross_entropy's ignore_index)
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
#: the classes of the classification task: the packages with the most docstrings spread over many modules
PACKAGES = ("asyncio", "distutils", "email", "idlelib", "importlib", "xml")


@functools.lru_cache(maxsize=2)
def load_modules(path: str = CORPUS_PATH) -> dict:
    """``{module name: [docstring, ...]}`` from the corpus file, in the file's (sorted) order."""
    with lzma.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {row["module"]: row["docs"] for row in rows}


def _group(module: str, package_sizes: dict) -> str:
    top = module.split(".")[0]
    return top if package_sizes[top] > 1 else ""


def split_modules(modules: dict) -> dict:
    """``{"train": [module, ...], "val": [...], "test": [...]}``: each module in exactly one split.

    Stratified by package, so every split holds a share of every large package: within a package
    (the stand-alone modules form one group together), modules are taken in the order of a hash of
    their name (crc32, the same everywhere) and each goes to the split furthest below its share
    (:data:`SPLIT_FRACTIONS`) of the group's docstrings so far."""
    package_sizes: dict = {}
    for name in modules:
        top = name.split(".")[0]
        package_sizes[top] = package_sizes.get(top, 0) + 1
    groups: dict = {}
    for name in modules:
        groups.setdefault(_group(name, package_sizes), []).append(name)
    out = {split: [] for split in SPLIT_FRACTIONS}
    for group in sorted(groups):
        assigned = dict.fromkeys(SPLIT_FRACTIONS, 0)
        for name in sorted(groups[group], key=lambda m: (zlib.crc32(m.encode()), m)):
            n = len(modules[name])
            total = sum(assigned.values()) + n
            split = max(SPLIT_FRACTIONS, key=lambda s: SPLIT_FRACTIONS[s] * total - assigned[s])
            assigned[split] += n
            out[split].append(name)
    return {split: sorted(names) for split, names in out.items()}


def split_docstrings(split: str, path: str = CORPUS_PATH) -> list:
    """``[(module, docstring), ...]`` of one split, in module order."""
    if split not in SPLIT_FRACTIONS:
        raise ValueError(f"split must be one of {tuple(SPLIT_FRACTIONS)}, got {split!r}")
    modules = load_modules(path)
    return [(name, doc) for name in split_modules(modules)[split] for doc in modules[name]]


def train_tokenizer(texts, vocab_size: int = 1024):
    """A byte-level BPE (``tokenizers``) trained on ``texts``, the special tokens first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


@functools.lru_cache(maxsize=2)
def load_tokenizer(path: str = TOKENIZER_PATH):
    """The shipped tokenizer (a ``tokenizers.Tokenizer``)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


def _encode(tokenizer, texts) -> list:
    return [np.asarray(e.ids, dtype=np.int64) for e in tokenizer.encode_batch(list(texts))]


@functools.lru_cache(maxsize=8)
def token_stream(split: str, tokenizer_path: str = TOKENIZER_PATH, corpus_path: str = CORPUS_PATH) -> np.ndarray:
    """The split's docstrings, each followed by ``[SEP]``, as one int64 array of token ids."""
    sep = np.array([SEP], dtype=np.int64)
    docs = [doc for _, doc in split_docstrings(split, corpus_path)]
    return np.concatenate([part for ids in _encode(load_tokenizer(tokenizer_path), docs) for part in (ids, sep)])


def mask_tokens(ids: np.ndarray, rng: np.random.Generator, vocab_size: int, prob: float = 0.15):
    """BERT's masking (Devlin et al. 2019, section 3.1): ``(inputs, targets)`` for token ids ``ids``.

    Each ordinary token (id >= 5; special tokens never) is selected with probability ``prob``; a
    selected token becomes ``[MASK]`` with probability 0.8, a uniformly random ordinary token with
    0.1, and stays itself with 0.1. ``targets`` holds the original id at selected positions and
    :data:`IGNORE` elsewhere."""
    ids = np.asarray(ids, dtype=np.int64)
    selected = (rng.random(ids.shape) < prob) & (ids >= len(SPECIAL_TOKENS))
    action = rng.random(ids.shape)
    inputs = ids.copy()
    inputs[selected & (action < 0.8)] = MASK
    randomised = selected & (action >= 0.8) & (action < 0.9)
    inputs[randomised] = rng.integers(len(SPECIAL_TOKENS), vocab_size, size=int(randomised.sum()))
    return inputs, np.where(selected, ids, IGNORE)


class LMWindows(Dataset):
    """Non-overlapping windows of a token stream: item i is ``(ids[s:s+L], ids[s+1:s+L+1])``, s = i L."""

    def __init__(self, ids: np.ndarray, seq_len: int):
        if seq_len < 1 or len(ids) < seq_len + 1:
            raise ValueError(f"LMWindows: need seq_len >= 1 and more than seq_len ({seq_len}) tokens, "
                             f"got {len(ids)} tokens")
        self.ids, self.seq_len = np.asarray(ids, dtype=np.int64), seq_len

    def __len__(self):
        return (len(self.ids) - 1) // self.seq_len

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"LMWindows: index {i} out of range for {len(self)} windows")
        s = i * self.seq_len
        return self.ids[s:s + self.seq_len], self.ids[s + 1:s + self.seq_len + 1]


class MLMWindows(Dataset):
    """``[CLS]`` + non-overlapping windows of ``seq_len - 1`` tokens of a stream, masked by
    :func:`mask_tokens` (selecting a fraction ``prob`` of the tokens): item i is ``(inputs, targets)``,
    each (seq_len,). ``dynamic``: a fresh mask
    each time an item is read (RoBERTa's dynamic masking; the n-th reading of item i draws from
    the seed (seed, i, n), so a run is reproducible); otherwise one fixed mask per item
    (validation and test)."""

    def __init__(self, ids: np.ndarray, seq_len: int, vocab_size: int, seed: int = 0, dynamic: bool = True,
                 prob: float = 0.15):
        if not 0 < prob <= 1:
            raise ValueError(f"MLMWindows: prob must be in (0, 1], got {prob}")
        if seq_len < 2 or len(ids) < seq_len - 1:
            raise ValueError(f"MLMWindows: need seq_len >= 2 and at least seq_len - 1 ({seq_len - 1}) tokens, "
                             f"got {len(ids)} tokens")
        self.ids, self.seq_len, self.vocab_size = np.asarray(ids, dtype=np.int64), seq_len, vocab_size
        self.seed, self.dynamic, self.prob = seed, dynamic, prob
        self.reads = np.zeros(len(self), dtype=np.int64)

    def __len__(self):
        return len(self.ids) // (self.seq_len - 1)

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"MLMWindows: index {i} out of range for {len(self)} windows")
        n = self.seq_len - 1
        window = np.concatenate([[CLS], self.ids[i * n:(i + 1) * n]])
        rng = np.random.default_rng((self.seed, i, int(self.reads[i])))
        self.reads[i] += self.dynamic
        return mask_tokens(window, rng, self.vocab_size, self.prob)


class PackageDocstrings(Dataset):
    """Which package a docstring comes from: item i is ``(ids (seq_len,), length, label)``, ids
    ``[CLS] docstring [SEP]`` (the docstring cut to fit) padded with ``[PAD]``. Classes are
    :data:`PACKAGES`, balanced by keeping the first ``per_class`` docstrings of each in a seeded
    shuffle (``per_class=None``: as many as the rarest class has)."""

    def __init__(self, split: str, seq_len: int = 128, per_class: int | None = None, seed: int = 0,
                 tokenizer_path: str = TOKENIZER_PATH, corpus_path: str = CORPUS_PATH):
        by_class = [[doc for module, doc in split_docstrings(split, corpus_path) if module.split(".")[0] == package]
                    for package in PACKAGES]
        keep = min(len(docs) for docs in by_class) if per_class is None else per_class
        if keep < 1 or any(len(docs) < keep for docs in by_class):
            raise ValueError(f"PackageDocstrings: the {split} split has {[len(d) for d in by_class]} docstrings per "
                             f"class, fewer than the {keep} asked for")
        rng = np.random.default_rng(seed)
        docs, labels = [], []
        for label, class_docs in enumerate(by_class):
            docs += [class_docs[j] for j in sorted(rng.permutation(len(class_docs))[:keep])]
            labels += [label] * keep
        tokens = _encode(load_tokenizer(tokenizer_path), docs)
        self.ids = np.full((len(docs), seq_len), PAD, dtype=np.int64)
        self.lengths = np.zeros(len(docs), dtype=np.int64)
        for row, t in enumerate(tokens):
            seq = np.concatenate([[CLS], t[:seq_len - 2], [SEP]])
            self.ids[row, :len(seq)] = seq
            self.lengths[row] = len(seq)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.ids[i], self.lengths[i], self.labels[i]


def bigram_perplexity(train_ids: np.ndarray, inputs: np.ndarray, targets: np.ndarray, vocab_size: int,
                      val: tuple | None = None) -> dict:
    """The baseline a language model must beat: an interpolated bigram model fitted on the token
    stream ``train_ids``, p(b | a) = lam c(a, b) / c(a) + (1 - lam) p1(b), p1 the add-one unigram,
    scored on the (input, target) token pairs of ``inputs``/``targets`` (same shapes, e.g. the LM
    windows of a split). ``lam`` is chosen on the grid 0.05..0.95 for the lowest perplexity on
    ``val`` = (inputs, targets) (default: the scored pairs themselves). Returns
    ``{"perplexity": ..., "lambda": ...}``."""
    train_ids = np.asarray(train_ids, dtype=np.int64)
    pair_codes, pair_counts = np.unique(train_ids[:-1] * vocab_size + train_ids[1:], return_counts=True)
    counts = np.bincount(train_ids[:-1], minlength=vocab_size).astype(np.float64)
    unigram = (np.bincount(train_ids, minlength=vocab_size) + 1.0) / (len(train_ids) + vocab_size)

    def log_likelihood(a, b, lam):
        code = a * vocab_size + b
        at = np.minimum(np.searchsorted(pair_codes, code), len(pair_codes) - 1)
        pair = np.where(pair_codes[at] == code, pair_counts[at], 0)  # c(a, b), from the sorted codes
        bigram = np.divide(pair, counts[a], out=np.zeros(len(a)), where=counts[a] > 0)
        return np.log(lam * bigram + (1 - lam) * unigram[b])

    va, vb = (np.ravel(x) for x in (val or (inputs, targets)))
    lam = max(np.arange(0.05, 0.96, 0.05), key=lambda lam: log_likelihood(va, vb, lam).sum())
    nll = -log_likelihood(np.ravel(inputs), np.ravel(targets), lam).mean()
    return {"perplexity": float(np.exp(nll)), "lambda": float(round(lam, 2))}
