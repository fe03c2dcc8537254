"""The ``similarity`` reward: partial credit for near misses, learned from the corpus itself.

With a 0/1 reward over a 10,000-word vocabulary almost every sampled action earns nothing,
so the policy gradient carries almost no signal. Here a wrong word still earns
``scale * cosine(word, target)`` when the two words occur in similar contexts, which gives
the agent a gradient towards the right region of the vocabulary long before it hits the
exact word. The embeddings come from the corpus's own training split (PPMI co-occurrence
counts and a truncated SVD), so the reward needs no downloads and never sees evaluation text.
"""

from __future__ import annotations

import numbers
import weakref
from typing import TYPE_CHECKING

import numpy as np

from irlm_env import IrlmError, hookimpl
from irlm_env.hookspecs import Register
from irlm_env.options import check_int
from irlm_env.rewards import Reward

if TYPE_CHECKING:
    from irlm_env.corpus import Corpus

# Context-distribution smoothing of PPMI (Levy, Goldberg & Dagan 2015): damps the PMI of
# rare context words, which otherwise dominate.
_CONTEXT_ALPHA = 0.75
_SVD_OVERSAMPLE = 10
_SVD_POWER_ITERATIONS = 2

# One set of embeddings per corpus object and settings; dies with the corpus.
_CACHE: weakref.WeakKeyDictionary[Corpus, dict[tuple[int, int, int], np.ndarray]]
_CACHE = weakref.WeakKeyDictionary()


def cooccurrence_embeddings(
    tokens: np.ndarray,
    vocab_size: int,
    *,
    window: int,
    dim: int,
    max_words: int,
    exclude: tuple[int, ...] = (),
) -> np.ndarray:
    """Unit-length ``(vocab_size, dim)`` word vectors; words outside the top ``max_words`` are zero.

    Only the most frequent words get vectors so that the co-occurrence matrix stays
    ``max_words ** 2`` whatever the vocabulary size; rare words get no partial credit.
    """
    counts = np.bincount(tokens, minlength=vocab_size)
    counts[list(exclude)] = 0
    top = np.argsort(-counts, kind="stable")[:max_words]
    top = top[counts[top] > 0]
    k = len(top)
    # At most max_words columns can be non-zero: a larger dim would only add zeros.
    embeddings = np.zeros((vocab_size, min(dim, max_words)), dtype=np.float64)
    if k < 2:
        return embeddings
    row = np.full(vocab_size, -1, dtype=np.int64)
    row[top] = np.arange(k)
    mapped = row[tokens]
    cooc = np.zeros(k * k, dtype=np.float64)
    for distance in range(1, window + 1):
        left, right = mapped[:-distance], mapped[distance:]
        keep = (left >= 0) & (right >= 0)
        # Nearer neighbours count more, as in word2vec's dynamic window.
        cooc += np.bincount(left[keep] * k + right[keep], minlength=k * k) / distance
    matrix = cooc.reshape(k, k)
    matrix += matrix.T
    if not matrix.any():  # the frequent words never meet: no similarity to learn
        return embeddings
    ppmi = _ppmi(matrix)
    vectors = _truncated_svd(ppmi, min(dim, k))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    embeddings[top, : vectors.shape[1]] = vectors
    return embeddings


def _ppmi(cooc: np.ndarray) -> np.ndarray:
    total = cooc.sum()
    words = cooc.sum(axis=1) / total
    contexts = cooc.sum(axis=0) ** _CONTEXT_ALPHA
    contexts /= contexts.sum()
    expected = np.outer(words, contexts)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(cooc / total) - np.log(expected)
    return np.where(cooc > 0, np.maximum(pmi, 0.0), 0.0)


def _truncated_svd(matrix: np.ndarray, rank: int) -> np.ndarray:
    """Rows of ``U * sqrt(S)`` for the top ``rank`` singular values (randomized, fixed seed).

    A full SVD of a 2000 x 2000 matrix costs seconds; the randomized range finder (Halko et
    al. 2011) gets the leading vectors from a few matrix products and small factorizations.
    """
    n = matrix.shape[0]
    probe = np.random.default_rng(0).standard_normal((n, min(n, rank + _SVD_OVERSAMPLE)))
    basis = _orthonormalize(matrix @ probe)
    for _ in range(_SVD_POWER_ITERATIONS):
        basis = _orthonormalize(matrix.T @ basis)
        basis = _orthonormalize(matrix @ basis)
    small = basis.T @ matrix
    eigenvalues, eigenvectors = np.linalg.eigh(small @ small.T)  # squared singular values
    top = np.argsort(eigenvalues)[::-1][:rank]
    singular = np.sqrt(np.clip(eigenvalues[top], 0.0, None))
    return (basis @ eigenvectors[:, top]) * np.sqrt(singular)


