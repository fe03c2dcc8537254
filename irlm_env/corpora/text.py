"""``text``: the user's own text, from a file, a directory or a glob; one unit per non-empty line.

Files are read as bytes and decoded strictly as UTF-8, so a wrong encoding is reported with the
file and byte offset instead of being silently turned into replacement characters. Files are
taken in sorted order so the same folder always gives the same corpus (and cache entry). The
lines are kept as one UTF-8 buffer (:class:`TextLines`), not a list of strings, so a large
corpus costs about its file size in memory while it is tokenized.
"""

from __future__ import annotations

import glob
import operator
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np

from irlm_env.corpora.source import CorpusSource
from irlm_env.errors import IrlmError

# Suffixes taken from a directory; an explicit file or glob is read whatever its suffix.
TEXT_SUFFIXES: frozenset[str] = frozenset({".txt", ".text", ".md", ".rst"})
# Bytes read at a time (then up to the end of the line), and lines decoded at a time.
_BLOCK_BYTES = 1 << 20
_DECODE_LINES = 8192
_NEWLINE = 0x0A
# What a path that exists but is neither a regular file nor a directory is, for the error.
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def find_text_files(path: str | os.PathLike[str]) -> list[Path]:
    """Resolve ``path`` (file, directory or glob) to a sorted list of files, each once.

    A directory is searched as a glob would be: files and folders whose names start with '.'
    (editor backups, ``.ipynb_checkpoints``) are left out.
    """
    spec = os.path.expanduser(os.fspath(path))
    if not spec.strip():  # Path("") is ".": the whole current folder would become the corpus
        raise IrlmError("text corpus path is empty; pass a file, a directory or a glob as path=")
    candidate = Path(spec)
    if candidate.is_file():
        return [candidate]
    if candidate.is_dir():
        files = sorted(
            p for p in candidate.rglob("*")
            if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(candidate).parts)
        )
        if not files:
            raise IrlmError(
                f"directory {spec!r} contains no text files (looked for {', '.join(sorted(TEXT_SUFFIXES))}, "
                "recursively); add some, or pass a file or a glob such as 'dir/*.log' as path="
            )
        return files
    if glob.has_magic(spec):
        # A set: a pattern such as 'dir/**/**/*.txt' yields the same file more than once.
        files = sorted({Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()})
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


def _unreadable(file: Path, error: OSError) -> IrlmError:
    return IrlmError(
        f"cannot read text corpus file {str(file)!r} ({error.strerror or error}); make it readable for this "
        "user (e.g. chmod a+r) or leave it out of path="
    )


class TextLines(Sequence[str]):
    """Lines of text held as one UTF-8 buffer, a newline after each, and where each line ends.

    A list of ``str`` costs 50 to 80 bytes a line besides the characters, and a line holding
    one emoji stores all its characters in 4 bytes each, so the lines of a large file as a list
    take two to three times its size; these take its size and 8 bytes a line. Lines are decoded
    when read, many at a time, which is how the corpus pipeline reads them.
    """

    def __init__(self, data: bytearray, ends: np.ndarray) -> None:
        self._data = memoryview(data)
        self._ends = ends

    def __len__(self) -> int:
        return len(self._ends)

    def _decode(self, lo: int, hi: int) -> list[str]:
        start = int(self._ends[lo - 1]) + 1 if lo else 0
        return str(self._data[start : int(self._ends[hi - 1])], "utf-8").split("\n")

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            lo, hi, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(lo, hi, step)]
            return self._decode(lo, hi) if hi > lo else []
        i = operator.index(index)
        i += len(self) if i < 0 else 0
        if not 0 <= i < len(self):
            raise IndexError("TextLines index out of range")
        return self._decode(i, i + 1)[0]

    def __iter__(self) -> Iterator[str]:
        for lo in range(0, len(self), _DECODE_LINES):
            yield from self[lo : lo + _DECODE_LINES]


def _append_lines(file: Path, buffer: bytearray, ends: list[np.ndarray]) -> None:
    """Append the non-empty lines of ``file``, trailing whitespace removed, a block at a time.

    Blocks end at a newline, which never falls inside a UTF-8 sequence or a ``\\r\\n`` pair,
    so decoding and splitting them one by one gives exactly the lines of the whole file.
    """
    try:
        handle = open(file, "rb")
    except OSError as error:
        raise _unreadable(file, error) from None
    with handle:
        offset = 0
        while True:
            try:
                block = handle.read(_BLOCK_BYTES)
                if block and not block.endswith(b"\n"):
                    block += handle.readline()
            except OSError as error:
                raise _unreadable(file, error) from None
            if not block:
                return
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise IrlmError(
                    f"{str(file)!r} is not valid UTF-8 (byte offset {offset + exc.start}: {exc.reason}); "
                    "convert it, e.g. with `iconv -t UTF-8`, or remove it from the corpus"
                ) from None
            if offset == 0:
                text = text.removeprefix("\ufeff")  # a byte-order mark is not text
            lines = [line.rstrip() for line in text.splitlines() if line.strip()]
            if lines:
                encoded = ("\n".join(lines) + "\n").encode("utf-8")
                ends.append(np.flatnonzero(np.frombuffer(encoded, dtype=np.uint8) == _NEWLINE) + len(buffer))
                buffer += encoded
            offset += len(block)


def read_lines(files: list[Path]) -> TextLines:
    """Non-empty lines of ``files``, in order, trailing whitespace removed."""
    buffer = bytearray()
    ends: list[np.ndarray] = []
    for file in files:
        _append_lines(file, buffer, ends)
    if not buffer:
        names = str(files[0]) if len(files) == 1 else f"{len(files)} files ({files[0]}, ...)"
        raise IrlmError(f"text corpus {names} is empty or whitespace only; give it some text")
    return TextLines(buffer, np.concatenate(ends))


def text_corpus(path: str | os.PathLike[str]) -> CorpusSource:
    """Read the file, directory (its *.txt, *.text, *.md, *.rst files, recursively) or glob."""
    return CorpusSource(units=read_lines(find_text_files(path)))
