"""``pydocs``: real English prose from the installed Python standard library's documentation.

Sentences come from the docstrings of modules, classes and functions, plus the help topics of
``pydoc_data`` (the language reference's prose). Sources are parsed with :mod:`ast` and never
imported: importing would run arbitrary module code, open windows (turtle, tkinter) and take
far longer. Test suites, IDLE and demo folders are skipped as code-heavy or repetitive.

Docstrings mix prose with code, so only prose is kept: interactive examples (``>>>``),
indented blocks (code samples, parameter tables), reST markup lines, and sentences with many
code symbols or without a closing punctuation mark are dropped; exact repeats ("Return
self==value.") are kept once. The extraction takes seconds, so its result is cached on disk,
keyed by the Python version and the standard library path.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sys
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path

from irlm_env.cache import cache_dir, write_cache_file
from irlm_env.corpora.source import CorpusSource
from irlm_env.errors import IrlmError

# Bumped whenever the extraction rules change, so cached extractions are redone.
_EXTRACTION_VERSION = 2
_SKIP_DIRS = frozenset({"test", "tests", "idlelib", "turtledemo", "site-packages", "dist-packages",
                        "lib2to3", "__pycache__", "ensurepip", "venv"})
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'`])")
_MARKUP_LINE = re.compile(r"^(\.\. |:[\w ]+:|[-=~^*#+`'\"]{3,}\s*$)")
# Characters that rarely occur in prose; parentheses, quotes and "_" (identifiers) are allowed.
_CODE_CHARS = frozenset("[]{}=<>*#/\\|@$%&~`;^")
# A word of prose: letters, with inner hyphens or apostrophes ("built-in", "don't").
_WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*")


def stdlib_path() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path) -> list[Path]:
    """The standard library's .py files in sorted order (a fixed order makes a fixed corpus)."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.startswith(("config-", "."))]
        found.extend(Path(folder, f) for f in files if f.endswith(".py"))
    return sorted(found)


_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _docstrings(node: ast.AST) -> Iterator[str]:
    """Docstrings of a module and of every class and function in it, however nested.

    Only statements are searched (``if``/``try`` bodies included): a full ``ast.walk`` would
    also visit every expression node, which costs as much again as the parsing.
    """
    if isinstance(node, _DOCUMENTED):
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield doc
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
            yield from _docstrings(child)


def _topics(tree: ast.Module) -> Iterator[str]:
    """The help texts of pydoc_data.topics: ``topics = {'name': '''text''', ...}``."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            for value in node.value.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    yield value.value


def _paragraphs(doc: str) -> Iterator[str]:
    """Runs of prose lines with equal indentation, skipping examples and literal blocks.

    An interactive example runs from ``>>>`` to the next blank line; a reST literal block is
    everything indented deeper than the line that ended with ``::``.
    """
    current: list[str] = []
    indent = 0
    literal_from: int | None = None  # skip lines indented deeper than this
    in_example = False
    for line in doc.splitlines():
        stripped = line.strip()
        depth = len(line) - len(line.lstrip())
        if literal_from is not None:
            if not stripped or depth > literal_from:
                continue
            literal_from = None
        if stripped.startswith(">>>"):
            in_example = True
        if not stripped:
            in_example = False
        if in_example or not stripped or _MARKUP_LINE.match(stripped) or (current and depth != indent):
            if current:
                yield " ".join(current)
            current = []
            if in_example or not stripped or _MARKUP_LINE.match(stripped):
                continue
        current.append(stripped)
        indent = depth
        if stripped.endswith("::"):
            literal_from = depth
            yield " ".join(current)[:-1]  # "is equivalent to::" reads as "is equivalent to:"
            current = []
    if current:
        yield " ".join(current)


def _is_prose(sentence: str) -> bool:
    if not (12 <= len(sentence) <= 400) or not sentence[0].isalpha():
        return False
    if not (sentence[-1] in ".!?" or sentence[-1].isalnum()):  # ":" or "," lead into code
        return False
    if sum(ch in _CODE_CHARS for ch in sentence) > len(sentence) * 0.02:
        return False
    words = sentence.split()
    return len(words) >= 3 and sum(bool(_WORD.fullmatch(w.strip(".,;:!?()\"'"))) for w in words) >= 0.8 * len(words)


def extract_sentences(files: list[Path]) -> list[str]:
    """Prose sentences of the docstrings (and help topics) of ``files``, first occurrence kept."""
    seen: set[str] = set()
    sentences: list[str] = []
    for file in files:
        try:
            tree = ast.parse(file.read_bytes(), filename=str(file))
        except (SyntaxError, ValueError):  # e.g. deliberately broken files shipped for tools
            continue
        texts = _topics(tree) if file.parent.name == "pydoc_data" else _docstrings(tree)
        for text in texts:
            for paragraph in _paragraphs(text):
                for sentence in _SENTENCE_END.split(" ".join(paragraph.split())):
                    if sentence not in seen and _is_prose(sentence):
                        seen.add(sentence)
                        sentences.append(sentence)
    return sentences


def _cache_name(root: Path) -> str:
    key = json.dumps([_EXTRACTION_VERSION, sys.version, str(root)])
    return f"pydocs-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _read_cached(path: Path | None) -> list[str] | None:
    """The cached sentences, or None (rebuild) when missing, unreadable or not matching their hash.

    The extraction can always be redone; a damaged file must never become the corpus.
    """
    if path is None:  # no cache folder at all
        return None
    try:
        if not path.is_file():  # inside the try: a folder that cannot be searched raises here
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        units = data["units"]
        if hashlib.sha256(json.dumps(units).encode()).hexdigest() != data["hash"]:
            raise ValueError("its sentences do not match their hash")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(f"re-extracting pydocs: cache file {str(path)!r} is unusable ({exc})", RuntimeWarning, stacklevel=3)
        return None
    return units


def pydocs_corpus() -> CorpusSource:
    """Sentences from the standard library's docstrings, extracted once and cached."""
    root = stdlib_path()
    name = _cache_name(root)
    cache = cache_dir()
    units = _read_cached(None if cache is None else cache / name)
    if units is None:
        files = stdlib_files(root)
        if not files:
            raise IrlmError(
                f"found no Python sources under the standard library folder {str(root)!r}; this Python "
                "ships without them, so use another corpus (e.g. 'grammar' or 'text')"
            )
        units = extract_sentences(files)
        payload = {"units": units, "hash": hashlib.sha256(json.dumps(units).encode()).hexdigest()}
        write_cache_file(name, json.dumps(payload).encode("utf-8"))
    return CorpusSource(units=units)
