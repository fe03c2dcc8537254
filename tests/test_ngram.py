"""n-gram peers: exact counts on hand-made sequences, backoff, top-5 filling, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from irlm_env.errors import IrlmError
from irlm_agents.lm.ngram import NGramModel, WittenBellModel, ngram_baselines

SEQ = np.array([2, 5, 6, 7, 2, 5, 6, 8, 2, 5, 6, 7, 2], dtype=np.int64)


def test_majority_token_predicts_the_most_frequent_next_token() -> None:
    model = NGramModel(SEQ, 1, 10)
    # Next tokens: 2, 5 and 6 appear 3 times each; ties go to the lower id.
    assert model.predict(SEQ, np.arange(3))[:, 0].tolist() == [2, 2, 2]
    assert model.accuracy(SEQ) == (pytest.approx(3 / 12), pytest.approx(1.0))


def test_bigram_counts_and_top5_fill_from_lower_orders() -> None:
    model = NGramModel(SEQ, 2, 10)
    predicted = model.predict(SEQ, np.array([2]))  # after 6: 7 (twice) beats 8 (once)
    assert predicted[0, :2].tolist() == [7, 8]
    assert sorted(predicted[0].tolist()) == [2, 5, 6, 7, 8]  # filled from the unigram, no repeats
    top1, top5 = model.accuracy(SEQ)
    assert top1 == pytest.approx(11 / 12) and top5 == 1.0


def test_higher_order_backs_off_to_seen_contexts() -> None:
    train = np.array([1, 2, 3, 1, 2, 4, 1, 2, 3], dtype=np.int64)
    model = NGramModel(train, 3, 6)
    # Context (1, 2) was followed by 3 twice and 4 once; context (5, 2) was never seen, so the
    # bigram after 2 decides (also 3).
    test = np.array([5, 2, 1, 2], dtype=np.int64)
    assert model.predict(test, np.array([1, 3]))[:, 0].tolist() == [3, 3]
    # An unseen unigram context cannot occur: the unigram table always answers.
    assert model.predict(np.array([0, 0], dtype=np.int64), np.array([0]))[0, 0] >= 0


def test_four_gram_memorises_its_training_text() -> None:
    rng = np.random.default_rng(0)
    text = rng.integers(3, 50, 2000)
    assert NGramModel(text, 4, 50).accuracy(text)[0] > 0.95
    assert NGramModel(text, 1, 50).accuracy(text)[0] < 0.1


def test_bad_orders_and_tiny_inputs_are_rejected() -> None:
    with pytest.raises(IrlmError, match="order must be an integer from 1 to 4"):
        NGramModel(SEQ, 5, 10)
    with pytest.raises(IrlmError, match="at least 2 training tokens"):
        NGramModel(SEQ[:1], 2, 10)


def test_baselines_on_a_corpus_split() -> None:
    from irlm_env.corpus import load_corpus

    corpus = load_corpus("grammar", n_sentences=2000)
    scores = ngram_baselines(corpus, "validation", orders=(1, 2))
    assert set(scores) == {f"{peer}_{metric}" for peer in ("majority", "bigram") for metric in ("top1", "top5", "perplexity")}
    assert scores["majority_top1"] < scores["bigram_top1"] <= scores["bigram_top5"]
    assert 1.0 < scores["bigram_perplexity"] < scores["majority_perplexity"] < len(corpus.vocab)
    # The grammar is a bigram language: counting bigrams nearly reaches the best accuracy.
    assert corpus.best_accuracy is not None
    assert scores["bigram_top1"] > 0.9 * corpus.best_accuracy
    with pytest.raises(IrlmError, match="order must be one of"):
        ngram_baselines(corpus, orders=(7,))


def test_witten_bell_matches_the_formula_and_is_a_distribution() -> None:
    model = WittenBellModel(SEQ, 2, 10)
    # Unigram base: next-token counts of SEQ (2, 5, 6 three times; 7 twice; 8 once), add-one over 10.
    unigram = (np.bincount(SEQ[1:], minlength=10) + 1.0) / (12 + 10)
    # After 6: 7 twice and 8 once, so c(h) = 3 and T(h) = 2.
    expected = (2 + 2 * unigram[7]) / (3 + 2)
    assert model.probabilities(SEQ, np.array([2]))[0] == pytest.approx(expected)
    for order in (1, 2, 4):
        model = WittenBellModel(SEQ, order, 10)
        totals = []
        for token in range(10):
            probe = SEQ.copy()
            probe[3] = token
            totals.append(model.probabilities(probe, np.array([2]))[0])
        assert sum(totals) == pytest.approx(1.0)


@pytest.mark.parametrize("max_tokens", [None, 5])
def test_witten_bell_perplexity_is_exp_of_the_mean_log_probability(max_tokens: int | None) -> None:
    """The peers' perplexity sits beside a model's, exp of the mean NLL over the n scored
    positions: a denominator off by one would flatter the n-grams on short splits."""
    model = WittenBellModel(SEQ, 2, 10)
    n = len(SEQ) - 1 if max_tokens is None else max_tokens
    probabilities = model.probabilities(SEQ, np.arange(n))
    assert model.perplexity(SEQ, max_tokens) == pytest.approx(float(np.exp(-np.mean(np.log(probabilities)))))


@pytest.mark.parametrize("max_tokens", [None, 5])
def test_skip_leaves_out_the_positions_whose_next_token_is_that_id(max_tokens: int | None) -> None:
    """The peers' reading over the known words: positions followed by ``<unk>`` are not scored."""
    model = WittenBellModel(SEQ, 2, 10)
    n = len(SEQ) - 1 if max_tokens is None else max_tokens
    skip = int(SEQ[2])
    kept = np.arange(n)[SEQ[1:n + 1] != skip]
    assert 0 < len(kept) < n
    want = float(np.exp(-np.mean(np.log(model.probabilities(SEQ, kept)))))
    assert model.perplexity(SEQ, max_tokens, skip=skip) == pytest.approx(want)
    assert model.perplexity(SEQ, max_tokens, skip=skip) != pytest.approx(model.perplexity(SEQ, max_tokens))
    assert np.isnan(model.perplexity(np.array([1, skip, skip]), skip=skip))  # nothing left to score


