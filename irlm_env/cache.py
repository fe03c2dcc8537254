"""Where irlm_env keeps derived data (tokenized corpora, extracted text) between runs."""

from __future__ import annotations

import os
from pathlib import Path

#: What to do when the cache folder cannot be written.
CACHE_FIX = "make the folder writable, or point IRLM_CACHE_DIR at a writable folder"


def cache_dir() -> Path:
    """The on-disk cache folder: ``$IRLM_CACHE_DIR`` or ``~/.cache/irlm_env``."""
    configured = os.environ.get("IRLM_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "irlm_env"
