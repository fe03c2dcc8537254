"""Classical peers for the learned models: the majority token and count-based n-grams with backoff.

A learned model's accuracy only means something next to what counting achieves on the same
split, so the agents and the benchmark print these figures beside their own: top-1 and top-5
from the most frequent continuations with backoff, and perplexity from Witten-Bell
interpolation (a proper distribution over the whole vocabulary, finite on unseen n-grams), so a
model's calibration is judged against counting too. Everything is
vectorised numpy: a context of ``n - 1`` token ids is packed into one int64 key (``V**3 < 2**63``
for any vocabulary up to 2 million tokens at order 4), counts come from ``np.unique`` and
look-ups from ``np.searchsorted``. A (context, token) pair is keyed by the context's rank among
the distinct contexts, not by its packed key, so that ``rank * V + token`` stays below ``2**63``
at every order and vocabulary. No torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from irlm_env.corpus_stats import TOP, context_keys, fit_continuations
from irlm_env.errors import IrlmError

if TYPE_CHECKING:
    from irlm_env.corpus import Corpus

#: Positions scored per chunk, bounding the (chunk, orders x TOP, orders x TOP) duplicate test.
CHUNK = 65_536


class NGramModel:
    """Count-based next-token predictor with backoff, fit on a token array.

    The prediction for a context is the most frequent continuation under the longest context
    (up to ``order - 1`` tokens) seen in training; top-5 fills from shorter contexts when the
    longest one was followed by fewer than five distinct tokens. ``order=1`` is the majority
    token; ``order=2`` the bigram predictor.
    """

    def __init__(self, tokens: np.ndarray, order: int, vocab_size: int) -> None:
        if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= 4:
            raise IrlmError(f"n-gram order must be an integer from 1 to 4, got {order!r}")
        if len(tokens) < 2:
            raise IrlmError("an n-gram model needs at least 2 training tokens; use a longer split")
        self.order = order
        self.vocab_size = vocab_size
        self._tables = [fit_continuations(tokens, n, vocab_size) for n in range(order, 0, -1)]

    def predict(self, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """(M, 5) predicted next tokens after each position (best first; -1 if none known)."""
        candidates = []
        for table, n in zip(self._tables, range(self.order, 0, -1)):
            keys = context_keys(tokens, positions, n - 1, self.vocab_size)
            where = np.minimum(np.searchsorted(table.keys, keys), len(table.keys) - 1)
            found = table.keys[where] == keys
            candidates.append(np.where(found[:, None], table.top[where], -1))
        stacked = np.concatenate(candidates, 1)
        # Keep the first occurrence of each token, skip -1, take the first TOP survivors per row.
        width = stacked.shape[1]
        earlier = np.tril(np.ones((width, width), dtype=bool), -1)
        duplicate = ((stacked[:, :, None] == stacked[:, None, :]) & earlier).any(2)
        valid = (stacked >= 0) & ~duplicate
        order = np.argsort(~valid, axis=1, kind="stable")[:, :TOP]
        picked = np.take_along_axis(stacked, order, 1)
        return np.where(np.take_along_axis(valid, order, 1), picked, -1)

    def accuracy(self, tokens: np.ndarray, max_tokens: int | None = None) -> tuple[float, float]:
        """Top-1 and top-5 accuracy of predicting ``tokens[i + 1]`` from ``tokens[: i + 1]``."""
        n = len(tokens) - 1 if max_tokens is None else min(len(tokens) - 1, max_tokens)
        if n < 1:
            raise IrlmError("scoring needs at least 2 tokens in the split")
        top1 = top5 = 0
        for start in range(0, n, CHUNK):
            positions = np.arange(start, min(start + CHUNK, n))
            predicted = self.predict(tokens, positions)
            hits = predicted == tokens[positions + 1][:, None]
            top1 += int(hits[:, 0].sum())
            top5 += int(hits.any(1).sum())
        return top1 / n, top5 / n


class WittenBellModel:
    """Interpolated Witten-Bell n-gram probabilities, for the peers' perplexity.

    ``P(w | h) = (c(h, w) + T(h) P(w | h')) / (c(h) + T(h))`` where ``T(h)`` is the number of
    distinct tokens seen after ``h`` and ``h'`` drops the oldest token of ``h``; an unseen ``h``
    backs off entirely. The base is add-one unigram, so every token has a non-zero probability
    and the perplexity stays finite on text the counts never saw.
    """

    def __init__(self, tokens: np.ndarray, order: int, vocab_size: int) -> None:
        self.order = order
        self.vocab_size = vocab_size
        positions = np.arange(len(tokens) - 1)
        following = tokens[positions + 1].astype(np.int64)
        self._unigram = (np.bincount(following, minlength=vocab_size) + 1.0) / (len(following) + vocab_size)
        # Per context length 1 .. order-1: sorted context keys with their total count and number
        # of distinct continuations, and sorted (context rank, token) keys with their counts.
        self._levels: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for length in range(1, order):
            contexts = context_keys(tokens, positions, length, vocab_size)
            keys, ranks = np.unique(contexts, return_inverse=True)
            pairs, pair_counts = np.unique(ranks.astype(np.int64) * vocab_size + following, return_counts=True)
            first = np.searchsorted(pairs // vocab_size, np.arange(len(keys)))
            totals = np.add.reduceat(pair_counts, first).astype(np.float64)
            distinct = np.diff(np.append(first, len(pairs))).astype(np.float64)
            self._levels.append((pairs, pair_counts.astype(np.float64), keys, totals, distinct))

    def probabilities(self, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """P(tokens[i + 1] | tokens[: i + 1]) for each position ``i``."""
        following = tokens[positions + 1].astype(np.int64)
        probs = self._unigram[following]
        for length, (pairs, pair_counts, keys, totals, distinct) in enumerate(self._levels, start=1):
            contexts = context_keys(tokens, positions, length, self.vocab_size)
            where = np.minimum(np.searchsorted(keys, contexts), len(keys) - 1)
            seen = keys[where] == contexts
            pair = where * self.vocab_size + following
            at = np.minimum(np.searchsorted(pairs, pair), len(pairs) - 1)
            count = np.where(pairs[at] == pair, pair_counts[at], 0.0)
            total, kinds = totals[where], distinct[where]
            interpolated = (count + kinds * probs) / np.maximum(total + kinds, 1.0)
            probs = np.where(seen, interpolated, probs)
        return probs

    def distributions(self, contexts: np.ndarray) -> np.ndarray:
        """``(N, V)`` next-token distributions after each row of ``contexts`` (``(N, W)``, oldest first).

        The same interpolation as :meth:`probabilities`, over the whole vocabulary at once, so
        a judge can rank every token: each level scales the rows in place and adds its counts
        from the contiguous run of sorted ``(context, token)`` keys that shares the row's
        context, so the cost is one pass over ``(N, V)`` per level. A row narrower than
        ``order - 1`` tokens is read as left-padded with id 0, as the start of a text is; wider
        rows use their last tokens.
        """
        contexts = np.asarray(contexts, dtype=np.int64)
        if contexts.ndim != 2:
            raise IrlmError(f"distributions() takes contexts of shape (N, W), got shape {contexts.shape}")
        n, width = contexts.shape
        vocab = self.vocab_size
        probs = np.broadcast_to(self._unigram, (n, vocab)).copy()
        flat = contexts.reshape(-1)
        ends = np.arange(n) * width + width - 1
        for length, (pairs, pair_counts, keys, totals, distinct) in enumerate(self._levels, start=1):
            if length > width:  # the missing older tokens are padding, keyed as context_keys pads
                row_keys = context_keys(flat, ends, width, vocab) * vocab ** (length - width)
            else:
                row_keys = context_keys(flat, ends, length, vocab)
            where = np.minimum(np.searchsorted(keys, row_keys), len(keys) - 1)
            seen = keys[where] == row_keys
            # In place, rows at once: P <- P * T/(c+T) + counts/(c+T) where the context was seen,
            # P unchanged where not; the counts are added sparsely.
            denominator = np.where(seen, totals[where] + distinct[where], 1.0)
            probs *= np.where(seen, distinct[where], 1.0)[:, None] / denominator[:, None]
            low = np.searchsorted(pairs, where * vocab)
            sizes = np.where(seen, np.searchsorted(pairs, (where + 1) * vocab) - low, 0)
            owner = np.repeat(np.arange(n), sizes)
            at = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes - low, sizes)
            probs[owner, pairs[at] % vocab] += pair_counts[at] / denominator[owner]
        return probs

    def perplexity(self, tokens: np.ndarray, max_tokens: int | None = None, skip: int | None = None) -> float:
        """exp of the mean negative log-probability of ``tokens[i + 1]``, scored like ``accuracy``.

        ``skip`` leaves out the positions whose next token is that id (``<unk>``, for the
        perplexity over the known words, as ``evaluate``'s ``known_perplexity``); NaN if that
        leaves none.
        """
        n = len(tokens) - 1 if max_tokens is None else min(len(tokens) - 1, max_tokens)
        if n < 1:
            raise IrlmError("scoring needs at least 2 tokens in the split")
        nll, scored = 0.0, 0
        for start in range(0, n, CHUNK):
            positions = np.arange(start, min(start + CHUNK, n))
            if skip is not None:
                positions = positions[tokens[positions + 1] != skip]
            nll -= float(np.log(self.probabilities(tokens, positions)).sum())
            scored += len(positions)
        return math.exp(nll / scored) if scored else math.nan


#: Names of the peers reported by :func:`ngram_baselines`, by order.
PEERS = {1: "majority", 2: "bigram", 3: "trigram", 4: "4gram"}


def ngram_baselines(
    corpus: Corpus, split: str = "validation", *, orders: tuple[int, ...] = (1, 2, 4), max_tokens: int | None = None,
    known: bool = False,
) -> dict[str, float]:
    """``{"majority_top1": ..., "majority_top5": ..., "majority_perplexity": ..., "bigram_top1": ...}``.

    Fit on train and scored like :func:`irlm_agents.lm.evaluation.evaluate` (every position of
    the split, the first ``max_tokens`` of them if given), so the figures sit beside a model's
    directly. The majority peer's perplexity is the add-one unigram's; the others' come from
    :class:`WittenBellModel` of the same order. With ``known``, also ``majority_known_perplexity``
    and so on: the same models' perplexity over the positions whose next token is not ``<unk>``,
    as ``evaluate``'s ``known_perplexity``.
    """
    train = corpus.split("train")
    target = corpus.split(split)
    scores: dict[str, float] = {}
    for order in orders:
        if order not in PEERS:
            raise IrlmError(f"n-gram order must be one of {sorted(PEERS)}, got {order!r}")
        top1, top5 = NGramModel(train, order, len(corpus.vocab)).accuracy(target, max_tokens)
        scores[f"{PEERS[order]}_top1"] = top1
        scores[f"{PEERS[order]}_top5"] = top5
        smoothed = WittenBellModel(train, order, len(corpus.vocab))
        scores[f"{PEERS[order]}_perplexity"] = smoothed.perplexity(target, max_tokens)
        if known:
            scores[f"{PEERS[order]}_known_perplexity"] = smoothed.perplexity(target, max_tokens,
                                                                            skip=corpus.vocab.unk_id)
    return scores
