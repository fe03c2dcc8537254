"""Corpora: the built-in corpus plugins (``builtin``), the corpus plugin kind and its registry
(``registry``), and :class:`CorpusSource`, what every corpus factory returns."""

from irlm_env.corpora.source import CorpusSource

__all__ = ["CorpusSource"]
