"""The translation recipe family: what every encoder-decoder model shares in the training loop.

A model recipe subclasses :class:`TranslationRecipe`, sets ``name``/``description`` (and class
defaults such as ``label_smoothing``), and implements ``add_model_arguments(parser)``,
``make_model(args, src_vocab_size, tgt_vocab_size)`` and ``default_hparams(args)``. The model
implements the decoding protocol of :mod:`pyfastdl.text.translation`. Everything else is here:

* data: English -> German number words (default; ``--train-size``/``--val-size``/``--test-size`` numbers
  from :func:`pyfastdl.data.translation.number_split`, so no validation or test number is seen in
  training), or the user's parallel text (``--src FILE --tgt FILE``, tokenised by
  :func:`pyfastdl.data.translation.tokenize`; ``--val-fraction``/``--test-fraction`` of the lines,
  chosen by a fixed seed, are held out). Vocabularies are built from the training split only
  (``--min-freq``) and saved in the checkpoint's metadata (JSON; no pickle).
* batches ``(src, src_lengths, tgt_in, tgt_out)``; the model gets ``(src, src_lengths, tgt_in)``.
* loss: teacher-forced cross-entropy over non-<pad> targets, with ``--label-smoothing``.
* metrics: ``token_accuracy`` (teacher forced, every batch), and on validation and test the
  ``exact_match`` and corpus ``bleu`` (sacrebleu) of decoding (greedy, or ``--beam N`` with
  ``--length-penalty``) -- ``exact_match`` is the main metric.
* ``pyfastdl translate RUN "forty-two"`` (:func:`translate_checkpoint`), with ``--alignment out.png``
  for models that have ``alignment()``; ``pyfastdl predict RUN`` translates test sentences (or the
  sentences given) beside their references.
"""

from __future__ import annotations

import argparse

import numpy as np

from ..data import translation as data
from ..data.dataset import Subset
from ..text import translation as text
from ..train.options import add_option
from ..train.recipe import Recipe

__all__ = ["TranslationRecipe", "translate_checkpoint"]

#: Seed of the fixed held-out split of user-supplied parallel text (independent of --seed).
HELD_OUT_SEED = 1