def _orthonormalize(block: np.ndarray) -> np.ndarray:
    """Orthonormal columns spanning ``block``, by Cholesky QR applied twice (CholeskyQR2).

    LAPACK's Householder QR and SVD on tall matrices stall for seconds when BLAS threads
    compete for a busy machine's cores; a Gram matrix, a tiny Cholesky factor and its inverse
    do not. The small diagonal shift keeps rank-deficient blocks positive definite.
    """
    for _ in range(2):
        gram = block.T @ block
        gram.flat[:: len(gram) + 1] += 1e-12 * np.trace(gram) + np.finfo(np.float64).tiny
        block = block @ np.linalg.inv(np.linalg.cholesky(gram)).T
    return block


def embeddings_for(corpus: Corpus, window: int, dim: int, max_words: int) -> np.ndarray:
    """Embeddings of ``corpus``'s training split, computed once per corpus and settings."""
    per_corpus = _CACHE.setdefault(corpus, {})
    key = (window, dim, max_words)
    if key not in per_corpus:
        vocab = corpus.vocab
        per_corpus[key] = cooccurrence_embeddings(
            corpus.split("train"),
            len(vocab),
            window=window,
            dim=dim,
            max_words=max_words,
            exclude=(vocab.pad_id, vocab.unk_id),
        )
    return per_corpus[key]


class SimilarityReward(Reward):
    """1.0 for the true next token, else ``scale * max(0, cosine(action, target))``.

    Arguments (``reward_options``): ``scale`` (0..1, default 0.5) caps the partial credit
    below the exact hit; ``window`` (default 2) is the co-occurrence window; ``dim``
    (default 64) the embedding size; ``max_words`` (default 2000) how many of the most
    frequent words get embeddings (the rest earn only exact hits).
    """

    name = "similarity"

    def __init__(
        self, corpus: Corpus, scale: float = 0.5, window: int = 2, dim: int = 64, max_words: int = 2000
    ) -> None:
        number = isinstance(scale, numbers.Real) and not isinstance(scale, (bool, np.bool_))
        if not number or not 0.0 <= scale <= 1.0:
            raise IrlmError(
                f"similarity reward option scale={scale!r} must be a number between 0 and 1 "
                "(partial credit stays below the 1.0 of an exact hit)."
            )
        self.scale = float(scale)
        # A window past the train split adds nothing but time: refused, as a slip.
        self.embeddings = embeddings_for(
            corpus,
            check_int("similarity reward option window", window, maximum=max(1, len(corpus.split("train")) - 1)),
            check_int("similarity reward option dim", dim),
            check_int("similarity reward option max_words", max_words, minimum=2),
        )

    def __call__(self, action: int, target: int, context: np.ndarray) -> float:
        if action == target:
            return 1.0
        cosine = float(self.embeddings[action] @ self.embeddings[target])
        return min(1.0, max(0.0, cosine) * self.scale)

    def _finish(self, cosines: np.ndarray, exact: np.ndarray | tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        np.clip(cosines, 0.0, 1.0, out=cosines)
        cosines *= self.scale
        cosines[exact] = 1.0
        return cosines

    def batch(self, actions: np.ndarray, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        cosines = np.einsum("nkd,nd->nk", self.embeddings[actions], self.embeddings[targets])
        return self._finish(cosines, actions == targets[:, None])

    def table(self, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        cosines = self.embeddings[targets] @ self.embeddings.T
        return self._finish(cosines, (np.arange(len(targets)), targets))


@hookimpl
def irlm_register_rewards(register: Register) -> None:
    register(
        "similarity",
        SimilarityReward,
        "1.0 for the true token, partial credit scale*cosine for words used in similar contexts",
    )
