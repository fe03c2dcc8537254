"""Where irlm_env keeps derived data (tokenized corpora, extracted text) between runs.

Everything in the cache can be computed again from its source, so a cache that cannot be
written (a read-only home, a full disk, ``IRLM_CACHE_DIR`` under a file) costs time on the
next start, never the run: :func:`write_cache_file` warns once and the caller goes on.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from irlm_env.errors import IrlmError
from irlm_env.fileio import atomic_write_bytes

#: What to do when the cache folder cannot be written.
CACHE_FIX = "make the folder writable, or point IRLM_CACHE_DIR at a writable folder"
# Cache folders already warned about in this process (None: no folder at all): one warning each.
_WARNED: set[Path | None] = set()


class CacheWarning(UserWarning):
    """The cache could not be written; irlm_env goes on without it."""


def _warn_once(root: Path | None, message: str) -> None:
    if root not in _WARNED:
        _WARNED.add(root)
        warnings.warn(message, CacheWarning, stacklevel=4)


def cache_dir() -> Path | None:
    """The on-disk cache folder: ``$IRLM_CACHE_DIR`` or ``~/.cache/irlm_env``.

    None, with one warning, when it names a home folder that does not exist: a container run
    under a user id with no home (no ``HOME`` and no passwd entry) still trains, without a cache.
    """
    configured = os.environ.get("IRLM_CACHE_DIR")
    try:
        return Path(configured).expanduser() if configured else Path.home() / ".cache" / "irlm_env"
    except (RuntimeError, KeyError) as error:  # pathlib: "Could not determine home directory"
        _warn_once(None, f"no cache folder ({error}); going on without it, so corpora are tokenized again on "
                         "every start: set HOME, or point IRLM_CACHE_DIR at a writable folder")
        return None


def write_cache_file(name: str | Path, data: bytes) -> bool:
    """Write ``data`` atomically to ``name`` (relative to :func:`cache_dir`); False if it could not.

    A failure is reported once per process and cache folder as a :class:`CacheWarning`.
    """
    root = cache_dir()
    if root is None:
        return False
    try:
        atomic_write_bytes(root / name, data, fix=CACHE_FIX)
    except IrlmError as error:
        cause = error.__cause__
        if not isinstance(cause, OSError):
            raise
        _warn_once(root, f"cannot write the cache in {str(root)!r} ({cause.strerror or cause}); going on without it, "
                         f"so corpora are tokenized again on every start: {CACHE_FIX}")
        return False
    return True
