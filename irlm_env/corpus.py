"""Corpora: text units turned into one contiguous token-id array per split, cached on disk.

Every corpus, built-in or from a plugin, goes through the same pipeline: a registered factory
returns a :class:`CorpusSource` (text units: lines or sentences), the tokenizer cuts each unit,
the units are divided into contiguous train/validation/test blocks, the vocabulary is counted
on the train block only (so evaluation never leaks into it), and each split is encoded as
``[eos, w, w, eos, w, eos, ...]``: every unit is preceded and followed by ``<eos>``, so the
first token of a unit is predicted from an ``<eos>`` context, as after any other unit. The
ids are stored in the smallest unsigned integer type that holds the vocabulary (uint16 for up
to 65,536 tokens); ``irlm_env.corpus_encoding`` does all this streaming, in bounded memory.

Tokenizing takes seconds to minutes, so the encoded arrays are cached in ``$IRLM_CACHE_DIR``
(default ``~/.cache/irlm_env``; see ``irlm_env.corpus_cache``), keyed by the content hash of
the units plus the tokenizer and vocabulary settings; a changed file therefore never hits a
stale entry. Within a process, ``load_corpus`` memoizes on the
:class:`~irlm_env.corpus_spec.CorpusSpec` so that many environments share one read-only
``Corpus``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from irlm_env.corpora.registry import corpus_entry, make_corpus_source
from irlm_env.corpora.source import CorpusSource
from irlm_env.corpus_cache import cache_key, read_cached, write_cached
from irlm_env.corpus_encoding import SPLITS, encode_units, source_hash
from irlm_env.corpus_spec import CorpusSpec
from irlm_env.errors import IrlmError, suggest
from irlm_env.tokenizers import Tokenizer, make_tokenizer
from irlm_env.vocabulary import SPECIALS, Vocabulary

#: Share of ``<unk>`` among the train split's tokens above which loading warns.
UNKNOWN_RATE_WARNING = 0.10


class CorpusWarning(UserWarning):
    """A corpus that loads but is unlikely to be what the user wants (mostly ``<unk>``, say)."""


@dataclass(frozen=True, eq=False)
class Corpus:
    """A tokenized corpus: vocabulary, tokenizer and read-only train/validation/test arrays.

    ``spec`` is the settings it was built from; ``load_corpus(corpus.spec)`` builds it again.
    """

    spec: CorpusSpec
    vocab: Vocabulary
    tokenizer: Tokenizer
    splits: Mapping[str, np.ndarray]
    source_hash: str
    best_accuracy: float | None = None
    _line_starts: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def split(self, name: str) -> np.ndarray:
        """The token ids of split ``name`` ("train", "validation" or "test"), read-only, in
        ``vocab.id_dtype`` (the smallest unsigned type that holds the vocabulary); convert with
        ``.astype(np.int64)`` where a consumer needs int64 (torch embeddings, say)."""
        split = self.splits.get(name) if isinstance(name, str) else None
        if split is None:
            raise IrlmError(f"unknown split {name!r}: {suggest(str(name), SPLITS)}")
        return split

    def line_starts(self, name: str) -> np.ndarray:
        """Positions of the ``<eos>`` that begins each unit (every ``<eos>`` but the last).

        ``line`` episodes start at these positions, so the first target is a unit's first token.
        """
        starts = self._line_starts.get(name)
        if starts is None:
            ids = self.split(name)
            starts = np.flatnonzero(ids[:-1] == self.vocab.eos_id).astype(np.int64)
            starts.flags.writeable = False
            self._line_starts[name] = starts
        return starts

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return f"Corpus(name={self.name!r}, vocab={len(self.vocab)}, tokenizer={self.tokenizer!r}, {sizes})"


_MEMO: dict[tuple[CorpusSpec, Callable[..., Any]], Corpus] = {}


def clear_memo() -> None:
    """Forget the corpora loaded in this process (the on-disk cache is kept)."""
    _MEMO.clear()


def load_corpus(
    name: str | CorpusSpec = "pydocs",
    *,
    tokenizer: str = "word",
    lowercase: bool = True,
    max_vocab: int | None = 10000,
    min_freq: int = 1,
    **source_options: Any,
) -> Corpus:
    """Load a corpus, tokenized, split and cached, from a :class:`CorpusSpec` or its fields.

    ``source_options`` go to the corpus factory (for example ``path=`` for ``text``, ``seed=``
    for ``grammar``); string values are converted to the factory's annotated int, float or bool
    types, so options given on a command line work unchanged. A spec carries all of these
    settings itself, so none may be passed with one.

    The result is memoized on the spec for the life of the process, so every env gets the same
    object cheaply; after editing a ``text`` file in a running process, call
    :func:`clear_memo` (the disk cache notices the change by itself: it is keyed by content).
    """
    if isinstance(name, CorpusSpec):
        given = {"tokenizer": tokenizer, "lowercase": lowercase, "max_vocab": max_vocab, "min_freq": min_freq}
        changed = sorted({k for k, v in given.items() if v != getattr(CorpusSpec, k)} | set(source_options))
        if changed:
            raise IrlmError(
                f"load_corpus(spec) got {', '.join(changed)} as well; a CorpusSpec holds every setting, "
                "so change the spec instead (dataclasses.replace(spec, ...))"
            )
        spec = name
    else:
        spec = CorpusSpec(name, source_options, tokenizer, lowercase, max_vocab, min_freq)
    key = (spec, corpus_entry(spec.name).factory)  # a plugin re-registered: build again
    corpus = _MEMO.get(key)
    if corpus is None:
        corpus = _build(spec, make_corpus_source(spec.name, spec.options))
        _MEMO[key] = corpus
    return corpus


def _check_units(name: str, units: Sequence[str]) -> None:
    if isinstance(units, str) or not isinstance(units, Sequence):
        raise IrlmError(
            f"corpus {name!r}: CorpusSource.units is a {type(units).__name__}; it must be a list of "
            "strings, one per line or sentence (fix the corpus factory)"
        )
    if len(units) == 0:
        raise IrlmError(f"corpus {name!r} has no text: it is empty or whitespace only; give it some text")
    for i, unit in enumerate(units):
        if not isinstance(unit, str) or not unit.strip():
            raise IrlmError(
                f"corpus {name!r}: unit {i} is {unit!r}; every unit must be a non-empty string "
                "(fix the corpus factory)"
            )
    if len(units) < len(SPLITS):
        raise IrlmError(
            f"corpus {name!r} has only {len(units)} line(s)/sentence(s); it needs at least "
            f"{len(SPLITS)} to give train, validation and test one each; add more text"
        )


def _encodable(unit: str) -> bool:
    try:
        unit.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _build(spec: CorpusSpec, source: CorpusSource) -> Corpus:
    tok = make_tokenizer(spec.tokenizer, lowercase=spec.lowercase)
    units = source.units
    _check_units(spec.name, units)
    try:
        digest = source_hash(units)
    except UnicodeEncodeError:  # lone surrogates, as text read with errors="surrogateescape" keeps bytes
        bad = next(i for i, unit in enumerate(units) if not _encodable(unit))
        raise IrlmError(
            f"corpus {spec.name!r}: unit {bad} holds characters that are not text ({units[bad][:40]!r}...), as "
            "undecodable bytes kept by errors='surrogateescape' are; decode the text with errors='replace' in the "
            "corpus factory"
        ) from None
    key = cache_key(digest, tok, spec.max_vocab, spec.min_freq)
    encoded = read_cached(key, digest, tok)
    if encoded is None:
        encoded = encode_units(f"corpus {spec.name!r}", units, tok, spec.max_vocab, spec.min_freq)
        write_cached(key, digest, encoded)
    vocab, ids, tok = encoded.vocab, encoded.ids, encoded.tokenizer
    ids.flags.writeable = False
    bounds = np.concatenate([[0], np.cumsum(encoded.lengths)])
    splits = {s: ids[bounds[i]:bounds[i + 1]] for i, s in enumerate(SPLITS)}
    _warn_if_mostly_unknown(spec, vocab, splits["train"])
    best = source.best_accuracy
    if best is not None and (
        (source.best_accuracy_tokenizer is not None and source.best_accuracy_tokenizer != tok.name)
        or np.any(ids == vocab.unk_id)
    ):
        best = None  # the known optimum is for other tokens than these
    return Corpus(spec=spec, vocab=vocab, tokenizer=tok, splits=splits, source_hash=digest, best_accuracy=best)


def _warn_if_mostly_unknown(spec: CorpusSpec, vocab: Vocabulary, train: np.ndarray) -> None:
    """Warn when the vocabulary limits turn much of the train split into ``<unk>``.

    Such an env loads and trains without error, yet an agent mostly learns to say ``<unk>``;
    only ``max_vocab`` or ``min_freq`` can cause it, since train tokens make up the vocabulary.
    """
    words = len(train) - np.count_nonzero(train == vocab.eos_id)
    rate = np.count_nonzero(train == vocab.unk_id) / max(words, 1)
    if rate <= UNKNOWN_RATE_WARNING:
        return
    causes, fixes = [], []
    if spec.max_vocab is not None and len(vocab) == spec.max_vocab:
        causes.append(f"max_vocab={spec.max_vocab} keeps only the {spec.max_vocab - len(SPECIALS)} most frequent tokens")
        fixes.append("raise max_vocab (None: no limit)")
    if spec.min_freq > 1:
        causes.append(f"min_freq={spec.min_freq} turns every token seen fewer times into <unk>")
        fixes.append("lower min_freq")
    warnings.warn(
        f"corpus {spec.name!r}: {rate:.1%} of the train split's tokens are <unk> (more than "
        f"{UNKNOWN_RATE_WARNING:.0%}): {' and '.join(causes)}; {' or '.join(fixes)} unless that is intended",
        CorpusWarning,
        stacklevel=4,
    )
