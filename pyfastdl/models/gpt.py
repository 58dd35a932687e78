"""GPT: A. Radford, K. Narasimhan, T. Salimans and I. Sutskever, "Improving Language Understanding
by Generative Pre-Training", OpenAI 2018 (GPT-1).

A decoder-only Transformer trained to predict the next token:

    x = dropout(wte(ids) + wpe(positions))                 token and learned position embeddings
    L x [ x = x + dropout(CausalSelfAttn(LN(x)))           pre-norm residual sub-layers
          x = x + dropout(W2 dropout(gelu(W1 LN(x)))) ]
    logits = LN(x) wte^T                                   output tied to the token embedding

The attention runs in the package's scaled dot-product attention kernels
(``F.scaled_dot_product_attention(..., is_causal=True)``). For sampling, :meth:`GPT.step` keeps a
key-value cache: each layer's projected keys and values of the tokens read so far, so each new
token costs one query against the cache instead of re-running the whole prefix.

``GPT(**GPT1_CONFIG)`` is the paper's model: 12 layers, d_model 768, 12 heads, d_ff 3072, 512
positions, a 40,478-token BPE vocabulary: 116.5M parameters (the paper's "117M").
``pyfastdl train gpt`` trains a small configuration on the standard library's docstrings
(:mod:`pyfastdl.data.docstrings`) and compares its test perplexity with a bigram model's on the
same tokens; ``pyfastdl sample RUN`` samples from it (temperature, top-k).

Departures from the paper:
  * Pre-norm (LayerNorm before each sub-layer, and a final LayerNorm before the output), as in
    GPT-2 (Radford et al. 2019); GPT-1 put LayerNorm after each residual addition.
  * Small CPU configuration by default (see :class:`GPTRecipe`); byte-level BPE of 1,024 tokens
    on the docstrings instead of 40,000 merges on BooksCorpus; AdamW with one-cycle warm-up and
    cosine decay rather than Adam with 2,000 warm-up steps; no attention dropout, and by default
    no dropout at all (the paper: 0.1), since the small run reads each token only twice.
  * Initialisation N(0, 0.02) for every weight matrix and embedding (the paper's), without
    GPT-2's down-scaling of the residual projections.
  * No fine-tuning heads (the paper's auxiliary LM objective on downstream tasks); see BERT for
    pre-training followed by fine-tuning.
"""

from __future__ import annotations

import os

import numpy as np

from .. import arange, cat, nn
from ..data import docstrings as dsdata
from ..nn import functional as F
from ..tasks.language_modelling import LanguageModelRecipe
from ..train.options import add_option
from .transformer import FeedForward, _Sublayers

__all__ = ["GPT", "GPT1_CONFIG", "CausalSelfAttention", "GPTBlock", "GPTRecipe", "init_gpt_weights",
           "sample_checkpoint"]

#: The paper's configuration (section 4.1 "Model specifications").
GPT1_CONFIG = dict(vocab_size=40478, max_len=512, d_model=768, n_layers=12, n_heads=12, d_ff=3072, dropout=0.1)


def init_gpt_weights(model, std: float = 0.02):
    """N(0, std) for every weight matrix and embedding, zeros for biases, LayerNorm untouched
    (ones and zeros). Embedding rows at ``padding_idx`` are set back to zero. Returns ``model``."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
            if getattr(module, "padding_idx", None) is not None:
                module.weight.data[module.padding_idx] = 0
        elif isinstance(module, nn.MultiheadAttention):
            nn.init.normal_(module.in_proj_weight, std=std)
    return model


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position i sees positions <= i, with an optional key-value
    cache. Parameters: ``qkv`` (Linear d -> 3d: queries, keys, values), ``proj`` (Linear d -> d)."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"CausalSelfAttention: d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_heads = d_model, n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x, cache: dict | None = None):
        """x (N, T, d) -> (N, T, d). ``cache``: a dict this layer fills with its keys and values
        (N, heads, S, d / heads) and extends on every call: the T new positions follow the S cached
        ones and see all of them."""
        n, t, d = x.shape
        qkv = self.qkv(x)
        q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(n, t, self.n_heads, d // self.n_heads).permute(0, 2, 1, 3)
                   for i in range(3))
        past = 0
        if cache is not None:
            if "k" in cache:
                past = cache["k"].shape[2]
                k, v = cat([cache["k"], k], dim=2), cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        if past == 0:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # new query i (at position past + i) sees keys j <= past + i (True = attends)
            device = x.device
            visible = arange(past + t, device=device).unsqueeze(0) <= arange(t, device=device).unsqueeze(1) + past
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=visible)
        return self.proj(out.permute(0, 2, 1, 3).reshape(n, t, d))


class GPTBlock(nn.Module):
    """x + attn(LN(x)), then x + mlp(LN(x)) (pre-norm), each branch with residual dropout."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.mlp = FeedForward(d_model, d_ff, dropout, activation="gelu")
        self.sub = _Sublayers(d_model, 2, dropout, norm_first=True)

    def forward(self, x, cache=None):
        x = self.sub.residual(0, x, lambda h: self.attn(h, cache))
        return self.sub.residual(1, x, self.mlp)


