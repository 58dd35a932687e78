"""Decoding a sequence model: greedy search and beam search with a length penalty.

Both work for any decoder through one callback,

    step(tokens, state) -> (log_probs, state)

where ``tokens`` is an (n, t) int64 array of the prefixes so far (starting with <bos>), ``state``
is whatever the model carries between steps (LSTM hidden states, encoder outputs, ...), and
``log_probs`` is an (n, vocab) numpy array of next-token log-probabilities. Beam search grows and
prunes the rows, so it also needs ``select(state, rows) -> state`` that keeps the given rows (in
that order) of every array in the state.

Beam search keeps, per sentence, the ``beam_size`` best prefixes by total log-probability; a
prefix whose best extension is <eos> is finished, and a sentence is done once it has
``beam_size`` finished hypotheses (or at ``max_len``). Finished hypotheses are ranked by
score / lp(length) with GNMT's length penalty lp(L) = ((5 + L) / 6) ** alpha (Wu et al. 2016;
alpha = 0 ranks by raw log-probability). With beam_size 1 it returns exactly what greedy search
returns.
"""

from __future__ import annotations

import numpy as np


def greedy_search(step, state, batch_size, bos, eos, max_len):
    """The most likely next token at every step; returns a list of token lists (without bos/eos)."""
    tokens = np.full((batch_size, 1), bos, dtype=np.int64)
    done = np.zeros(batch_size, dtype=bool)
    for _ in range(max_len):
        log_probs, state = step(tokens, state)
        nxt = np.asarray(log_probs).argmax(-1)
        nxt = np.where(done, eos, nxt)
        tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
        done |= nxt == eos
        if done.all():
            break
    return [_strip(row, eos) for row in tokens[:, 1:]]


def _strip(row, eos):
    out = []
    for t in row:
        if t == eos:
            break
        out.append(int(t))
    return out


def length_penalty(length, alpha):
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(step, select, state, batch_size, bos, eos, max_len, beam_size=4, alpha=0.6):
    """Beam search; returns, per sentence, the best hypothesis as a token list (without bos/eos)."""
    if beam_size < 1:
        raise ValueError(f"beam_search: beam_size must be >= 1, got {beam_size}")
    # rows are (sentence, beam) pairs; at the start one live row per sentence
    tokens = np.full((batch_size, 1), bos, dtype=np.int64)
    scores = np.zeros(batch_size)
    owner = np.arange(batch_size)  # which sentence each row belongs to
    finished = [[] for _ in range(batch_size)]  # (normalised score, tokens)
    for t in range(1, max_len + 1):
        log_probs, state = step(tokens, state)
        log_probs = np.asarray(log_probs, dtype=np.float64)
        vocab = log_probs.shape[1]
        cand = scores[:, None] + log_probs  # (rows, vocab)
        keep_rows, keep_tokens, keep_scores, keep_owner = [], [], [], []
        for sent in range(batch_size):
            rows = np.flatnonzero(owner == sent)
            if len(rows) == 0 or len(finished[sent]) >= beam_size:
                continue
            flat = cand[rows].reshape(-1)
            # the 2*beam best extensions: an <eos> among the first beam_size finishes a hypothesis,
            # and the best beam_size others stay alive (so a beam never runs dry)
            alive = 0
            for rank, k in enumerate(np.argsort(-flat, kind="stable")[: 2 * beam_size]):
                row, tok = rows[k // vocab], int(k % vocab)
                if tok == eos or t == max_len:
                    if rank < beam_size:
                        hyp = tokens[row, 1:].tolist() + ([] if tok == eos else [tok])
                        finished[sent].append((flat[k] / length_penalty(len(hyp) + 1, alpha), hyp))
                elif alive < beam_size:
                    keep_rows.append(row)
                    keep_tokens.append(tok)
                    keep_scores.append(flat[k])
                    keep_owner.append(sent)
                    alive += 1
        if not keep_rows:
            break
        rows = np.array(keep_rows)
        tokens = np.concatenate([tokens[rows], np.array(keep_tokens, dtype=np.int64)[:, None]], axis=1)
        scores = np.array(keep_scores)
        owner = np.array(keep_owner)
        state = select(state, rows)
    return [max(f, key=lambda h: h[0])[1] if f else [] for f in finished]