class TranslationRecipe(Recipe):
    """Base recipe for sequence-to-sequence translation models (see the module docstring)."""

    main_metric = "exact_match"
    collate_fn = staticmethod(text.collate_translation)
    #: default of --label-smoothing for this model
    label_smoothing = 0.0
    #: sentences decoded at once in evaluation (decoding is many small steps: big batches amortise them)
    decode_batch_size = 500
    #: the label smoothing loss_fn uses: --label-smoothing of the model last built
    loss_smoothing = None

    # ---- what a model recipe provides ----
    def add_model_arguments(self, parser) -> None:
        """The model's architecture flags."""

    def make_model(self, args: argparse.Namespace, src_vocab_size: int, tgt_vocab_size: int):
        raise NotImplementedError

    # ---- the shared part ----
    def add_arguments(self, parser) -> None:
        parser.add_argument("--src", help="source-language text, one sentence a line (with --tgt; default: the "
                                          "English -> German number task)")
        parser.add_argument("--tgt", help="target-language text, line i translating line i of --src")
        parser.add_argument("--min-freq", type=int, default=1,
                            help="keep tokens seen at least this often in training (others: <unk>; default 1)")
        add_option(parser, "train_size", 20_000, "numbers: training numbers")
        add_option(parser, "val_size", 300, "numbers: validation numbers")
        add_option(parser, "test_size", 2_000, "numbers: held-out test numbers")
        parser.add_argument("--val-fraction", type=float, default=0.05,
                            help="parallel text: fraction of lines held out for validation (default 0.05)")
        parser.add_argument("--test-fraction", type=float, default=0.1,
                            help="parallel text: fraction of lines held out for testing (default 0.1)")
        parser.add_argument("--label-smoothing", type=float, default=self.label_smoothing,
                            help=f"label smoothing of the loss (default {self.label_smoothing})")
        parser.add_argument("--beam", type=int, default=1, help="beam size for evaluation decoding (1: greedy)")
        parser.add_argument("--length-penalty", type=float, default=0.6,
                            help="beam search length penalty alpha, GNMT's ((5+L)/6)^alpha (default 0.6)")
        self.add_model_arguments(parser)

    def _pairs(self, args):
        """(train, val, test) lists of (source tokens, target tokens)."""
        if (args.src is None) != (args.tgt is None):
            raise ValueError("--src and --tgt go together (parallel text), or neither (the number task)")
        if args.src is None:
            train, held = data.number_split(args.train_size, args.val_size + args.test_size, seed=0)
            splits = (train, held[args.test_size:], held[: args.test_size])
            return [[(data.tokenize(e), data.tokenize(g)) for e, g in data.number_pairs(s)] for s in splits]
        from ..data import random_split_indices

        pairs = [(data.tokenize(s), data.tokenize(t)) for s, t in data.read_parallel_text(args.src, args.tgt)]
        fractions = [1.0 - args.val_fraction - args.test_fraction, args.val_fraction, args.test_fraction]
        if fractions[0] <= 0:
            raise ValueError(f"--val-fraction + --test-fraction must be below 1, got {1 - fractions[0]}")
        return [[pairs[i] for i in idx] for idx in random_split_indices(len(pairs), fractions, HELD_OUT_SEED)]

    def datasets(self, args: argparse.Namespace) -> dict:
        train, val, test = self._pairs(args)
        if getattr(args, "src_vocab", None) is None:  # a restored checkpoint brings its own
            args.src_vocab = data.Vocab.build([s for s, _ in train], args.min_freq)
            args.tgt_vocab = data.Vocab.build([t for _, t in train], args.min_freq)

        def dataset(pairs):
            return text.TranslationDataset(pairs, args.src_vocab, args.tgt_vocab) if pairs else None

        return {"train": dataset(train), "val": dataset(val), "test": dataset(test)}

    def build_model(self, args: argparse.Namespace):
        if getattr(args, "src_vocab", None) is None:
            self.datasets(args)
        self.loss_smoothing = args.label_smoothing  # the loss of this run (the class default stays)
        return self.make_model(args, len(args.src_vocab), len(args.tgt_vocab))

    def checkpoint_metadata(self, args) -> dict:
        return {"vocab": {"source": args.src_vocab.itos, "target": args.tgt_vocab.itos}}

    def restore_metadata(self, args, metadata: dict) -> None:
        args.src_vocab = data.Vocab(metadata["vocab"]["source"])
        args.tgt_vocab = data.Vocab(metadata["vocab"]["target"])

    def split_batch(self, batch):
        src, src_lengths, tgt_in, tgt_out = batch
        return (src, src_lengths, tgt_in), tgt_out

    def loss_fn(self, output, target):
        from ..nn import functional as F

        smoothing = self.label_smoothing if self.loss_smoothing is None else self.loss_smoothing
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1),
                               ignore_index=data.Vocab.PAD, label_smoothing=smoothing)

    def metrics(self) -> dict:
        return {"token_accuracy": text.TokenAccuracy()}

    @staticmethod
    def _translation_dataset(dataset):
        """The TranslationDataset behind ``dataset`` (the loop wraps it in a Subset for --limit) and the
        indices of ``dataset``'s sentences in it."""
        if isinstance(dataset, Subset):
            return dataset.dataset, dataset.indices
        return dataset, range(len(dataset))

    def decode(self, model, dataset, device, batch_size, beam=1, alpha=0.6):
        """Decode every source sentence of ``dataset``: list of target token lists."""
        vocab = self._translation_dataset(dataset)[0].tgt_vocab
        out = []
        for start in range(0, len(dataset), batch_size):
            src, src_lengths, _, _ = text.collate_translation([dataset[i] for i in
                                                               range(start, min(start + batch_size, len(dataset)))])
            for ids in text.translate(model, src, src_lengths, device, beam, alpha):
                out.append(vocab.decode(ids))
        return out

    def evaluate_model(self, model, dataset, device, batch_size, args) -> dict:
        beam, alpha = (args.beam, args.length_penalty) if args is not None else (1, 0.6)
        hyps = self.decode(model, dataset, device, max(batch_size, self.decode_batch_size), beam, alpha)
        base, indices = self._translation_dataset(dataset)
        refs = [base.pairs[i][1] for i in indices]
        return {"exact_match": text.exact_match(hyps, refs), "bleu": text.corpus_bleu(hyps, refs)}

    def predict(self, output):
        return output.argmax(-1)

    def predictions(self, model, args, inputs, count, out_dir) -> list[dict]:
        """The translations (beam and length penalty of the run) of the sentences in ``inputs``, or
        else of the first ``count`` test sentences, with their reference translations."""
        if inputs:
            pairs = [(data.tokenize(sentence), None) for sentence in inputs]
        else:
            pairs = self._pairs(args)[2][:count]
        ids, _ = translate_tokens(model, args, [source for source, _ in pairs], args.beam, args.length_penalty)
        show = _shown(args)
        return [{"input": data.detokenize(source), "prediction": show(args.tgt_vocab.decode(i))}
                | ({} if target is None else {"target": show(target)}) for (source, target), i in zip(pairs, ids)]


