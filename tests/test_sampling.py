"""Token sampling draws from the distribution it claims to, with and without replacement."""

from __future__ import annotations

import torch

from irlm_agents.lm.sampling import sample_candidates, sample_from_cdf

PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)


def _frequencies(draws: torch.Tensor) -> torch.Tensor:
    return torch.bincount(draws.flatten(), minlength=4).double() / draws.numel()


def test_inverse_cdf_draws_from_an_unnormalised_table() -> None:
    torch.manual_seed(0)
    weights = (PROBS * 7.0).float()  # any positive scale: the row total normalises the draws
    draws = sample_from_cdf(weights.cumsum(-1).repeat(10_000, 1), 4)
    assert draws.shape == (10_000, 4)
    torch.testing.assert_close(_frequencies(draws), PROBS, atol=0.01, rtol=0)


def test_inverse_cdf_never_returns_an_index_past_the_vocabulary() -> None:
    # NaN probabilities make the binary search answer V, one past the last token id.
    cdf = torch.tensor([[0.1, 0.2, float("nan"), float("nan")], [float("nan")] * 4])
    assert int(sample_from_cdf(cdf, 8).max()) == 3


def test_candidates_follow_the_policy() -> None:
    torch.manual_seed(0)
    logits = torch.log(PROBS.float())[None].expand(40_000, 4)
    frequencies = _frequencies(sample_candidates(logits, 1, replacement=True, temperature=1.0)[:, 0])
    torch.testing.assert_close(frequencies, PROBS, atol=0.01, rtol=0)
    # The rollout's own softmax, when given, serves as the table.
    given = sample_candidates(logits, 1, replacement=True, temperature=1.0, probs=torch.softmax(logits, -1))
    torch.testing.assert_close(_frequencies(given), PROBS, atol=0.01, rtol=0)
    # Gumbel top-k: distinct, and the first candidate is itself a sample from π.
    distinct = sample_candidates(logits, 3, replacement=False, temperature=1.0)
    assert (distinct[:, 0] != distinct[:, 1]).all() and (distinct[:, 1] != distinct[:, 2]).all()
    torch.testing.assert_close(_frequencies(distinct[:, 0]), frequencies, atol=0.015, rtol=0)
    # ... and the second, after token 0, is drawn from π restricted to the rest.
    second = torch.bincount(distinct[distinct[:, 0] == 0, 1], minlength=4).double()
    torch.testing.assert_close(second / second.sum(), torch.tensor([0.0, 0.6, 0.3, 0.1], dtype=torch.float64), atol=0.02, rtol=0)
    # Truncated: only the 2 most probable tokens are ever proposed.
    truncated = sample_candidates(logits, 2, replacement=False, temperature=1.0, truncate=2)
    assert set(truncated.flatten().tolist()) == {0, 1}
    assert sample_candidates(logits[:1], 2, replacement=False, temperature=0.0).tolist() == [[0, 1]]


def test_temperature_sharpens_the_draws() -> None:
    torch.manual_seed(0)
    logits = torch.log(PROBS.float())[None].expand(40_000, 4)
    cold = _frequencies(sample_candidates(logits, 1, replacement=True, temperature=0.5))
    sharpened = PROBS**2 / (PROBS**2).sum()
    torch.testing.assert_close(cold, sharpened, atol=0.01, rtol=0)
