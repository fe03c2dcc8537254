"""Tokenizers: how raw text becomes the tokens a Vocabulary numbers.

A tokenizer's ``config()`` is part of the corpus cache key and of every checkpoint, so that a
model is never paired with tokens cut a different way; ``make_tokenizer(**config)`` rebuilds it.
Tokenizers never emit the special tokens (``<pad>``, ``<unk>``, ``<eos>``): the word pattern
splits ``<`` and ``>`` off as punctuation, the char tokenizer yields single characters, and
the byte-level BPE pre-tokenizer never puts ``<`` and letters in one token.

``word`` and ``char`` are fixed rules. ``bpe`` learns its tokens from text: ``load_corpus``
trains it on the train split (:meth:`Tokenizer.train`), and the trained tokenizer's own JSON is
part of its config, so a checkpoint carries exactly the tokenizer its model was trained with.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from irlm_env.errors import IrlmError, suggest
from irlm_env.vocabulary import SPECIALS

if TYPE_CHECKING:
    from tokenizers import Tokenizer as HfTokenizer

# A word is a run of letters/digits/underscores, keeping inner apostrophes ("don't", "it's");
# every other non-space character is a token of its own.
_WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
#: Put before every unit the bpe tokenizer cuts, so that each starts a word as GPT-2's do.
_PREFIX = " "
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

    def train(self, units: Iterable[str], *, vocab_size: int | None, min_freq: int,
              show_progress: bool) -> Tokenizer:
        """This tokenizer trained on the text ``units`` (only if ``learns_from_text``)."""
        raise TypeError(f"the {self.name!r} tokenizer does not learn from text")

    def config(self) -> dict[str, object]:
        """JSON-able settings; ``make_tokenizer(**tokenizer.config())`` rebuilds this tokenizer."""
        return {"name": self.name, "lowercase": self.lowercase}

    def summary(self) -> dict[str, object]:
        """The settings a person reads (``config()`` without a learned model's bulk)."""
        return self.config()

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


class BpeTokenizer(Tokenizer):
    """Byte-level byte-pair encoding (as in GPT-2), trained with Hugging Face ``tokenizers``.

    ``load_corpus`` trains it on the train split: ``max_vocab`` is its vocabulary size (the
    special tokens included) and ``min_freq`` the fewest times a pair must occur to be merged.
    Byte-level means that any text can be cut, nothing is unknown to the tokenizer itself, and
    joining tokens gives the text back. Every unit is cut with a leading space, so a unit's
    first word is the same token as anywhere else. ``model`` is the trained tokenizer's JSON;
    it is checked to be such a tokenizer before it is loaded, since checkpoints come from
    anywhere.
    """

    name = "bpe"
    learns_from_text = True
    #: Tokens a byte-level model always holds: one per byte value.
    BYTES = 256
    #: The largest vocabulary it trains: its trainer reserves memory for max_vocab tokens at once
    #: (about 4 GB at 10**8), and 2**20 is far beyond what a corpus for this project yields.
    MAXIMUM = 2**20

    def __init__(self, lowercase: bool = True, model: str | None = None) -> None:
        super().__init__(lowercase)
        if model is not None and not isinstance(model, str):
            raise IrlmError(f"a bpe tokenizer's model must be its JSON text, got {type(model).__name__}")
        self.model = model
        self._hf = None if model is None else _load_bpe(model, lowercase)

    @classmethod
    def check_vocab_size(cls, max_vocab: int | None) -> int:
        minimum = len(SPECIALS) + cls.BYTES
        if max_vocab is None:
            raise IrlmError(
                f"the bpe tokenizer needs max_vocab, its vocabulary size (at least {minimum}); "
                "pass one, e.g. max_vocab=8000"
            )
        if max_vocab < minimum:
            raise IrlmError(
                f"max_vocab={max_vocab} is too small for the bpe tokenizer: it needs at least {minimum} "
                f"({len(SPECIALS)} special tokens + {cls.BYTES} byte tokens); use max_vocab >= {minimum}"
            )
        if max_vocab > cls.MAXIMUM:  # the trainer reserves tables of this size before reading any text
            raise IrlmError(
                f"max_vocab={max_vocab} is too large for the bpe tokenizer, whose trainer allocates its tables "
                f"up front; use max_vocab <= {cls.MAXIMUM:,}"
            )
        return max_vocab

    def train(self, units: Iterable[str], *, vocab_size: int | None, min_freq: int,
              show_progress: bool) -> BpeTokenizer:
        from tokenizers import Tokenizer as HfTokenizer
        from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

        size = self.check_vocab_size(vocab_size)
        hf = HfTokenizer(models.BPE())
        if self.lowercase:
            hf.normalizer = normalizers.Lowercase()
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=size - len(SPECIALS), min_frequency=min_freq, special_tokens=[],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=show_progress,
        )
        hf.train_from_iterator((_PREFIX + unit for unit in units), trainer=trainer)
        return BpeTokenizer(self.lowercase, hf.to_str())

    def _trained(self) -> HfTokenizer:
        if self._hf is None:
            raise IrlmError(
                "this bpe tokenizer is not trained yet: load_corpus(..., tokenizer='bpe') trains it on the "
                "corpus's train split; use that corpus's .tokenizer"
            )
        return self._hf

    def split(self, text: str) -> list[str]:
        # The space before each unit is added here, not left to ByteLevel's add_prefix_space,
        # which skips a text that already starts with one: join could not tell which it was.
        return self._trained().encode(_PREFIX + text, add_special_tokens=False).tokens

    def join(self, tokens: Sequence[str]) -> str:
        text = self._trained().decoder.decode(list(tokens))
        return text.removeprefix(_PREFIX)

    def config(self) -> dict[str, object]:
        config = super().config()
        if self.model is not None:
            config["model"] = self.model
        return config

    def summary(self) -> dict[str, object]:
        if self._hf is None or self.model is None:
            return {"name": self.name, "lowercase": self.lowercase, "trained": False}
        return {"name": self.name, "lowercase": self.lowercase, "trained_tokens": self._hf.get_vocab_size(),
                "model_sha256": hashlib.sha256(self.model.encode("utf-8")).hexdigest()[:12]}

    def __repr__(self) -> str:
        details = ", ".join(f"{key}={value!r}" for key, value in self.summary().items() if key != "name")
        return f"BpeTokenizer({details})"

    def __reduce__(self) -> tuple[type[BpeTokenizer], tuple[bool, str | None]]:
        return BpeTokenizer, (self.lowercase, self.model)


