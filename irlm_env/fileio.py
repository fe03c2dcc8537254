"""Atomic file writes, shared by every module that saves something.

Readers (another process loading the corpus cache, ``irlm eval`` on a run still training, a
resumed run) must see the old file or the new one, never half of one. So every file goes
through a temporary file in the same folder, is flushed to disk, and is renamed into place
with ``os.replace``; a failure removes the temporary file.

A writer killed outright (``kill -9``, the OOM killer, a lost node) cannot remove its own
temporary file, so the name of each one records who wrote it (process id and a hash of the
host name), and every save first removes the temporaries of the same target whose writer is
gone: on this host, when that process no longer exists; from another host sharing the folder,
when the file has not changed for :data:`FOREIGN_STALE_SECONDS`.

The file is created with mode ``0o666`` and the process umask applied, like any file Python
opens for writing: checkpoints and logs come out readable for a colleague or a shared
TensorBoard exactly as far as the user's umask allows.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import time
from pathlib import Path
from typing import IO

from irlm_env.errors import IrlmError

#: A temporary file from another host is taken as abandoned once unchanged for this long.
FOREIGN_STALE_SECONDS = 3600.0
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _write(handle: IO[bytes], data: bytes) -> None:
    """Write the bytes out; its own function so tests can simulate a crash mid-write."""
    handle.write(data)


def atomic_write_bytes(
    path: Path, data: bytes, *, fix: str = "make the folder writable or choose another path"
) -> None:
    """Replace ``path`` with ``data`` atomically; an OS failure becomes an ``IrlmError`` with ``fix``."""
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        tmp, handle = _create_temporary(path)
        with os.fdopen(handle, "wb") as out:
            _write(out, data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise IrlmError(f"cannot write {str(path)!r} ({exc.strerror or exc}); {fix}") from exc
        raise


def _create_temporary(path: Path) -> tuple[Path, int]:
    """A new hidden file next to ``path`` named after its writer, and its descriptor.

    ``os.open`` with mode 0o666 lets the kernel apply the umask (``tempfile.mkstemp`` always
    gives 0o600); ``O_EXCL`` makes the name ours alone.
    """
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}-{_HOST}.{secrets.token_hex(4)}.tmp"
        try:
            return tmp, os.open(tmp, _CREATE, 0o666)
        except FileExistsError:  # 1 in 4 billion: draw another name
            continue


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files of ``path`` left by writers that are gone; return them."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)-([0-9a-f]{{8}})\.[0-9a-f]+\.tmp")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:  # the save itself reports an unreadable folder
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        pid, host = int(match[1]), match[2]
        try:
            if host == _HOST:
                stale = pid != os.getpid() and not _process_exists(pid)
            else:
                stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > FOREIGN_STALE_SECONDS
            if stale:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # gone already, or not ours to remove: the save goes on
            continue
    return removed


def _process_exists(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate the process there: never sweep by process id
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True
