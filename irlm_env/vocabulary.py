"""The mapping between tokens and integer ids, shared by corpora, environments and models.

A vocabulary is part of every cached corpus and every checkpoint, so it must be exactly
reproducible: the order is fixed by counts with ties broken by the token string (never by set
or dict iteration order, which depends on PYTHONHASHSEED), and the saved form carries a content
hash so that a hand-edited or truncated file is caught instead of silently remapping ids.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from irlm_env.errors import IrlmError
from irlm_env.fileio import atomic_write_bytes
from irlm_env.options import check_int

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
SPECIALS: tuple[str, ...] = (PAD, UNK, EOS)


def check_vocab_options(max_vocab: int | None, min_freq: int) -> tuple[int | None, int]:
    """Reject impossible size limits before any expensive work is done; return them as ints."""
    if max_vocab is not None:
        try:
            max_vocab = check_int("max_vocab", max_vocab, minimum=len(SPECIALS))
        except IrlmError:
            raise IrlmError(
                f"max_vocab={max_vocab!r} is not a vocabulary size: it must be an integer that counts "
                f"the {len(SPECIALS)} special tokens {', '.join(SPECIALS)}; use max_vocab >= "
                f"{len(SPECIALS)} (or None for no limit)"
            ) from None
    return max_vocab, check_int("min_freq", min_freq)


def _hash_tokens(tokens: Sequence[str]) -> str:
    payload = json.dumps(list(tokens), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class Vocabulary:
    """An immutable token list; ``tokens[i]`` has id ``i``; ids 0, 1, 2 are pad, unk, eos."""

    pad_id = 0
    unk_id = 1
    eos_id = 2

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = tuple(tokens)
        if tokens[: len(SPECIALS)] != SPECIALS:
            raise IrlmError(
                f"a vocabulary must start with the special tokens {list(SPECIALS)}, "
                f"got {list(tokens[:3])}; build it with Vocabulary.build(...)"
            )
        index = {token: i for i, token in enumerate(tokens)}
        if len(index) != len(tokens):
            dupes = sorted(t for t, n in Counter(tokens).items() if n > 1)
            raise IrlmError(f"a vocabulary must not repeat tokens; repeated: {dupes[:10]}")
        self.tokens: tuple[str, ...] = tokens
        self._index = index
        self.content_hash: str = _hash_tokens(tokens)

    @classmethod
    def build(cls, tokens: Iterable[str], max_vocab: int | None = None, min_freq: int = 1) -> Vocabulary:
        """Count ``tokens`` and keep the most frequent (see :meth:`from_counts`)."""
        return cls.from_counts(Counter(tokens), max_vocab=max_vocab, min_freq=min_freq)

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], max_vocab: int | None = None, min_freq: int = 1) -> Vocabulary:
        """Keep the most frequent of the counted tokens, ties broken by the token string.

        ``max_vocab`` counts the special tokens; tokens seen fewer than ``min_freq`` times are
        left out (they become ``<unk>``).
        """
        check_vocab_options(max_vocab, min_freq)
        specials = [s for s in SPECIALS if counts.get(s, 0) > 0]
        if specials:
            raise IrlmError(
                f"the text produced the reserved token(s) {specials}; a tokenizer must never "
                "emit special tokens"
            )
        ranked = sorted((item for item in counts.items() if item[1] >= min_freq), key=lambda kv: (-kv[1], kv[0]))
        if max_vocab is not None:
            ranked = ranked[: max_vocab - len(SPECIALS)]
        return cls(SPECIALS + tuple(token for token, _ in ranked))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def id_dtype(self) -> np.dtype:
        """The smallest unsigned integer type that holds every id: what a corpus stores its
        token arrays in (uint8 up to 256 tokens, uint16 up to 65,536, else uint32)."""
        return np.dtype(np.min_scalar_type(len(self.tokens) - 1))

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, hash={self.content_hash[:12]})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Map tokens to an int64 array; unknown tokens become ``unk_id``."""
        get = self._index.get
        unk = self.unk_id
        return np.fromiter((get(t, unk) for t in tokens), dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> list[str]:
        tokens = self.tokens
        return [tokens[int(i)] for i in ids]

    def id_of(self, token: str) -> int:
        """The id of ``token``, or ``unk_id`` when it is not in the vocabulary."""
        return self._index.get(token, self.unk_id)

    def token(self, i: int) -> str:
        if not 0 <= int(i) < len(self.tokens):
            raise IrlmError(f"token id {i} is out of range; this vocabulary has ids 0..{len(self) - 1}")
        return self.tokens[int(i)]

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": list(self.tokens), "hash": self.content_hash}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "vocabulary data") -> Vocabulary:
        """Rebuild a vocabulary, refusing data whose tokens do not match its stored hash.

        ``where`` names the origin (a file path) in error messages.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("tokens"), list) or "hash" not in data:
            raise IrlmError(f"{where} is not a saved vocabulary (expected keys 'tokens' and 'hash')")
        tokens = data["tokens"]
        if not all(isinstance(t, str) for t in tokens):
            raise IrlmError(f"{where} is not a saved vocabulary: every token must be a string")
        if _hash_tokens(tokens) != data["hash"]:
            raise IrlmError(
                f"{where} has been modified or corrupted: its tokens do not match its content "
                "hash; restore the original file or rebuild the vocabulary from the corpus"
            )
        return cls(tokens)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write JSON atomically, so that a crash never leaves a half-written vocabulary."""
        atomic_write_bytes(Path(path), json.dumps(self.to_dict(), ensure_ascii=False).encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise IrlmError(f"vocabulary file {str(path)!r} does not exist; check the path") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IrlmError(
                f"vocabulary file {str(path)!r} is not valid JSON ({exc}); restore or rebuild it"
            ) from None
        return cls.from_dict(data, where=f"vocabulary file {str(path)!r}")
