"""What a corpus plugin's factory returns: the raw text of a corpus, before tokenizing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CorpusSource:
    """The raw text units of a corpus.

    ``units`` are lines or sentences; each becomes one ``line`` episode and is delimited by
    ``<eos>`` in the token stream. ``best_accuracy`` is the best achievable next-token accuracy
    when the generating process is known (synthetic corpora); it holds only for tokens cut by
    the tokenizer named in ``best_accuracy_tokenizer`` and only when no token falls outside the
    vocabulary, which ``load_corpus`` checks before passing it on.
    """

    units: Sequence[str]
    best_accuracy: float | None = None
    best_accuracy_tokenizer: str | None = None
