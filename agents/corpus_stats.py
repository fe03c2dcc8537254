"""Corpus statistics for ``irlm corpus-stats``: sizes, out-of-vocabulary rate, k-token oracles.

The oracle figures answer "how well could anything that sees only the last k tokens do on this
text?", which tells a user whether a model's accuracy is poor or already near what the text
allows. The counting is the n-gram peers' own (``irlm_env.ngram``), fitted here on the very split
it scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from irlm_env.corpus import Corpus
from irlm_env.errors import IrlmError
from irlm_env.ngram import _context_keys, _fit_order


def oracle_accuracy(tokens: np.ndarray, k: int, vocab_size: int) -> float:
    """Fraction of next tokens equal to the most frequent continuation of their k-token context.

    Counts come from ``tokens`` itself, so this is an upper bound for any k-context predictor
    scored on ``tokens`` (contexts at the very start are left-padded with the pad id).
    """
    if vocab_size**k >= 2**63:
        raise IrlmError(
            f"a {k}-token context over {vocab_size} token ids does not fit the 64-bit context key; "
            "lower --max-k or --max-vocab"
        )
    if len(tokens) < 2:
        raise IrlmError("a split needs at least 2 tokens for oracle accuracy")
    table = _fit_order(tokens, k + 1, vocab_size)
    positions = np.arange(len(tokens) - 1)
    keys = _context_keys(tokens, positions, k, vocab_size)
    best = table.top[np.searchsorted(table.keys, keys), 0]
    return float(np.mean(best == tokens[positions + 1]))


def corpus_statistics(corpus: Corpus, *, max_k: int = 4) -> dict[str, Any]:
    """Per split: tokens, OOV rate (share of ``<unk>`` among non-``<eos>`` tokens), oracle@k."""
    vocab = corpus.vocab
    splits: dict[str, dict[str, Any]] = {}
    for name, tokens in corpus.splits.items():
        words = tokens[tokens != vocab.eos_id]
        row: dict[str, Any] = {
            "tokens": int(len(tokens)),
            "oov_rate": float(np.mean(words == vocab.unk_id)) if len(words) else 0.0,
        }
        for k in range(1, max_k + 1):
            row[f"oracle@{k}"] = oracle_accuracy(tokens, k, len(vocab))
        splits[name] = row
    return {
        "corpus": corpus.name,
        "vocab_size": len(vocab),
        "tokenizer": corpus.tokenizer.config(),
        "best_accuracy": corpus.best_accuracy,
        "splits": splits,
    }
