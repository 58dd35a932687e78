"""Sequence-task generators (pyfastdl.data.sequences) and temperature sampling (pyfastdl.text.sampling):
adding-problem targets, Reber strings checked by a grammar written out independently here,
determinism, character windows."""

import re

import numpy as np
import pytest

from pyfastdl.data import sequences as S
from pyfastdl.text.sampling import sample, softmax_with_temperature

# ---- the adding problem ----


def test_adding_targets_are_the_marked_sums():
    x, y = S.adding_problem(500, length=37, seed=3)
    assert x.shape == (500, 37, 2) and y.shape == (500,) and x.dtype == y.dtype == np.float32
    markers = x[..., 1]
    assert set(np.unique(markers)) == {0.0, 1.0} and (markers.sum(1) == 2).all()
    half = 37 // 2
    assert (markers[:, :half].sum(1) == 1).all() and (markers[:, half:].sum(1) == 1).all()
    np.testing.assert_allclose(y, (x[..., 0] * markers).sum(1), rtol=1e-6)
    assert (x[..., 0] >= 0).all() and (x[..., 0] < 1).all()


def test_adding_mean_baseline_is_one_sixth():
    _, y = S.adding_problem(20_000, length=10, seed=0)
    assert abs(np.mean((y - 1.0) ** 2) - 1 / 6) < 0.01


def test_adding_is_deterministic():
    a, b = S.adding_problem(50, 20, seed=7), S.adding_problem(50, 20, seed=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], S.adding_problem(50, 20, seed=8)[0])
    with pytest.raises(ValueError, match="length"):
        S.adding_problem(5, length=1)


# ---- the Reber grammar, checked against a grammar written out here ----

# The Reber grammar as a regular expression (derived by hand from the graph in the paper's Fig. 5):
# from state 3 (after P) the paths to the end are (T*VPX)* T* V (V | PS).
_FROM_3 = r"(?:T*VPX)*T*V(?:V|PS)"
REBER = re.compile(rf"B(?:TS*X(?:S|X{_FROM_3})|P{_FROM_3})E")
EMBEDDED = re.compile(rf"B(T|P){REBER.pattern}\1E")

# The embedded grammar as a transition table: state -> {symbol: next state}; "end" accepts.
# States t1..t6 / p1..p6 are Reber's graph inside the T / P branch.
_INNER = {1: {"T": 2, "P": 3}, 2: {"S": 2, "X": 4}, 3: {"T": 3, "V": 5}, 4: {"X": 3, "S": 6},
          5: {"P": 4, "V": 6}, 6: {"E": 7}}
DFA = {"start": {"B": "branch"}, "branch": {"T": "tB", "P": "pB"}}
for b in "tp":
    DFA[f"{b}B"] = {"B": f"{b}1"}
    for state, edges in _INNER.items():
        DFA[f"{b}{state}"] = {sym: f"{b}{nxt}" for sym, nxt in edges.items()}
    DFA[f"{b}7"] = {b.upper(): f"{b}close"}
    DFA[f"{b}close"] = {"E": "end"}
DFA["end"] = {}


def dfa_legal_next(string):
    state, out = "start", []
    for ch in string:
        state = DFA[state][ch]
        out.append(set(DFA[state]))
    assert state == "end"
    return out[:-1]


def test_reber_strings_are_in_the_grammar():
    rng = np.random.default_rng(0)
    plain = [S.reber_string(rng) for _ in range(300)]
    embedded = [S.embedded_reber_string(rng) for _ in range(300)]
    assert all(REBER.fullmatch(s) for s in plain)
    assert all(EMBEDDED.fullmatch(s) for s in embedded)
    assert len(set(embedded)) > 50  # a variety of strings, both branches
    assert {s[1] for s in embedded} == {"T", "P"}