def _load_bpe(model: str, lowercase: bool) -> HfTokenizer:
    """The Hugging Face tokenizer in ``model``, if it is what :meth:`BpeTokenizer.train` makes."""
    try:
        data = json.loads(model)
    except ValueError:
        data = None
    parts = {"model": "BPE", "pre_tokenizer": "ByteLevel", "decoder": "ByteLevel"}
    if not (
        isinstance(data, dict)
        and all(isinstance(data.get(part), dict) and data[part].get("type") == kind for part, kind in parts.items())
        and data.get("normalizer") == ({"type": "Lowercase"} if lowercase else None)
    ):
        raise IrlmError(
            f"the bpe tokenizer's model is not a byte-level BPE tokenizer{' that lowercases' if lowercase else ''} "
            "as irlm_env trains them; rebuild it with load_corpus(..., tokenizer='bpe')"
        )
    from tokenizers import Tokenizer as HfTokenizer

    try:
        return HfTokenizer.from_str(model)
    except Exception as error:  # the Rust side raises plain Exception
        raise IrlmError(f"the bpe tokenizer's model cannot be loaded ({error}); rebuild it with "
                        "load_corpus(..., tokenizer='bpe')") from None


TOKENIZERS: dict[str, type[Tokenizer]] = {"word": WordTokenizer, "char": CharTokenizer, "bpe": BpeTokenizer}


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
