"""The label-free marginal prior of the group agent (``--marginal-weight``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from irlm_agents import group
from irlm_agents.lm.checkpoints import load_model
from irlm_agents.native.gradients import policy_gradient_logits
from irlm_agents.native.marginal_prior import marginal_scores, unqueried_share_terms
from irlm_agents.runs.args import unigram_frequencies
from irlm_env.errors import IrlmError
from test_native_agents import TINY


@pytest.mark.parametrize("entropy_coef", [0.0, 0.3])
def test_the_direction_is_the_gradient_of_the_feedback_and_the_unigram_log_likelihood_of_the_mean(
    entropy_coef: float,
) -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 9, dtype=torch.float64, requires_grad=True)
    unigram = torch.softmax(torch.randn(9, dtype=torch.float64), 0)
    actions, weights = torch.randint(0, 9, (6, 2)), torch.randn(6, 2, dtype=torch.float64)
    log_probs = torch.log_softmax(logits, -1)
    feedback = (weights * log_probs.gather(1, actions)).sum() - entropy_coef * (log_probs.exp() * log_probs).sum()
    objective = feedback / 6 + 2.5 * (unigram * log_probs.exp().mean(0).log()).sum()
    (expected,) = torch.autograd.grad(objective, logits)
    probs = log_probs.exp().detach()
    scores = marginal_scores(probs, unigram, weight=2.5, scale=1 / 6)
    direction = policy_gradient_logits(
        probs, actions, weights, entropy_coef=entropy_coef, scale=1 / 6, scores=scores, out=torch.empty_like(probs)
    )
    torch.testing.assert_close(direction, expected)
    with pytest.raises(ValueError, match="probs intact"):
        policy_gradient_logits(probs, actions, weights, scores=scores, out=probs)


def test_the_term_vanishes_when_the_mean_prediction_is_the_unigram() -> None:
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    scores = marginal_scores(probs, probs.mean(0), 1.0, 0.5)
    no_feedback = torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1)
    torch.testing.assert_close(policy_gradient_logits(probs, *no_feedback, scores=scores), torch.zeros(2, 3))


@pytest.mark.parametrize(("weight", "message"), [(-1.0, ">= 0, got -1.0"), (float("nan"), "a finite number, got nan"),
                                               (float("inf"), "a finite number, got inf")])
def test_a_bad_weight_is_refused(weight: float, message: str) -> None:
    with pytest.raises(IrlmError, match=f"marginal_weight must be {message}"):
        group.Args(marginal_weight=weight)


def _mean_prediction_distance(run_dir: Path) -> float:
    """KL(u || mean prediction) over the first training contexts of the saved model."""
    checkpoint = load_model(run_dir / "final.irlm")
    corpus = checkpoint.load_corpus()
    tokens = torch.as_tensor(corpus.split("train")[:4000].astype("int64"))
    model = checkpoint.model.eval()
    with torch.inference_mode():
        features, _ = model.features(tokens.reshape(8, -1), model.initial_hidden(8))
        mean = torch.softmax(model.head(features), -1).reshape(-1, model.config.vocab_size).mean(0)
    unigram = torch.from_numpy(unigram_frequencies(corpus)).float()
    return float((unigram * (unigram / mean).log()).sum())


def test_training_with_the_prior_brings_the_mean_prediction_to_the_word_frequencies(tmp_path: Path) -> None:
    distances = {}
    for weight, unqueried in ((0.0, 0.0), (3.0, 0.0), (3.0, 0.7)):
        run_dir = tmp_path / f"w{weight}-u{unqueried}"
        group.train(group.Args(**TINY, k=2, stop_at_hit=True, miss_weight=1.0, temperature=0.5, seed=0,
                               total_tokens=20_000, marginal_weight=weight, marginal_unqueried=unqueried,
                               run_dir=str(run_dir)))
        distances[weight, unqueried] = _mean_prediction_distance(run_dir)
    assert distances[3.0, 0.0] < 0.5 * distances[0.0, 0.0]
    assert distances[3.0, 0.7] < 0.5 * distances[0.0, 0.0]


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_the_unqueried_share_keeps_that_share_of_the_prior_off_the_queried_tokens(share: float) -> None:
    torch.manual_seed(1)
    probs = torch.softmax(torch.randn(5, 12, dtype=torch.float64), -1)
    unigram = torch.softmax(torch.randn(12, dtype=torch.float64), 0)
    actions = torch.stack([torch.randperm(12)[:3] for _ in range(5)])  # distinct in each row
    queried = torch.tensor([[True, True, False]] * 3 + [[True, False, False]] * 2)
    weights = torch.randn(5, 3, dtype=torch.float64) * queried
    scale = 1 / 5
    scores = marginal_scores(probs, unigram, 2.0, scale)
    prior_w, prior_c = unqueried_share_terms(probs, scores, actions, queried, share, scale)
    direction = policy_gradient_logits(
        probs, actions, weights + prior_w, weights.sum(-1) + prior_c, scale=scale, scores=scores,
        out=torch.empty_like(probs),
    )
    feedback = policy_gradient_logits(probs, actions, weights, scale=scale)
    outside = torch.ones_like(probs).scatter(1, actions, (~queried).to(probs.dtype))
    kept_off = probs * outside
    kept_off_mean = (kept_off @ scores) / kept_off.sum(-1)
    expected = (
        feedback
        + (1 - share) * probs * (scores - (probs @ scores)[:, None])
        + share * kept_off * (scores - kept_off_mean[:, None])
    )
    torch.testing.assert_close(direction, expected)
    # Every share moves mass only: the prior's part of each row sums to zero.
    torch.testing.assert_close((direction - feedback).sum(-1), torch.zeros(5, dtype=torch.float64))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"marginal_weight": 1.0, "marginal_unqueried": 1.5}, "share between 0 and 1"),
        ({"marginal_weight": 1.0, "marginal_unqueried": float("nan")}, "marginal_unqueried must be a finite number"),
        ({"marginal_unqueried": 0.5}, "set --marginal-weight above 0"),
        ({"marginal_weight": 1.0, "marginal_unqueried": 0.5, "replacement": True}, "drop --replacement"),
        ({"marginal_weight": 1.0, "marginal_smoothing": 0.0}, "pseudo-count above 0"),
        ({"marginal_weight": 1.0, "marginal_smoothing": float("inf")}, "marginal_smoothing must be a finite number"),
        ({"marginal_smoothing": 0.1}, "set --marginal-weight above 0"),
    ],
)
def test_a_bad_unqueried_share_is_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(IrlmError, match=message):
        group.Args(**options)


def test_the_smoothing_sets_how_much_of_the_target_lies_on_unused_words(tmp_path: Path) -> None:
    group.train(group.Args(**TINY, k=2, stop_at_hit=True, miss_weight=1.0, seed=0, total_tokens=300,
                           marginal_weight=1.0, marginal_smoothing=0.1, run_dir=str(tmp_path / "run")))
    corpus = load_model(tmp_path / "run" / "final.irlm").load_corpus()
    counts = np.bincount(corpus.split("train"), minlength=len(corpus.vocab))
    for pseudo_count in (1.0, 0.1):
        frequencies = unigram_frequencies(corpus, pseudo_count)
        np.testing.assert_allclose(frequencies, (counts + pseudo_count) / (counts + pseudo_count).sum())
    assert unigram_frequencies(corpus, 0.1)[counts == 0].sum() < 0.2 * unigram_frequencies(corpus)[counts == 0].sum()


def test_a_word_no_context_predicts_leaves_the_direction_finite() -> None:
    """A word whose probability underflowed to 0 in every row has a mean prediction of 0; its score
    u/π̄ must stay finite, or 0·inf makes every row's π·ρ, and so the whole direction, NaN."""
    probs = torch.tensor([[0.7, 0.3, 0.0], [0.5, 0.5, 0.0]])
    unigram = torch.tensor([0.5, 0.4, 0.1])
    scores = marginal_scores(probs, unigram, 1.0, 0.5)
    assert torch.isfinite(scores).all()
    actions, weights = torch.tensor([[0], [1]]), torch.ones(2, 1)
    direction = policy_gradient_logits(probs, actions, weights, scale=0.5, scores=scores, out=torch.empty(2, 3))
    assert torch.isfinite(direction).all()
    assert direction[:, 2].tolist() == [0.0, 0.0]  # no mass to move on the word itself
    # The other words get the prior's push as if the word were not there: ρ_v = weight·scale·u_v/π̄_v.
    live = probs[:, :2]
    rho = 0.5 * unigram[:2] / live.mean(0)
    feedback = policy_gradient_logits(live, actions, weights, scale=0.5)
    torch.testing.assert_close(direction[:, :2], feedback + live * (rho - (live @ rho)[:, None]))