def test_reber_legal_next_matches_the_grammar():
    rng = np.random.default_rng(1)
    for _ in range(200):
        s = S.embedded_reber_string(rng)
        assert S.reber_legal_next(s) == dfa_legal_next(s)
    # the plain grammar: every symbol read is one of the legal ones announced before it
    for _ in range(100):
        s = S.reber_string(rng)
        legal = S.reber_legal_next(s, embedded=False)
        assert len(legal) == len(s) - 1 and all(s[i + 1] in legal[i] for i in range(len(legal)))
    # the long-lag step: the symbol before last must repeat the second symbol
    assert S.reber_legal_next("BTBTXSETE")[-2] == {"T"}
    assert S.reber_legal_next("BPBTXSEPE")[-2] == {"P"}


@pytest.mark.parametrize("bad", ["BTBTXSEPE", "BTBTXXE TE", "BTBTSSE", "BTBTXSET", "TBTXSETE", "BTBTXSETEE"])
def test_reber_legal_next_rejects_strings_outside_the_grammar(bad):
    assert not EMBEDDED.fullmatch(bad)
    with pytest.raises(ValueError, match="reber_legal_next"):
        S.reber_legal_next(bad)


def test_reber_split_is_deterministic_and_held_out():
    train, test = S.reber_split(300, 100, seed=4)
    assert (train, test) == S.reber_split(300, 100, seed=4)
    assert len(train) == 300 and len(test) == 100 and not set(train) & set(test)
    assert train != S.reber_split(300, 100, seed=5)[0]


def test_reber_batches_round_trip():
    strings = ["BTBTXSETE", "BPBPVPXVVEPE"]
    x, lengths, nxt = S.collate_reber([S.ReberDataset(strings)[i] for i in range(2)])
    assert x.shape == (2, 11, 7) and lengths.tolist() == [8, 11] and nxt.shape == (2, 11)
    assert (x.sum(-1) == (np.arange(11)[None] < lengths[:, None])).all()
    assert (nxt[0, 8:] == S.IGNORE).all()
    assert S.reber_strings_from_targets(nxt) == strings
    assert "".join(S.REBER_SYMBOLS[i] for i in x[1].argmax(-1)) == strings[1][:-1]


# ---- characters ----


def test_default_corpus_and_char_vocab():
    text = S.default_corpus()
    assert len(text) > 5_000 and text == S.default_corpus() and "Alice" in text
    vocab = S.CharVocab.build(text)
    assert vocab.decode(vocab.encode(text)) == text
    assert vocab.decode(vocab.encode("Alice\u00e9")) == "Alice "  # unknown characters -> space
    with pytest.raises(ValueError, match="unique"):
        S.CharVocab("aa")


def test_text_windows():
    ids = np.arange(23)
    ds = S.TextWindows(ids, seq_len=5, stride=3)
    assert len(ds) == 6  # starts 0, 3, ..., 15 (the last needs 6 ids: 15..20)
    x, y = ds[5]
    np.testing.assert_array_equal(x, np.arange(15, 20))
    np.testing.assert_array_equal(y, np.arange(16, 21))
    assert len(S.TextWindows(ids, 5)) == 4
    with pytest.raises(IndexError):
        ds[6]
    with pytest.raises(ValueError, match="seq_len"):
        S.TextWindows(ids[:5], 5)


# ---- temperature sampling ----


def _fixed_step(scores):
    calls = []

    def step(ids, state):
        calls.append(ids.shape)
        return np.asarray(scores), (state or 0) + ids.shape[1]

    return step, calls


def test_sampling_temperature():
    scores = np.log([0.1, 0.2, 0.7])
    step, calls = _fixed_step(scores)
    assert sample(step, [1, 2], 5, temperature=0) == [2] * 5
    assert calls[0] == (1, 2) and calls[1:] == [(1, 1)] * 5  # the prime in one call, then one token a step
    draws = sample(_fixed_step(scores)[0], [0], 4000, temperature=1.0, seed=0)
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / 4000, [0.1, 0.2, 0.7], atol=0.03)
    assert draws == sample(_fixed_step(scores)[0], [0], 4000, temperature=1.0, seed=0)
    p = softmax_with_temperature(scores, 0.5)
    np.testing.assert_allclose(p, np.array([0.01, 0.04, 0.49]) / 0.54)
    assert softmax_with_temperature(scores, 100.0).std() < 0.01
    with pytest.raises(ValueError, match="temperature"):
        sample(step, [0], 3, temperature=-1)
