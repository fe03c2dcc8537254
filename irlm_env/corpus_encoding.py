"""Tokenizing a corpus in one streaming pass: text units in, one compact token-id array out.

Holding every token of a large text as a Python string costs about 60 bytes a token (a 50 MB
file peaked at 941 MB), so the units are cut a chunk at a time and each token is replaced at
once by a provisional id, the order of its first appearance, stored in the smallest integer
type that holds the ids seen so far. Only then, with every unit's length known, are the
train/validation/test boundaries fixed and the vocabulary counted on the train block; a
look-up table turns provisional ids into final ones, chunk by chunk, into one preallocated
array of the smallest unsigned type that holds the vocabulary (``Vocabulary.id_dtype``).
Peak memory is thus the text, about 2-4 bytes a token of provisional ids, and the result.

A tokenizer that learns from text (``bpe``) cannot define the split by its own token counts
before it exists, so for it the boundaries are fixed first by character counts, and it is
trained on the train units alone.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, count, islice
from typing import Any

import numpy as np

from irlm_env.tokenizers import Tokenizer
from irlm_env.vocabulary import SPECIALS, Vocabulary

SPLITS: tuple[str, ...] = ("train", "validation", "test")
# Cumulative size fractions at which validation and test begin (90/5/5).
_SPLIT_FRACTIONS = (0.90, 0.95)
#: Units cut per call to the tokenizer.
CHUNK_UNITS = 8192
#: Seconds a build runs before its progress bar appears (on a terminal only).
PROGRESS_DELAY = 2.0
# Texts from this many characters on show the progress of training a tokenizer.
_LONG_TEXT = 10_000_000


@dataclass(frozen=True)
class Encoded:
    """A tokenized corpus: ``ids`` holds the three splits back to back, ``lengths`` their sizes."""

    tokenizer: Tokenizer
    vocab: Vocabulary
    ids: np.ndarray
    lengths: list[int]


def chunks(units: Sequence[str]) -> Iterator[list[str]]:
    """The units as lists of up to :data:`CHUNK_UNITS`."""
    remaining = iter(units)
    while chunk := list(islice(remaining, CHUNK_UNITS)):
        yield chunk


def source_hash(units: Sequence[str]) -> str:
    """SHA-256 of ``json.dumps(list(units), ensure_ascii=False)``, computed chunk by chunk.

    JSON keeps unit boundaries unambiguous; streaming it keeps a copy of the text out of memory.
    """
    digest = hashlib.sha256(b"[")
    for i, chunk in enumerate(chunks(units)):
        if i:
            digest.update(b", ")
        digest.update(json.dumps(chunk, ensure_ascii=False)[1:-1].encode("utf-8"))
    digest.update(b"]")
    return digest.hexdigest()


def split_boundaries(unit_lengths: np.ndarray) -> tuple[int, int]:
    """Unit indices where validation and test begin: 90/5/5 by size, each split non-empty."""
    n = len(unit_lengths)
    cum = np.cumsum(unit_lengths)
    total = cum[-1]
    b1 = int(np.searchsorted(cum, _SPLIT_FRACTIONS[0] * total, side="left")) + 1
    b1 = min(max(b1, 1), n - 2)
    b2 = int(np.searchsorted(cum, _SPLIT_FRACTIONS[1] * total, side="left")) + 1
    b2 = min(max(b2, b1 + 1), n - 1)
    return b1, b2


def encode_units(label: str, units: Sequence[str], tokenizer: Tokenizer, max_vocab: int | None,
                 min_freq: int) -> Encoded:
    """Split, count and encode ``units`` as described in the module docstring.

    Every split is ``[eos, w, w, eos, w, eos, ...]``: each unit is preceded and followed by
    ``<eos>``. ``label`` names the corpus on the progress bar.
    """
    n = len(units)
    bounds = None
    if tokenizer.learns_from_text:
        chars = np.fromiter((len(unit) + 1 for unit in units), dtype=np.int64, count=n)
        bounds = split_boundaries(chars)
        train_chars = int(chars[: bounds[0]].sum())
        del chars
        # One unit at a time: the trainer buffers 256 items, which must not be 256 chunks of text.
        tokenizer = tokenizer.train(islice(units, bounds[0]), vocab_size=max_vocab, min_freq=min_freq,
                                    show_progress=train_chars >= _LONG_TEXT and sys.stderr.isatty())
    provisional: defaultdict[str, int] = defaultdict(count().__next__)
    lookup = provisional.__getitem__
    unit_lengths = np.empty(n, dtype=np.int64)
    pieces: list[tuple[int, np.ndarray]] = []  # (units, their provisional ids) per chunk
    done = 0
    with _progress(label, n) as bar:
        for chunk in chunks(units):
            cut = tokenizer.split_many(chunk)
            lengths = unit_lengths[done : done + len(cut)]
            lengths[:] = np.fromiter(map(len, cut), dtype=np.int64, count=len(cut))
            ids = np.fromiter(map(lookup, chain.from_iterable(cut)), dtype=np.uint32, count=int(lengths.sum()))
            pieces.append((len(cut), ids.astype(np.min_scalar_type(max(len(provisional) - 1, 0)), copy=False)))
            done += len(cut)
            bar.update(len(cut))
    if bounds is None:
        bounds = split_boundaries(unit_lengths + 1)
    vocab = _count_train(provisional, pieces, int(unit_lengths[: bounds[0]].sum()), max_vocab, min_freq)
    ids, sizes = _place(pieces, unit_lengths, bounds, vocab, provisional)
    return Encoded(tokenizer, vocab, ids, sizes)


def _progress(label: str, total: int) -> Any:
    """A progress bar over units that appears only on a terminal and only for long builds."""
    from tqdm import tqdm

    return tqdm(total=total, desc=f"tokenizing {label}", unit=" lines", unit_scale=True, delay=PROGRESS_DELAY,
                disable=None, leave=False, file=sys.stderr)


def _count_train(provisional: dict[str, int], pieces: list[tuple[int, np.ndarray]], train_tokens: int,
                 max_vocab: int | None, min_freq: int) -> Vocabulary:
    """The vocabulary of the first ``train_tokens`` provisional ids (the train block)."""
    counts = np.zeros(len(provisional), dtype=np.int64)
    remaining = train_tokens
    for _, piece in pieces:
        if remaining <= 0:
            break
        seen = np.bincount(piece[:remaining])
        counts[: len(seen)] += seen
        remaining -= len(piece)
    tokens = list(provisional)
    return Vocabulary.from_counts(dict(zip(tokens, counts.tolist())), max_vocab=max_vocab, min_freq=min_freq)


def _place(pieces: list[tuple[int, np.ndarray]], unit_lengths: np.ndarray, bounds: tuple[int, int],
           vocab: Vocabulary, provisional: dict[str, int]) -> tuple[np.ndarray, list[int]]:
    """The final array, filled piece by piece (each piece freed once placed), and split sizes.

    Token ``k`` of the text, in unit ``u`` of split ``s``, lands at ``k + u + s + 1``: before it
    come ``k`` tokens, one ``<eos>`` after each of the ``u`` earlier units and one opening
    ``<eos>`` for each of the ``s + 1`` splits begun.
    """
    remap = np.full(len(provisional), vocab.unk_id, dtype=vocab.id_dtype)
    kept = vocab.tokens[len(SPECIALS):]
    remap[np.fromiter((provisional[token] for token in kept), dtype=np.int64, count=len(kept))] = np.arange(
        len(SPECIALS), len(vocab))
    n = len(unit_lengths)
    ids = np.full(int(unit_lengths.sum()) + n + len(SPLITS), vocab.eos_id, dtype=vocab.id_dtype)
    first_token = first_unit = 0
    pieces.reverse()
    while pieces:
        units, piece = pieces.pop()
        unit_of = np.repeat(np.arange(first_unit, first_unit + units), unit_lengths[first_unit : first_unit + units])
        split_of = (unit_of >= bounds[0]).astype(np.int64) + (unit_of >= bounds[1])
        ids[np.arange(first_token + 1, first_token + 1 + len(piece)) + unit_of + split_of] = remap[piece]
        first_token += len(piece)
        first_unit += units
    edges = (0, *bounds, n)
    sizes = [int(unit_lengths[lo:hi].sum()) + (hi - lo) + 1 for lo, hi in zip(edges, edges[1:])]
    return ids, sizes
