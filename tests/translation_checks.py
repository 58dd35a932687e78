"""Checks every translation model must pass (used by test_models_transformer/convs2s): output
shape, no attention to source padding or to future target positions, beam 1 = greedy, and one
optimisation step lowering the loss. ``model`` is in the decoding protocol of pyfastdl.tasks.translation."""

import numpy as np

import pyfastdl
import pyfastdl.optim
from pyfastdl.data.parallel_text import Vocab
from pyfastdl.text import beam_search
from pyfastdl.tasks.translation import select_rows, translate


def random_batch(rng, vocab, n=3, src_len=7, tgt_len=6):
    """src with random lengths (padding after), tgt_in starting with <bos>; ids avoid the specials."""
    lengths = np.array([src_len] + list(rng.integers(2, src_len, n - 1)), dtype=np.int64)
    src = rng.integers(4, vocab, (n, src_len))
    src[np.arange(src_len)[None, :] >= lengths[:, None]] = Vocab.PAD
    tgt_in = rng.integers(4, vocab, (n, tgt_len))
    tgt_in[:, 0] = Vocab.BOS
    tgt_out = rng.integers(4, vocab, (n, tgt_len))
    return src, lengths, tgt_in, tgt_out


def logits(model, src, lengths, tgt_in):
    with pyfastdl.no_grad():
        return model(pyfastdl.tensor(src), pyfastdl.tensor(lengths), pyfastdl.tensor(tgt_in)).numpy()


def check_shapes(model, rng, vocab):
    src, lengths, tgt_in, _ = random_batch(rng, vocab)
    out = logits(model.eval(), src, lengths, tgt_in)
    assert out.shape == (3, tgt_in.shape[1], vocab) and np.isfinite(out).all()


def check_padding_is_ignored(model, rng, vocab):
    """Whatever the padded source positions hold, no output changes; nor with more padding."""
    model.eval()
    src, lengths, tgt_in, _ = random_batch(rng, vocab)
    base = logits(model, src, lengths, tgt_in)
    noisy = src.copy()
    pad = np.arange(src.shape[1])[None, :] >= lengths[:, None]
    assert pad.any()
    noisy[pad] = rng.integers(1, vocab, int(pad.sum()))
    np.testing.assert_allclose(logits(model, noisy, lengths, tgt_in), base, rtol=1e-5, atol=1e-5)
    wider = np.concatenate([src, rng.integers(1, vocab, (len(src), 3))], axis=1)
    np.testing.assert_allclose(logits(model, wider, lengths, tgt_in), base, rtol=1e-5, atol=1e-5)


def check_causal(model, rng, vocab):
    """Output t depends on target inputs <= t only: perturbing later inputs leaves it unchanged,
    and perturbing input t does change it (the check has teeth)."""
    model.eval()
    src, lengths, tgt_in, _ = random_batch(rng, vocab)
    base = logits(model, src, lengths, tgt_in)
    for t in range(tgt_in.shape[1] - 1):
        later = tgt_in.copy()
        later[:, t + 1:] = rng.integers(4, vocab, later[:, t + 1:].shape)
        out = logits(model, src, lengths, later)
        np.testing.assert_allclose(out[:, : t + 1], base[:, : t + 1], rtol=1e-5, atol=1e-5)
        assert not np.allclose(out[:, t + 1:], base[:, t + 1:], rtol=1e-5, atol=1e-5)


def check_beam_one_is_greedy(model, rng, vocab):
    model.eval()
    src, lengths, _, _ = random_batch(rng, vocab)
    greedy = translate(model, src, lengths, beam_size=1, max_len=8)

    def step(tokens, state):
        out, state = model.decode_step(pyfastdl.tensor(tokens), state)
        return pyfastdl.nn.functional.log_softmax(out, dim=-1).numpy(), state

    with pyfastdl.no_grad():
        state = model.encode(pyfastdl.tensor(src), pyfastdl.tensor(lengths))
        beam1 = beam_search(step, lambda s, rows: select_rows(s, pyfastdl.tensor(rows)), state,
                            len(src), Vocab.BOS, Vocab.EOS, 8, beam_size=1, alpha=0.6)
    assert beam1 == greedy
    beam3 = translate(model, src, lengths, beam_size=3, max_len=8)
    assert len(beam3) == len(src) and all(isinstance(h, list) for h in beam3)


def check_step_lowers_loss(model, recipe, rng, vocab):
    src, lengths, tgt_in, tgt_out = (pyfastdl.tensor(a) for a in random_batch(rng, vocab))
    opt = pyfastdl.optim.Adam(model.parameters(), lr=1e-3)
    model.eval()  # no dropout: the two losses are comparable
    before = recipe.loss_fn(model(src, lengths, tgt_in), tgt_out)
    opt.zero_grad()
    before.backward()
    opt.step()
    after = recipe.loss_fn(model(src, lengths, tgt_in), tgt_out)
    assert after.item() < before.item()
    for name, p in model.named_parameters():
        assert p.grad is not None, name


def check_alignment(model, rng, vocab):
    model.eval()
    src, lengths, tgt_in, _ = random_batch(rng, vocab)
    with pyfastdl.no_grad():
        a = model.alignment(pyfastdl.tensor(src), pyfastdl.tensor(lengths), pyfastdl.tensor(tgt_in)).numpy()
    assert a.shape == (len(src), tgt_in.shape[1], src.shape[1])
    np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-5)
    pad = np.broadcast_to(np.arange(src.shape[1])[None, None, :] >= lengths[:, None, None], a.shape)
    assert (a[pad] == 0).all()


def check_decode_step_matches_teacher_forcing(model, rng, vocab):
    """Feeding a prefix one token at a time through decode_step (with whatever the model caches in
    its state) gives the teacher-forced logits."""
    model = model.eval()
    src, lengths, tgt_in, _ = random_batch(rng, vocab)
    full = logits(model, src, lengths, tgt_in)
    with pyfastdl.no_grad():
        state = model.encode(pyfastdl.tensor(src), pyfastdl.tensor(lengths))
        for t in range(tgt_in.shape[1]):
            step, state = model.decode_step(pyfastdl.tensor(tgt_in[:, : t + 1]), state)
            np.testing.assert_allclose(step.numpy(), full[:, t], rtol=1e-5, atol=1e-6)
