"""The corpus plugin kind: what ``register`` accepts for a corpus, and building a corpus source.

A corpus factory is called as ``factory(**options)`` with the user's corpus options and
returns a :class:`~irlm_env.corpora.source.CorpusSource`; everything after that (tokenizing,
the vocabulary, splits, the cache) is the same for every corpus and lives in ``irlm_env.corpus``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from irlm_env.corpora import builtin
from irlm_env.corpora.source import CorpusSource
from irlm_env.errors import IrlmError
from irlm_env.options import bind_options
from irlm_env.plugins import Entry, PluginKind, Registry, declare_kind, registry


def prepare_corpus(factory: Callable[..., Any], where: str) -> Callable[..., Any]:
    """Catch a factory that can never be called as ``factory(**options)``, at registration.

    Options may be required (``text`` needs ``path``), so only their being passable by keyword
    is checked.
    """
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        return factory
    positional_only = [p.name for p in params if p.kind is p.POSITIONAL_ONLY and p.default is p.empty]
    if positional_only:
        raise IrlmError(
            f"{where} with a factory whose parameter(s) {', '.join(positional_only)} are positional-only; "
            "options are passed by keyword, so make them ordinary parameters"
        )
    return factory


CORPORA = declare_kind(PluginKind("corpus", "irlm_register_corpora", builtin, prepare_corpus))


def corpus_registry() -> Registry:
    """All corpora, by name (IrlmError with a suggestion on unknown names)."""
    return registry(CORPORA)


def _looks_like_path(name: str) -> bool:
    return any(mark in name for mark in ("/", "\\", "*", "?")) or Path(name).suffix != "" or Path(name).exists()


def corpus_entry(name: str) -> Entry:
    """Corpus ``name``'s registration; an unknown name that is a file path gets the way to read a file.

    Users who have a text file often pass its path where the corpus name goes, and "install a
    plugin" would send them the wrong way.
    """
    registered = corpus_registry()
    if name not in registered and _looks_like_path(name):
        raise IrlmError(
            f"unknown corpus {name!r}: corpus names a registered corpus (available: "
            f"{', '.join(sorted(registered.names()))}), and this looks like a file path. A text file, "
            f"directory or glob is read by the 'text' corpus: pass corpus 'text' with option "
            f"path={name!r} (on the command line: --corpus text --corpus-option path={name})"
        )
    return registered.get(name)


def bind_corpus_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Corpus ``name``'s options checked against its factory, strings converted to its types."""
    entry = corpus_entry(name)
    return bind_options(f"corpus {name!r} (plugin {entry.plugin_name!r})", entry.factory, options, kind="corpus")


def make_corpus_source(name: str, options: Mapping[str, Any]) -> CorpusSource:
    """Run corpus ``name``'s factory with the user's options, checking options and result."""
    entry = corpus_entry(name)
    source = entry.factory(**bind_corpus_options(name, options))
    if not isinstance(source, CorpusSource):
        raise IrlmError(
            f"corpus {name!r} (plugin {entry.plugin_name!r}) returned {type(source).__name__}, not an "
            "irlm_env.corpora.CorpusSource; its factory must return CorpusSource(units=[...])."
        )
    return source
