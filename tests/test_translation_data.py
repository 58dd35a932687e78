"""The number-translation generator, the tokenizer, the vocabulary and the parallel-text loader."""

import pytest

from pyfastdl.data.parallel_text import (
    Vocab,
    detokenize,
    english_words,
    german_words,
    number_pairs,
    number_split,
    pad_sequences,
    read_parallel_text,
    tokenize,
)

# Checked by hand against German orthography (written as one word, e.g. "neunhundertneunundneunzig-
# tausend...", here split into its parts).
CASES = {
    0: ("zero", "null"),
    1: ("one", "eins"),
    7: ("seven", "sieben"),
    11: ("eleven", "elf"),
    12: ("twelve", "zwölf"),
    16: ("sixteen", "sechzehn"),
    17: ("seventeen", "siebzehn"),
    20: ("twenty", "zwanzig"),
    21: ("twenty-one", "ein und zwanzig"),
    30: ("thirty", "dreißig"),
    42: ("forty-two", "zwei und vierzig"),
    100: ("one hundred", "ein hundert"),
    101: ("one hundred one", "ein hundert eins"),
    111: ("one hundred eleven", "ein hundert elf"),
    342: ("three hundred forty-two", "drei hundert zwei und vierzig"),
    1000: ("one thousand", "ein tausend"),
    1001: ("one thousand one", "ein tausend eins"),
    2021: ("two thousand twenty-one", "zwei tausend ein und zwanzig"),
    31000: ("thirty-one thousand", "ein und dreißig tausend"),
    100000: ("one hundred thousand", "ein hundert tausend"),
    201001: ("two hundred one thousand one", "zwei hundert ein tausend eins"),
    999999: ("nine hundred ninety-nine thousand nine hundred ninety-nine",
             "neun hundert neun und neunzig tausend neun hundert neun und neunzig"),
}


@pytest.mark.parametrize("n", sorted(CASES))
def test_number_words(n):
    assert (english_words(n), german_words(n)) == CASES[n]


@pytest.mark.parametrize("bad", [-1, 1_000_000, 2.5, "7"])
def test_number_range(bad):
    with pytest.raises(ValueError, match="number must be an integer"):
        german_words(bad)


def test_split_is_disjoint_deterministic_and_balanced():
    train, test = number_split(n_train=3000, n_test=600, seed=3)
    assert len(train) == 3000 and len(test) == 600
    assert not set(train) & set(test)
    assert (train, test) == number_split(n_train=3000, n_test=600, seed=3)
    assert set(range(1, 100)) <= set(train)  # the building blocks are always seen in training
    for numbers, lengths in ((train, range(3, 7)), (test, range(3, 7))):
        digits = [len(str(n)) for n in numbers]
        assert all(digits.count(d) > len(numbers) / 8 for d in lengths)
    assert number_pairs([42]) == [("forty-two", "zwei und vierzig")]


def test_tokenize_roundtrip():
    assert tokenize("Forty-two!") == ["forty", "-", "two", "!"]
    assert detokenize(tokenize(english_words(999_999))) == english_words(999_999)


def test_vocab():
    sents = [tokenize("a b b c"), tokenize("b c d")]
    v = Vocab.build(sents, min_freq=2)
    assert v.itos == ["<pad>", "<bos>", "<eos>", "<unk>", "b", "c"]
    ids = v.encode(["b", "zzz", "c"], bos=True)
    assert ids.tolist() == [Vocab.BOS, 4, Vocab.UNK, 5, Vocab.EOS]
    assert v.decode(list(ids) + [4, 4]) == ["b", "<unk>", "c"]
    with pytest.raises(ValueError, match="min_freq"):
        Vocab.build(sents, min_freq=0)


def test_pad_sequences():
    batch, lengths = pad_sequences([[5, 6, 7], [8]])
    assert batch.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]


def test_parallel_text(tmp_path):
    src, tgt = tmp_path / "train.en", tmp_path / "train.de"
    src.write_text("hello world\ngood morning\n", encoding="utf-8")
    tgt.write_text("hallo welt\nguten morgen\n", encoding="utf-8")
    assert read_parallel_text(src, tgt) == [("hello world", "hallo welt"), ("good morning", "guten morgen")]
    tgt.write_text("hallo welt\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has 2 lines but .* has 1"):
        read_parallel_text(src, tgt)
    with pytest.raises(FileNotFoundError, match="no file at"):
        read_parallel_text(tmp_path / "missing.en", tgt)


def test_german_numbers_are_shown_as_german_writes_them():
    from pyfastdl.data.parallel_text import german_number_text

    assert german_number_text(tokenize(german_words(342))) == "dreihundertzweiundvierzig"
    assert german_number_text(tokenize(german_words(999_999))) == (
        "neunhundertneunundneunzigtausendneunhundertneunundneunzig")
    for n in (1, 17, 20, 100, 1000, 70_007, 101_021, 123_456):
        assert german_number_text(tokenize(german_words(n))) == "".join(german_words(n).split())
    # other tokens keep their spaces; "und" joins only between a unit and a tens word
    assert german_number_text(["katze", "und", "hund"]) == "katze und hund"
    assert german_number_text(["zwei", "und", "hund"]) == "zwei und hund"
    assert german_number_text(["es", "sind", "drei", "hundert", "."]) == "es sind dreihundert ."
