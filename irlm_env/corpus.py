"""Corpora: text units turned into one contiguous token-id array per split, cached on disk.

Every corpus, built-in or from a plugin, goes through the same pipeline: a registered factory
returns a :class:`CorpusSource` (text units: lines or sentences), the tokenizer cuts each unit,
the units are divided into contiguous train/validation/test blocks, the vocabulary is counted
on the train block only (so evaluation never leaks into it), and each split is encoded as
``[eos, w, w, eos, w, eos, ...]``: every unit is preceded and followed by ``<eos>``, so the
first token of a unit is predicted from an ``<eos>`` context, as after any other unit.

Tokenizing a few MB of text takes seconds, so the encoded arrays are cached in
``$IRLM_CACHE_DIR`` (default ``~/.cache/irlm_env``), keyed by the content hash of the units
plus the tokenizer and vocabulary settings; a changed file therefore never hits a stale entry.
Within a process, ``load_corpus`` memoizes on the :class:`~irlm_env.corpus_spec.CorpusSpec`
so that many environments share one read-only ``Corpus``.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from irlm_env.cache import cache_dir, write_cache_file
from irlm_env.corpora.registry import corpus_registry, make_corpus_source
from irlm_env.corpora.source import CorpusSource
from irlm_env.corpus_spec import CorpusSpec
from irlm_env.errors import IrlmError, suggest
from irlm_env.tokenizers import Tokenizer, make_tokenizer
from irlm_env.vocabulary import EOS, SPECIALS, Vocabulary

SPLITS: tuple[str, ...] = ("train", "validation", "test")
# Cumulative token-count fractions at which validation and test begin (90/5/5).
_SPLIT_FRACTIONS = (0.90, 0.95)
# Bumped whenever the cached layout or the encoding rules change, so old entries are ignored.
_CACHE_FORMAT = 1
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
        """The int64 token ids of split ``name`` ("train", "validation" or "test")."""
        try:
            return self.splits[name]
        except KeyError:
            raise IrlmError(f"unknown split {name!r}: {suggest(str(name), SPLITS)}") from None

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
    key = (spec, corpus_registry().get(spec.name).factory)  # a plugin re-registered: build again
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


def source_hash(units: Sequence[str]) -> str:
    """Content hash of the units; JSON keeps unit boundaries unambiguous."""
    return hashlib.sha256(json.dumps(list(units), ensure_ascii=False).encode("utf-8")).hexdigest()


def split_boundaries(unit_lengths: np.ndarray) -> tuple[int, int]:
    """Unit indices where validation and test begin: 90/5/5 by token count, each non-empty."""
    n = len(unit_lengths)
    cum = np.cumsum(unit_lengths)
    total = cum[-1]
    b1 = int(np.searchsorted(cum, _SPLIT_FRACTIONS[0] * total, side="left")) + 1
    b1 = min(max(b1, 1), n - 2)
    b2 = int(np.searchsorted(cum, _SPLIT_FRACTIONS[1] * total, side="left")) + 1
    b2 = min(max(b2, b1 + 1), n - 1)
    return b1, b2


def _build(spec: CorpusSpec, source: CorpusSource) -> Corpus:
    tok = make_tokenizer(spec.tokenizer, lowercase=spec.lowercase)
    max_vocab, min_freq = spec.max_vocab, spec.min_freq
    units = source.units
    _check_units(spec.name, units)
    digest = source_hash(units)
    settings = {"format": _CACHE_FORMAT, "source": digest, "tokenizer": tok.config(),
                "max_vocab": max_vocab, "min_freq": min_freq}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]
    cached = _read_cache(cache_dir() / "corpora", key, digest)
    if cached is None:
        cached = _encode(units, tok, max_vocab, min_freq)
        _write_cache(key, digest, *cached)
    vocab, ids, lengths = cached
    ids.flags.writeable = False
    bounds = np.concatenate([[0], np.cumsum(lengths)])
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


def _encode(units: Sequence[str], tok: Tokenizer, max_vocab: int | None,
            min_freq: int) -> tuple[Vocabulary, np.ndarray, list[int]]:
    cut = [tok.split(unit) for unit in units]
    b1, b2 = split_boundaries(np.fromiter((len(t) + 1 for t in cut), dtype=np.int64, count=len(cut)))
    vocab = Vocabulary.build(chain.from_iterable(cut[:b1]), max_vocab=max_vocab, min_freq=min_freq)
    flat: list[str] = []
    lengths = []
    for lo, hi in ((0, b1), (b1, b2), (b2, len(cut))):
        start = len(flat)
        flat.append(EOS)
        for tokens in cut[lo:hi]:
            flat.extend(tokens)
            flat.append(EOS)
        lengths.append(len(flat) - start)
    return vocab, vocab.encode(flat), lengths


def _array_digest(ids: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(ids))).hexdigest()


def _write_cache(key: str, digest: str, vocab: Vocabulary, ids: np.ndarray, lengths: list[int]) -> None:
    """Write the ids, then the JSON that vouches for them (the JSON is the commit marker).

    An unwritable cache only warns (see ``irlm_env.cache``): the corpus is in memory already.
    """
    buffer = io.BytesIO()
    np.save(buffer, ids, allow_pickle=False)
    if write_cache_file(Path("corpora", f"{key}.npy"), buffer.getvalue()):
        meta = {"format": _CACHE_FORMAT, "source": digest, "vocab": vocab.to_dict(),
                "lengths": lengths, "ids_sha256": _array_digest(ids)}
        write_cache_file(Path("corpora", f"{key}.json"), json.dumps(meta, ensure_ascii=False).encode("utf-8"))


def _read_cache(folder: Path, key: str, digest: str) -> tuple[Vocabulary, np.ndarray, list[int]] | None:
    """Return a verified cache entry, or None when it is missing or cannot be trusted.

    A cache entry is only derived data: the source can always be tokenized again, while a
    damaged entry (a disk error, a partial copy, a hand edit) would silently feed wrong token
    ids to training. So every entry is checked against the hashes stored with it, and any
    mismatch means rebuild, with a warning saying why.
    """
    meta_path, ids_path = folder / f"{key}.json", folder / f"{key}.npy"
    try:
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != _CACHE_FORMAT or meta.get("source") != digest:
            raise ValueError("it was written for other settings")
        vocab = Vocabulary.from_dict(meta["vocab"], where=f"cache file {str(meta_path)!r}")
        ids = np.load(ids_path, allow_pickle=False)
        lengths = [int(n) for n in meta["lengths"]]
        if ids.dtype != np.int64 or ids.ndim != 1 or len(ids) != sum(lengths) or len(lengths) != len(SPLITS):
            raise ValueError("the token array has the wrong shape or type")
        if _array_digest(ids) != meta["ids_sha256"]:
            raise ValueError("the token array does not match its hash")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        warnings.warn(f"rebuilding the corpus cache entry {str(meta_path)!r}: {exc}", RuntimeWarning, stacklevel=4)
        return None
    return vocab, ids, lengths
