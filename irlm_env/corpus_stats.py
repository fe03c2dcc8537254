"""Corpus statistics for ``irlm corpus-stats``: sizes, out-of-vocabulary rate, k-token oracles.

The oracle figures answer "how well could anything that sees only the last k tokens do on this
text?", which tells a user whether a model's accuracy is poor or already near what the text
allows. The context counting here is shared with the n-gram peers (``irlm_agents.lm.ngram``), which fit it
on train; the oracle fits it on the very split it scores. Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from irlm_env.corpus import Corpus
from irlm_env.errors import IrlmError


#: Candidates kept per context (enough for top-5 accuracy).
TOP = 5


def context_keys(tokens: np.ndarray, positions: np.ndarray, length: int, vocab_size: int) -> np.ndarray:
    """Key of the ``length`` tokens ending at each position (left-padded with id 0)."""
    keys = np.zeros(len(positions), dtype=np.int64)
    for back in range(length):
        index = positions - back
        ids = np.where(index >= 0, tokens[np.maximum(index, 0)], 0)
        keys = keys * vocab_size + ids
    return keys


@dataclass(frozen=True)
class ContinuationTable:
    """For one order: sorted context keys and each context's most frequent continuations."""

    keys: np.ndarray  # (C,) sorted unique context keys
    top: np.ndarray  # (C, TOP) next-token ids by decreasing count, -1 where fewer seen


def fit_continuations(tokens: np.ndarray, order: int, vocab_size: int) -> ContinuationTable:
    """Most frequent continuations of every ``order - 1``-token context in ``tokens``."""
    positions = np.arange(len(tokens) - 1)
    context = context_keys(tokens, positions, order - 1, vocab_size)
    nxt = tokens[positions + 1]
    # Count (context, next) pairs, then sort by context and decreasing count (ties: lower id).
    pair, counts = np.unique(np.stack([context, nxt], 1), axis=0, return_counts=True)
    ordering = np.lexsort((pair[:, 1], -counts, pair[:, 0]))
    pair = pair[ordering]
    keys, first = np.unique(pair[:, 0], return_index=True)
    rank = np.arange(len(pair)) - np.repeat(first, np.diff(np.append(first, len(pair))))
    top = np.full((len(keys), TOP), -1, dtype=np.int64)
    keep = rank < TOP
    top[np.repeat(np.arange(len(keys)), np.diff(np.append(first, len(pair))))[keep], rank[keep]] = pair[keep, 1]
    return ContinuationTable(keys, top)


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
    table = fit_continuations(tokens, k + 1, vocab_size)
    positions = np.arange(len(tokens) - 1)
    keys = context_keys(tokens, positions, k, vocab_size)
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
        "tokenizer": corpus.tokenizer.summary(),
        "best_accuracy": corpus.best_accuracy,
        "splits": splits,
    }
