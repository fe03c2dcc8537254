"""Tokenized corpora on disk: one ``.npy`` of token ids and one JSON that vouches for it.

A cache entry is only derived data: the source can always be tokenized again, while a damaged
entry (a disk error, a partial copy, a hand edit) would silently feed wrong token ids to
training. So the JSON stores the hash of the ids it was written with, is written after them
(it is the commit marker), and any mismatch on reading means rebuild, with a warning saying
why. A tokenizer that learns from text (``bpe``) is part of the entry: the trained tokenizer
comes back with the ids it cut.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path

import numpy as np

from irlm_env.cache import cache_dir, write_cache_file
from irlm_env.corpus_encoding import SPLITS, Encoded
from irlm_env.tokenizers import Tokenizer, make_tokenizer
from irlm_env.vocabulary import Vocabulary

# Bumped whenever the cached layout or the encoding rules change, so old entries are ignored.
# 2: ids in Vocabulary.id_dtype instead of int64; the trained tokenizer's config in the JSON.
# 3: the hash vouches for the split lengths and the tokenizer's config too, not the ids alone.
_FORMAT = 3
_FOLDER = "corpora"


def cache_key(digest: str, tokenizer: Tokenizer, max_vocab: int | None, min_freq: int) -> str:
    """The entry's name: a hash of the source's content hash and every setting that shapes it."""
    settings = {"format": _FORMAT, "source": digest, "tokenizer": tokenizer.config(),
                "max_vocab": max_vocab, "min_freq": min_freq}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]


def _entry_digest(ids: np.ndarray, lengths: list[int], tokenizer_config: dict) -> str:
    """What the JSON vouches for: the ids, where the splits fall in them and the tokenizer that cut
    them (a ``bpe`` model's merges included), so a hand edit of any of them means rebuild."""
    digest = hashlib.sha256(memoryview(np.ascontiguousarray(ids)))
    digest.update(json.dumps([lengths, tokenizer_config], sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


def write_cached(key: str, digest: str, encoded: Encoded) -> None:
    """Write the ids, then the JSON; an unwritable cache only warns (see ``irlm_env.cache``)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(encoded.ids))
    # One copy of the array in the file's bytes (np.save into memory makes two).
    if write_cache_file(Path(_FOLDER, f"{key}.npy"), b"".join([header.getvalue(), memoryview(encoded.ids)])):
        config = encoded.tokenizer.config()
        meta = {"format": _FORMAT, "source": digest, "tokenizer": config, "vocab": encoded.vocab.to_dict(),
                "lengths": encoded.lengths, "sha256": _entry_digest(encoded.ids, list(encoded.lengths), config)}
        write_cache_file(Path(_FOLDER, f"{key}.json"), json.dumps(meta, ensure_ascii=False).encode("utf-8"))


def read_cached(key: str, digest: str, tokenizer: Tokenizer) -> Encoded | None:
    """A verified cache entry for ``tokenizer``'s settings, or None when missing or untrustworthy."""
    root = cache_dir()
    if root is None:
        return None
    meta_path, ids_path = root / _FOLDER / f"{key}.json", root / _FOLDER / f"{key}.npy"
    try:
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != _FORMAT or meta.get("source") != digest:
            raise ValueError("it was written for other settings")
        vocab = Vocabulary.from_dict(meta["vocab"], where=f"cache file {str(meta_path)!r}")
        cut_by = make_tokenizer(**meta["tokenizer"])
        if (cut_by.name, cut_by.lowercase) != (tokenizer.name, tokenizer.lowercase):
            raise ValueError("it was cut by another tokenizer")
        ids = np.load(ids_path, allow_pickle=False)
        lengths = [int(n) for n in meta["lengths"]]
        if ids.dtype != vocab.id_dtype or ids.ndim != 1 or len(ids) != sum(lengths) or len(lengths) != len(SPLITS):
            raise ValueError("the token array has the wrong shape or type")
        if _entry_digest(ids, meta["lengths"], meta["tokenizer"]) != meta["sha256"]:
            raise ValueError("the token array, its split lengths or its tokenizer do not match their hash")
    # EOFError: an empty .npy; MemoryError: a header claiming a huge array.
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, MemoryError) as exc:
        warnings.warn(f"rebuilding the corpus cache entry {str(meta_path)!r}: {exc}", RuntimeWarning, stacklevel=4)
        return None
    return Encoded(cut_by, vocab, ids, lengths)
