"""The built-in corpora (pydocs, grammar, text), registered through the same hook as any
third-party corpus plugin."""

from __future__ import annotations

from irlm_env.corpora.grammar import grammar_corpus
from irlm_env.corpora.pydocs import pydocs_corpus
from irlm_env.corpora.text import text_corpus
from irlm_env.hookspecs import Register, hookimpl


@hookimpl
def irlm_register_corpora(register: Register) -> None:
    register("pydocs", pydocs_corpus,
             "English sentences from the docstrings of the installed Python standard library (default)")
    register("grammar", grammar_corpus,
             "seeded synthetic English-like language with an exactly known best accuracy (seed=, n_sentences=)")
    register("text", text_corpus, "your own text: a file, a directory or a glob (path=); one unit per line")
