"""Tokenizers: how raw text becomes the tokens a Vocabulary numbers.

A tokenizer's ``config()`` is part of the corpus cache key and of every checkpoint, so that a
model is never paired with tokens cut a different way; ``make_tokenizer(**config)`` rebuilds it.
Tokenizers never emit the special tokens (``<pad>``, ``<unk>``, ``<eos>``): the word pattern
splits ``<`` and ``>`` off as punctuation, and the char tokenizer yields single characters.
"""

from __future__ import annotations

import inspect
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from irlm_env.errors import IrlmError, suggest

# A word is a run of letters/digits/underscores, keeping inner apostrophes ("don't", "it's");
# every other non-space character is a token of its own.
_WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
# Detokenization: no space before closing punctuation, none after opening brackets.
_SPACE_BEFORE_CLOSE = re.compile(r" ([.,;:!?%)\]}])")
_SPACE_AFTER_OPEN = re.compile(r"([(\[{]) ")


class Tokenizer(ABC):
    """Splits text into tokens and joins tokens back into readable text."""

    name: str
    #: Whether ``load_corpus`` must train the tokenizer on the train split before cutting text.
    learns_from_text: ClassVar[bool] = False

    def __init__(self, lowercase: bool = True) -> None:
        if not isinstance(lowercase, bool):
            raise IrlmError(f"lowercase must be True or False, got {lowercase!r}")
        self.lowercase = lowercase

    @abstractmethod
    def split(self, text: str) -> list[str]: ...

    @abstractmethod
    def join(self, tokens: Sequence[str]) -> str: ...

    def split_many(self, texts: Sequence[str]) -> list[list[str]]:
        """``[split(text) for text in texts]``, which a tokenizer may do faster in one call."""
        return [self.split(text) for text in texts]

    @classmethod
    def check_vocab_size(cls, max_vocab: int | None) -> int | None:
        """``max_vocab``, unless this tokenizer cannot work with it (checked before any text is read)."""
        return max_vocab

    def train(self, batches: Iterable[list[str]], *, vocab_size: int | None, min_freq: int,
              show_progress: bool) -> Tokenizer:
        """This tokenizer trained on ``batches`` of text units (only if ``learns_from_text``)."""
        raise TypeError(f"the {self.name!r} tokenizer does not learn from text")

    def config(self) -> dict[str, object]:
        """JSON-able settings; ``make_tokenizer(**tokenizer.config())`` rebuilds this tokenizer."""
        return {"name": self.name, "lowercase": self.lowercase}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lowercase={self.lowercase})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.config().items())))


class WordTokenizer(Tokenizer):
    """Words and punctuation marks as separate tokens, optionally lowercased."""

    name = "word"

    def split(self, text: str) -> list[str]:
        return _WORD.findall(text.lower() if self.lowercase else text)

    def join(self, tokens: Sequence[str]) -> str:
        text = " ".join(tokens)
        return _SPACE_AFTER_OPEN.sub(r"\1", _SPACE_BEFORE_CLOSE.sub(r"\1", text))


class CharTokenizer(Tokenizer):
    """Single characters, spaces included, optionally lowercased.

    ``lowercase`` is honoured here too, so the one ``lowercase`` switch of ``load_corpus`` and
    the environment means the same thing for every tokenizer.
    """

    name = "char"

    def split(self, text: str) -> list[str]:
        return list(text.lower() if self.lowercase else text)

    def join(self, tokens: Sequence[str]) -> str:
        return "".join(tokens)


TOKENIZERS: dict[str, type[Tokenizer]] = {"word": WordTokenizer, "char": CharTokenizer}


def make_tokenizer(name: str, **options: Any) -> Tokenizer:
    """Build a tokenizer by name; unknown names and options are errors with a hint."""
    cls = TOKENIZERS.get(name)
    if cls is None:
        raise IrlmError(f"unknown tokenizer {name!r}: {suggest(str(name), TOKENIZERS)}")
    accepted = [p for p in inspect.signature(cls).parameters]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise IrlmError(
            f"tokenizer {name!r} has no option {unknown[0]!r}; accepted options: {', '.join(accepted)}"
        )
    return cls(**options)
