"""Token sampling draws from the distribution it claims to, with and without replacement."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from irlm_agents.lm.sampling import (
    MAX_SEQUENTIAL_DRAWS,
    _draw_distinct_numpy,
    _draw_distinct_torch,
    gumbel_perturbed,
    sample_candidates,
    sample_distinct_from_cdf,
    sample_from_cdf,
)

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
    # Distinct: the first candidate is itself a sample from π.
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


def test_the_rollouts_probabilities_do_not_stand_in_for_a_tempered_policy() -> None:
    """The group agent hands the rollout's softmax (temperature 1) along with a proposal
    temperature; the draws must still come from the tempered distribution, or the importance
    weights, which assume it, would be wrong."""
    torch.manual_seed(0)
    logits = torch.log(PROBS.float())[None].expand(40_000, 4)
    probs = torch.softmax(logits, -1)
    sharpened = PROBS**2 / (PROBS**2).sum()
    for replacement in (True, False):
        drawn = sample_candidates(logits, 1, replacement=replacement, temperature=0.5, probs=probs)
        torch.testing.assert_close(_frequencies(drawn), sharpened, atol=0.01, rtol=0)


def test_distinct_draws_are_sequential_draws_without_replacement() -> None:
    """Every ordered triple comes as often as drawing one token, removing it, and drawing again
    says, as with Gumbel top-k (checked alongside)."""
    torch.manual_seed(0)
    rows = 60_000
    cdf = PROBS.cumsum(-1).repeat(rows, 1)
    drawn = sample_distinct_from_cdf(cdf, 3)
    gumbel = gumbel_perturbed(torch.log(PROBS)[None].expand(rows, 4).contiguous()).topk(3, dim=-1).indices
    p = PROBS.tolist()
    for sample in (drawn, gumbel):
        codes = torch.bincount(sample[:, 0] * 16 + sample[:, 1] * 4 + sample[:, 2], minlength=64).double() / rows
        for a, b, c in itertools.permutations(range(4), 3):
            exact = p[a] * p[b] / (1 - p[a]) * p[c] / (1 - p[a] - p[b])
            assert abs(float(codes[a * 16 + b * 4 + c]) - exact) < 0.006, (a, b, c)


@pytest.mark.parametrize(
    ("probs", "first_two", "alone"),
    [
        # row 0 has two tokens of positive mass and row 1 one: the other draws cannot come from
        # the table, and are filled with distinct tokens rather than repeats
        ([[0.0, 0.7, 0.0, 0.3, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0]], {1, 3}, 2),
        # the later draws land on token 0 again (a number of zero mass left): the replacement
        # must take the repeat, not the earlier draw, since the first candidate is the action the
        # env is stepped with and must stay a draw from the policy
        ([[0.6, 0.0, 0.4, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]], {0, 2}, 0),
    ],
)
def test_distinct_draws_never_repeat_a_token_and_keep_the_first_draws(
    probs: list[list[float]], first_two: set[int], alone: int
) -> None:
    torch.manual_seed(0)
    table = torch.tensor(probs, dtype=torch.float64).cumsum(-1)
    for _ in range(50):
        drawn = sample_distinct_from_cdf(table, 4)
        assert all(len(set(row)) == 4 for row in drawn.tolist())
        assert set(drawn[0, :2].tolist()) == first_two and int(drawn[1, 0]) == alone


def test_the_cpu_loop_draws_what_the_device_loop_draws() -> None:
    """The NumPy loop used on CPU and the torch loop used on other devices pick the same tokens
    from the same uniform numbers (flat and sharp float64 tables, tokens excluded, one to 24
    candidates), so a training run's draws do not depend on which one ran."""
    generator = torch.Generator().manual_seed(0)
    for table in range(1000):
        logits = torch.randn(32, 1000, generator=generator, dtype=torch.float64) * (1 + (table // 5) % 5)
        if table % 3 == 0:
            logits[:, torch.randperm(1000, generator=generator)[:64]] = float("-inf")
        cdf = torch.softmax(logits / 0.7, -1).cumsum(-1)
        k = (1, 2, 8, 10, 24)[table % 5]
        draws = torch.rand(32, k, generator=generator, dtype=cdf.dtype)
        assert torch.equal(_draw_distinct_numpy(cdf, draws), _draw_distinct_torch(cdf, draws)), table


def test_many_distinct_candidates_follow_the_policy_too() -> None:
    """Past the sequential draws' limit the candidates come from Gumbel top-k: distinct, and the
    first one is a sample from π."""
    torch.manual_seed(0)
    probs = torch.softmax(torch.linspace(0.0, 3.0, 40, dtype=torch.float64), -1)
    logits = probs.log().float()[None].expand(20_000, 40)
    drawn = sample_candidates(logits, MAX_SEQUENTIAL_DRAWS + 1, replacement=False, temperature=1.0)
    assert (drawn.sort(-1).values.diff(dim=-1) > 0).all()
    first = torch.bincount(drawn[:, 0], minlength=40).double() / drawn.shape[0]
    torch.testing.assert_close(first, probs, atol=0.01, rtol=0)


@pytest.mark.parametrize(
    "options",
    [
        {"replacement": False, "temperature": 1.0},
        {"replacement": False, "temperature": 0.0},
        {"replacement": False, "temperature": 0.7, "truncate": 6},
        {"replacement": True, "temperature": 1.0},
    ],
    ids=["distinct", "top-k", "truncated", "replacement"],
)
def test_excluded_tokens_are_never_proposed(options: dict[str, Any]) -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 12)
    logits[:, :3] += 5.0  # the excluded tokens are the most probable ones
    before = logits.clone()
    probs = torch.softmax(logits, -1)
    exclude = (torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 2, 1]))
    for _ in range(20):
        drawn = sample_candidates(logits, 3, probs=probs, exclude=exclude, **options)
        assert not set(drawn[0].tolist()) & {0, 1, 2}
        assert 1 not in drawn[1].tolist()
    assert torch.equal(logits, before)  # the caller's logits are left as they were