def test_witten_bell_perplexity_is_finite_on_unseen_tokens() -> None:
    model = WittenBellModel(SEQ, 4, 10)
    unseen = np.array([9, 9, 3, 9], dtype=np.int64)  # tokens and contexts never counted
    assert 1.0 < model.perplexity(unseen) < float("inf")


@pytest.mark.parametrize("offset", [0, 70_000])
def test_witten_bell_does_not_depend_on_the_vocabulary_size(offset: int) -> None:
    # The same text written with ids shifted beyond 55,108, where V**4 no longer fits in int64:
    # the probabilities must be those of the small vocabulary, bar the add-one unigram's V.
    text = np.random.default_rng(0).integers(0, 12, 3000)
    small, large = WittenBellModel(text, 4, 12), WittenBellModel(text + offset, 4, 12 + offset)
    positions = np.arange(2, 400)
    ratio = small.probabilities(text, positions) / large.probabilities(text + offset, positions)
    if offset == 0:
        assert np.all(ratio == 1.0)
    else:
        # Only the unigram base differs: (c + 1) / (N + V) with another V. Interpolation keeps
        # each level's own counts, so the ratio stays near 1, far from what wrapped keys give.
        assert np.all(np.abs(ratio - 1.0) < 0.2)
    rows = large.distributions(np.stack([text[p - 2:p + 1] + offset for p in positions[:50]]))
    assert np.allclose(rows.sum(1), 1.0)
    assert np.allclose(rows[np.arange(50), text[positions[:50] + 1] + offset], large.probabilities(text + offset, positions[:50]))
