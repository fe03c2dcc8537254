"""The corpus and tokenizer settings as one value: built once, carried down, saved and read back.

A run builds a :class:`CorpusSpec` from its arguments, hands it to ``load_corpus`` and the
envs, and writes ``spec.to_dict()`` into every checkpoint, so ``irlm eval`` rebuilds exactly
the corpus the model was trained on instead of guessing settings. The source options are bound
to the corpus factory's signature on construction, so ``seed="60"`` (from a command line) and
``seed=60`` are the same spec, and a typo fails here, before any text is read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import numpy as np

from irlm_env.corpora.registry import bind_corpus_options
from irlm_env.errors import IrlmError, suggest
from irlm_env.options import check_int
from irlm_env.tokenizers import TOKENIZERS
from irlm_env.vocabulary import check_vocab_options

#: Option values a spec can hold: what a JSON checkpoint header can carry back unchanged.
_SCALARS = (str, bool, int, float, type(None))


@dataclass(frozen=True)
class CorpusSpec:
    """Which corpus, with which source options, cut by which tokenizer into which vocabulary.

    ``options`` holds the corpus factory's options after binding (strings converted to the
    annotated types, paths to strings); it is a read-only mapping, so a spec can be shared and
    used as a key.
    """

    name: str = "pydocs"
    options: Mapping[str, Any] = field(default_factory=dict)
    tokenizer: str = "word"
    lowercase: bool = True
    max_vocab: int | None = 10000
    min_freq: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise IrlmError(f"corpus must be a corpus name, a CorpusSpec or a Corpus, got {self.name!r}")
        if not isinstance(self.options, Mapping) or not all(isinstance(k, str) for k in self.options):
            raise IrlmError(
                f"corpus options must be a mapping of option names to values, got {self.options!r}"
            )
        if self.tokenizer not in TOKENIZERS:
            raise IrlmError(f"unknown tokenizer {self.tokenizer!r}: {suggest(str(self.tokenizer), TOKENIZERS)}")
        if not isinstance(self.lowercase, bool):
            raise IrlmError(f"lowercase must be True or False, got {self.lowercase!r}")
        max_vocab, min_freq = check_vocab_options(self.max_vocab, self.min_freq)
        max_vocab = TOKENIZERS[self.tokenizer].check_vocab_size(max_vocab)
        object.__setattr__(self, "max_vocab", max_vocab)
        object.__setattr__(self, "min_freq", min_freq)
        options = {key: _plain(self.name, key, value) for key, value in self.options.items()}
        bound = bind_corpus_options(self.name, options)
        frozen = MappingProxyType({key: _plain(self.name, key, bound[key]) for key in sorted(bound)})
        object.__setattr__(self, "options", frozen)

    def __hash__(self) -> int:
        return hash((self.name, tuple(self.options.items()), self.tokenizer, self.lowercase,
                     self.max_vocab, self.min_freq))

    def __getstate__(self) -> dict[str, Any]:  # a mappingproxy does not pickle; its dict does
        return {**vars(self), "options": dict(self.options)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, MappingProxyType(value) if key == "options" else value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings; ``CorpusSpec.from_dict(spec.to_dict()) == spec``."""
        return {f.name: dict(self.options) if f.name == "options" else getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: object, *, where: str = "corpus spec") -> CorpusSpec:
        """Read a spec back from ``to_dict`` output, checking every field's type first.

        Checkpoint headers come from anywhere (``irlm eval`` takes any file), so a wrong type
        is a one-line error naming the field rather than a crash deep inside corpus loading.
        """
        if not isinstance(data, Mapping):
            raise IrlmError(f"{where} must be a JSON object, got {type(data).__name__}")
        expected = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(expected), key=str)
        if unknown:
            raise IrlmError(f"{where} has an unknown field {unknown[0]!r}; {suggest(str(unknown[0]), expected)}")
        missing = [name for name in expected if name not in data]
        if missing:
            raise IrlmError(f"{where} lacks the field(s) {', '.join(missing)}; it was not written by to_dict()")
        _expect(where, "name", data["name"], str, "a string")
        _expect(where, "options", data["options"], dict, "a JSON object")
        for key, value in data["options"].items():
            if not isinstance(key, str) or not isinstance(value, _SCALARS):
                raise IrlmError(
                    f"{where} field 'options' has {key!r}: {value!r}; option values must be strings, "
                    "numbers, booleans or null"
                )
        _expect(where, "tokenizer", data["tokenizer"], str, "a string")
        _expect(where, "lowercase", data["lowercase"], bool, "true or false")
        if data["max_vocab"] is not None:
            check_int(f"{where} field 'max_vocab'", data["max_vocab"], minimum=0)
        check_int(f"{where} field 'min_freq'", data["min_freq"])
        return cls(data["name"], data["options"], data["tokenizer"], data["lowercase"], data["max_vocab"],
                   data["min_freq"])


def _expect(where: str, name: str, value: object, kind: type, described: str) -> None:
    if not isinstance(value, kind):
        raise IrlmError(f"{where} field {name!r} must be {described}, got {type(value).__name__} {value!r}")


def _plain(corpus: str, option: str, value: Any) -> Any:
    """An option value as the JSON scalar a checkpoint stores: paths become strings, numpy
    scalars Python ones; anything else could not be saved and read back the same."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    elif isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, _SCALARS):
        raise IrlmError(
            f"corpus {corpus!r} option {option}={value!r} is a {type(value).__name__}; options must be "
            "strings, numbers, booleans or None so that the settings can be saved with a checkpoint"
        )
    return value