class GPT(nn.Module):
    """Token ids (N, T) -> next-token scores (N, T, vocab_size); T <= max_len."""

    def __init__(self, vocab_size: int, max_len: int = 64, d_model: int = 128, n_layers: int = 2, n_heads: int = 4,
                 d_ff: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.max_len = max_len
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([GPTBlock(d_model, n_heads, d_ff or 4 * d_model, dropout)
                                     for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(d_model)
        init_gpt_weights(self)

    def step(self, ids, cache: list | None = None):
        """Read ``ids`` (N, T) after the tokens already in ``cache`` (a list with one dict per
        layer, from :meth:`new_cache`; None: no cache, positions start at 0). Returns the scores
        (N, T, vocab_size); the cache then also holds these T tokens' keys and values."""
        start = cache[0]["k"].shape[2] if cache and "k" in cache[0] else 0
        t = ids.shape[1]
        if start + t > self.max_len:
            raise ValueError(f"GPT: {start + t} positions (cached {start} + new {t}) exceed max_len {self.max_len}")
        x = self.drop(self.wte(ids) + self.wpe(arange(start, start + t, device=ids.device)))
        for i, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache[i])
        return F.linear(self.ln_f(x), self.wte.weight)

    def new_cache(self) -> list:
        """An empty key-value cache for :meth:`step`."""
        return [{} for _ in self.blocks]

    def forward(self, ids):
        return self.step(ids)


# ---- the recipe ----

def windows_arrays(dataset) -> tuple:
    """(inputs, targets) of every item of a windows dataset, stacked."""
    return tuple(np.stack(column) for column in zip(*(dataset[i] for i in range(len(dataset)))))


class GPTRecipe(LanguageModelRecipe):
    """A small GPT on the standard library's docstrings (byte-level BPE, 1,024 tokens): 2 layers,
    d_model 128, 4 heads, d_ff 512, 64 positions, no dropout (0.54M parameters); AdamW (weight
    decay 0.1) at peak lr 5e-3 with the one-cycle schedule, 2 epochs of 16-window batches on one
    thread (lr 1e-2 learned slower in a trial run; dropout only slows a model that sees each
    token twice). Every validation and test result also holds ``bigram_perplexity``: an interpolated
    bigram model fitted on the training tokens and scored on the same targets (its interpolation
    weight chosen on the validation split)."""

    name = "gpt"
    description = "GPT (Radford et al. 2018), small CPU configuration, on the standard library's docstrings"

    def __init__(self):
        self._bigram = {}  # id(dataset) -> the bigram model's perplexity on it

    def add_arguments(self, parser) -> None:
        add_encoder_arguments(parser, d_model=128, layers=2, heads=4, seq_len=64, dropout=0.0)

    def default_hparams(self, args) -> dict:
        return dict(epochs=2, batch_size=16, lr=5e-3, optimizer="adamw", weight_decay=0.1, momentum=0.0,
                    schedule="onecycle", threads=1)

    def build_model(self, args):
        return GPT(dsdata.load_tokenizer().get_vocab_size(), args.seq_len, args.d_model, args.layers, args.heads,
                   args.d_ff, args.dropout)

    def datasets(self, args) -> dict:
        return {split: dsdata.LMWindows(dsdata.token_stream(split), args.seq_len) for split in ("train", "val", "test")}

    def evaluate_model(self, model, dataset, device, batch_size, args) -> dict:
        """The bigram baseline's perplexity on the same windows (computed once per dataset)."""
        if id(dataset) not in self._bigram:
            val = dsdata.LMWindows(dsdata.token_stream("val"), dataset[0][0].shape[0])
            self._bigram[id(dataset)] = dsdata.bigram_perplexity(
                dsdata.token_stream("train"), *windows_arrays(dataset), dsdata.load_tokenizer().get_vocab_size(),
                windows_arrays(val))["perplexity"]
        return {"bigram_perplexity": self._bigram[id(dataset)]}

    def predictions(self, model, args, inputs, count, out_dir) -> list[dict]:
        """The likeliest continuation (greedy) of each text in ``inputs`` (up to ``PREDICT_LENGTH``
        tokens, as the context allows), or else of the first half of each of ``count`` test windows,
        with the window's second half as the target."""
        tokenizer = dsdata.load_tokenizer()
        if inputs:
            pairs = [(tokenizer.encode(text).ids, None) for text in inputs]
        else:
            test = self.datasets(args)["test"]
            half = args.seq_len // 2
            windows = (test[i][0] for i in range(min(count, len(test))))
            pairs = [(ids[:half].tolist(), ids[half:].tolist()) for ids in windows]
        rows = []
        for prime, target in pairs:
            length = len(target) if target is not None else PREDICT_LENGTH
            ids = continue_tokens(model, args, prime, length, temperature=0.0)
            row = {"input": tokenizer.decode(prime), "prediction": tokenizer.decode(ids)}
            rows.append(row if target is None else dict(row, target=tokenizer.decode(target)))
        return rows


#: tokens ``pyfastdl predict`` continues a text of the user's by (at most: the context ends first)
PREDICT_LENGTH = 32


def continue_tokens(model, args, prime_ids: list, length: int, temperature: float = 1.0, seed: int | None = 0,
                    top_k: int | None = None) -> list:
    """Up to ``length`` tokens the GPT ``model`` (of the run ``args``) writes after reading
    ``prime_ids``, with the key-value cache; the context ends at the model's ``max_len``."""
    from .. import no_grad, tensor
    from ..text.sampling import sample

    prime_ids = list(prime_ids) or [dsdata.SEP]
    length = min(length, model.max_len - len(prime_ids))
    if length < 1:
        raise ValueError(f"the prime ({len(prime_ids)} tokens) leaves no room in {model.max_len} positions")
    model.eval()

    def step(ids, cache):
        cache = cache if cache is not None else model.new_cache()
        scores = model.step(tensor(ids, device=args.device), cache)
        return scores[:, -1].cpu().numpy()[0], cache

    with no_grad():
        return sample(step, prime_ids, length, temperature, seed, top_k=top_k)


def add_encoder_arguments(parser, d_model, layers, heads, seq_len, dropout) -> None:
    """The architecture flags GPT and BERT share."""
    add_option(parser, "d_model", d_model)
    add_option(parser, "layers", layers, "Transformer layers")
    add_option(parser, "heads", heads)
    add_option(parser, "d_ff", None, "feed-forward width (none: 4 d_model)")
    add_option(parser, "seq_len", seq_len, "tokens per sequence")
    add_option(parser, "dropout", dropout)


def sample_checkpoint(path: str, length: int = 100, temperature: float = 1.0, prime: str = "The ",
                      seed: int | None = 0, device: str = "auto", top_k: int | None = None) -> str:
    """``length`` tokens sampled from the GPT saved at ``path`` (a run directory or its checkpoint)
    after reading ``prime``, decoded to text, with the key-value cache (the context is cut to the
    model's ``max_len``: sampling stops there)."""
    from ..train.loop import CHECKPOINT_NAME, _restore, kernel_threads

    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_NAME)
    recipe, args, model = _restore(path, {"device": device})
    if not isinstance(recipe, GPTRecipe):
        raise ValueError(f"{path}: a {recipe.name} checkpoint is not a GPT")
    tokenizer = dsdata.load_tokenizer()
    with kernel_threads(getattr(args, "threads", None)):
        ids = continue_tokens(model, args, tokenizer.encode(prime).ids, length, temperature, seed, top_k)
    return tokenizer.decode(ids)
