"""Atomic file writes, shared by every module that saves something.

Readers (another process loading the corpus cache, ``irlm eval`` on a run still training, a
resumed run) must see the old file or the new one, never half of one, and a crash or a full
disk must leave no temporary file behind. So every file goes through a temporary file in the
same folder, is flushed to disk, and is renamed into place with ``os.replace``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO

from irlm_env.errors import IrlmError


def _write(handle: IO[bytes], data: bytes) -> None:
    """Write the bytes out; its own function so tests can simulate a crash mid-write."""
    handle.write(data)


def atomic_write_bytes(
    path: Path, data: bytes, *, fix: str = "make the folder writable or choose another path"
) -> None:
    """Replace ``path`` with ``data`` atomically; an OS failure becomes an ``IrlmError`` with ``fix``."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            _write(out, data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise IrlmError(f"cannot write {str(path)!r} ({exc.strerror or exc}); {fix}") from exc
        raise