def test_the_unqueried_share_pushes_no_harder_than_the_prior_where_q_holds_nearly_all_the_mass() -> None:
    """Where the queried token holds all but 5e-9 of a row's float32 mass, 1 - π(Q) rounds to 0 and
    the ρ-mean outside Q is rounding noise; it must stay within ρ's range, so the weight on the
    queried token a stays within π(a)·(ρ_min - ρ_a) .. π(a)·(ρ_max - ρ_a) (times share/scale)."""
    probs = torch.tensor([[1.0, 1e-9, 3e-9, 1e-9], [0.25, 0.25, 0.25, 0.25]])
    probs = probs / probs.sum(-1, keepdim=True)
    scores = marginal_scores(probs, torch.tensor([0.1, 0.2, 0.3, 0.4]), 1.0, 0.5)
    actions = torch.tensor([[0], [0]])
    weights, coefficients = unqueried_share_terms(probs, scores, actions, None, 1.0, 0.5)
    cand, cand_scores = probs.gather(1, actions)[:, 0], scores[actions][:, 0]
    factor = 1.0 / 0.5  # share / scale
    low = cand * (scores.min() - cand_scores) * factor
    high = cand * (scores.max() - cand_scores) * factor
    assert torch.all((low <= weights[:, 0]) & (weights[:, 0] <= high)), (low, weights[:, 0], high)
    row_mean = probs @ scores
    assert torch.all(((scores.min() - row_mean) * factor <= coefficients)
                     & (coefficients <= (scores.max() - row_mean) * factor))
    # The ordinary row is exact: the ρ-mean of the three others is (0.8 + 1.2 + 1.6) / 3 = 1.2.
    assert weights[1, 0].item() == pytest.approx(0.25 * (1.2 - 0.08) * 2, rel=1e-5)
