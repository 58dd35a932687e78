"""Text utilities shared by the language models: decoding."""

from .decoding import beam_search, greedy_search, length_penalty  # noqa: F401