def _shown(args):
    """How a target sentence (tokens) is shown: the generated English -> German numbers as German
    writes them, the user's own parallel text as tokenized."""
    return data.german_number_text if getattr(args, "tgt", None) is None else data.detokenize


def translate_tokens(model, args, sources: list, beam: int = 1, alpha: float = 0.6) -> tuple:
    """``(ids, (src, src_lengths))``: the target ids ``model`` (of the run ``args``) decodes for each
    tokenized source sentence, and the source batch it read."""
    src, src_lengths, _, _ = text.collate_translation([(args.src_vocab.encode(t), np.array([data.Vocab.EOS]))
                                                        for t in sources])
    return text.translate(model, src, src_lengths, args.device, beam, alpha), (src, src_lengths)


def translate_checkpoint(path: str, sentences: list[str], beam: int = 1, alpha: float = 0.6, device: str = "auto",
                         alignment: str | None = None) -> list[str]:
    """Translate ``sentences`` with the model saved at ``path`` (a run directory or its
    checkpoint.safetensors); ``beam`` 1 is greedy. ``alignment``: a PNG path for the attention heat
    map of the first sentence (models with ``alignment()`` only). Returns the translations."""
    from .. import no_grad, tensor
    from ..train.loop import _restore, checkpoint_path, kernel_threads

    recipe, args, model = _restore(checkpoint_path(path), {"device": device})
    if not isinstance(recipe, TranslationRecipe):
        raise ValueError(f"{path}: a {recipe.name} checkpoint is not a translation model")
    if alignment and not hasattr(model, "alignment"):
        raise ValueError(f"--alignment: the {recipe.name} model does not expose attention weights")
    with kernel_threads(getattr(args, "threads", None)):
        ids, (src, src_lengths) = translate_tokens(model, args, [data.tokenize(s) for s in sentences], beam, alpha)
        if alignment:
            tgt_in = np.array([[data.Vocab.BOS] + ids[0]], dtype=np.int64)
            with no_grad():
                model.eval()
                weights = model.alignment(tensor(src[:1], device=args.device),
                                          tensor(src_lengths[:1], device=args.device),
                                          tensor(tgt_in, device=args.device)).cpu().numpy()[0]
            src_tokens = [args.src_vocab.itos[i] for i in src[0, : src_lengths[0]]]
            out_tokens = [args.tgt_vocab.itos[i] for i in ids[0]] + ["<eos>"]
            text.plot_alignment(weights[:, : src_lengths[0]], src_tokens, out_tokens, alignment,
                                title=f"{recipe.name}: {sentences[0]}")
    return [_shown(args)(args.tgt_vocab.decode(i)) for i in ids]
