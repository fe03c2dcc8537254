"""``text``: the user's own text, from a file, a directory or a glob; one unit per non-empty line.

Files are read as bytes and decoded strictly as UTF-8, so a wrong encoding is reported with the
file and byte offset instead of being silently turned into replacement characters. Files are
taken in sorted order so the same folder always gives the same corpus (and cache entry).
"""

from __future__ import annotations

import glob
import os
import stat
from pathlib import Path

from irlm_env.corpora.source import CorpusSource
from irlm_env.errors import IrlmError

# Suffixes taken from a directory; an explicit file or glob is read whatever its suffix.
TEXT_SUFFIXES: frozenset[str] = frozenset({".txt", ".text", ".md", ".rst"})
# What a path that exists but is neither a regular file nor a directory is, for the error.
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def find_text_files(path: str | os.PathLike[str]) -> list[Path]:
    """Resolve ``path`` (file, directory or glob) to a sorted list of files."""
    spec = os.path.expanduser(os.fspath(path))
    candidate = Path(spec)
    if candidate.is_file():
        return [candidate]
    if candidate.is_dir():
        files = sorted(p for p in candidate.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise IrlmError(
                f"directory {spec!r} contains no text files (looked for {', '.join(sorted(TEXT_SUFFIXES))}, "
                "recursively); add some, or pass a file or a glob such as 'dir/*.log' as path="
            )
        return files
    if glob.has_magic(spec):
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not files:
            raise IrlmError(f"glob {spec!r} matches no files; check the pattern")
        return files
    try:
        mode = candidate.stat().st_mode
    except OSError:
        raise IrlmError(
            f"text corpus path {spec!r} does not exist; pass an existing file, directory or glob as path="
        ) from None
    kind = next((name for test, name in _KINDS if test(mode)), "not a file or directory")
    raise IrlmError(f"text corpus path {spec!r} is not a regular file ({kind}); pass a text file, a directory or a glob")


def _read(file: Path) -> bytes:
    """The file's bytes; an OS failure (no permission, an unreadable special file) is one line."""
    try:
        return file.read_bytes()
    except OSError as exc:
        raise IrlmError(
            f"cannot read text corpus file {str(file)!r} ({exc.strerror or exc}); make it readable for this "
            "user (e.g. chmod a+r) or leave it out of path="
        ) from None


def read_units(files: list[Path]) -> list[str]:
    """Non-empty lines of ``files``, in order, trailing whitespace removed."""
    units: list[str] = []
    for file in files:
        data = _read(file)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise IrlmError(
                f"{str(file)!r} is not valid UTF-8 (byte offset {exc.start}: {exc.reason}); "
                "convert it, e.g. with `iconv -t UTF-8`, or remove it from the corpus"
            ) from None
        text = text.removeprefix("\ufeff")  # a byte-order mark is not text
        units.extend(line.rstrip() for line in text.splitlines() if line.strip())
    if not units:
        names = str(files[0]) if len(files) == 1 else f"{len(files)} files ({files[0]}, ...)"
        raise IrlmError(f"text corpus {names} is empty or whitespace only; give it some text")
    return units


def text_corpus(path: str | os.PathLike[str]) -> CorpusSource:
    """Read the file, directory (its *.txt, *.text, *.md, *.rst files, recursively) or glob."""
    return CorpusSource(units=read_units(find_text_files(path)))
