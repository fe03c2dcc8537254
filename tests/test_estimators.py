"""The estimators' maths and the gradient path the agents take: each checked against autograd,
finite differences or the exact gradient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from irlm_agents import group as group_module
from irlm_agents.lm.model import ModelConfig, RNNLanguageModel
from irlm_agents.native import estimators as obj
from irlm_agents.native.distributed import Share
from irlm_agents.native.gradients import Workspace, head_surrogate, policy_gradient_logits
from irlm_agents.native.rollout import Segment

@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def _model(tie: bool) -> RNNLanguageModel:
    torch.manual_seed(0)
    return RNNLanguageModel(ModelConfig(vocab_size=7, embedding_dim=3, hidden_size=5, tie_weights=tie)).double()


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("entropy_coef", [0.0, 0.1])
def test_reinforce_update_path_equals_autograd_of_the_objective(tie: bool, entropy_coef: float) -> None:
    """Stored rollout probabilities + head surrogate, called as the reinforce agent calls them
    (pre-scaled, into a workspace), give exactly ∇ mean((R - b)·log π(a) + β H(π))."""
    model = _model(tie)
    tokens = torch.tensor([[1, 4, 2, 6], [3, 3, 5, 0]])
    actions = torch.tensor([[2, 0, 6, 6], [1, 4, 4, 3]])
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.5], [0.0, 1.0, 0.25, 1.0]])
    baseline = torch.tensor([[0.5, 0.1, 0.0, 0.9], [0.3, 0.3, 0.2, 0.7]])

    features, _ = model.features(tokens)
    log_probs = F.log_softmax(model.head(features), -1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    objective = (rewards - baseline) * log_probs.gather(-1, actions[..., None])[..., 0] + entropy_coef * entropy
    expected = torch.autograd.grad(objective.mean(), list(model.parameters()))

    with torch.no_grad():
        probs = F.softmax(model(tokens)[0], -1).reshape(-1, 7)
    kept = probs.clone()
    contexts = rewards.numel()
    direction = policy_gradient_logits(
        probs,
        actions.reshape(contexts, 1),
        obj.reinforce_weights(rewards, baseline).reshape(contexts, 1),
        entropy_coef=entropy_coef,
        scale=1 / contexts,
        out=Workspace(7, probs.device).rows(contexts),
    )
    assert torch.equal(probs, kept)  # the rollout's probabilities are left as they were
    features, _ = model.features(tokens)
    got = torch.autograd.grad(head_surrogate(model, features, direction), list(model.parameters()), allow_unused=True)
    for g, e in zip(got, expected):
        torch.testing.assert_close(torch.zeros_like(e) if g is None else g, e)


def test_expected_reward_matches_finite_differences() -> None:
    torch.manual_seed(1)
    logits = torch.randn(3, 6, requires_grad=True)
    table = torch.rand(3, 6)

    def exact(z: torch.Tensor, log: bool) -> torch.Tensor:
        value = (F.softmax(z, -1) * table).sum(-1)
        return -(value.log() if log else value).mean()

    for log in (False, True):
        grad = torch.autograd.grad(obj.expected_reward_loss(logits, table, log=log), logits)[0]
        numeric = torch.zeros_like(logits)
        eps = 1e-6
        for i in range(3):
            for j in range(6):
                bump = torch.zeros_like(logits)
                bump[i, j] = eps
                numeric[i, j] = (exact(logits + bump, log) - exact(logits - bump, log)) / (2 * eps)
        torch.testing.assert_close(grad, numeric, atol=1e-7, rtol=1e-5)
        torch.testing.assert_close(obj.expected_reward_loss(logits, table, log=log), exact(logits, log))


def test_log_expected_reward_with_01_table_is_cross_entropy() -> None:
    torch.manual_seed(2)
    logits = torch.randn(5, 9)
    targets = torch.tensor([0, 3, 8, 3, 1])
    table = F.one_hot(targets, 9).double()
    torch.testing.assert_close(obj.expected_reward_loss(logits, table, log=True), obj.cross_entropy_loss(logits, targets))


def test_log_expected_reward_over_shares_averages_to_the_whole_batch() -> None:
    """Two processes' losses, each divided by the mean count of contexts with a signal, have
    gradients whose average is the whole batch's, though the shares' counts differ."""
    torch.manual_seed(4)
    logits = torch.randn(6, 5, requires_grad=True)
    table = torch.rand(6, 5) * torch.tensor([1, 1, 1, 0, 0, 1.0])[:, None]  # 2 and 3 with a signal
    whole = torch.autograd.grad(obj.expected_reward_loss(logits, table, log=True), logits)[0]
    mean_count = torch.tensor(4 / 2)
    halves = [
        torch.autograd.grad(
            obj.expected_reward_loss(logits[rows], table[rows], log=True, signal_contexts=mean_count), logits
        )[0]
        for rows in (slice(0, 3), slice(3, 6))
    ]
    torch.testing.assert_close((halves[0] + halves[1]) / 2, whole)


def test_log_expected_reward_rejects_negative_rewards() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        obj.expected_reward_loss(torch.zeros(1, 3), torch.tensor([[1.0, -1.0, 0.0]]), log=True)


def test_rloo_average_converges_to_exact_gradient() -> None:
    torch.manual_seed(3)
    v, k, groups = 6, 4, 200_000
    logits = torch.randn(v)
    reward = torch.rand(v)
    probs = F.softmax(logits, -1)
    exact = probs * (reward - (probs * reward).sum())  # ∇_z Σ_a π(a) R(a)
    actions = torch.multinomial(probs.expand(groups, v), k, replacement=True)
    direction = policy_gradient_logits(probs.expand(groups, v), actions, obj.rloo_weights(reward[actions]))
    mean, sem = direction.mean(0), direction.std(0) / groups**0.5
    assert torch.all((mean - exact).abs() < 4 * sem + 1e-4), (mean, exact, sem)
    # The estimate is not trivially zero: it has the exact gradient's sign pattern.
    assert torch.equal(torch.sign(mean)[exact.abs() > 1e-2], torch.sign(exact)[exact.abs() > 1e-2])


@pytest.mark.parametrize("temperature", [0.5, 2.0])
@pytest.mark.parametrize("baseline", [0.0, 0.7])
def test_importance_ratios_keep_tempered_reinforce_unbiased(temperature: float, baseline: float) -> None:
    # Exact expectation over the action drawn from π_T: Σ_a π_T(a) ratio(a) (R(a) - b) ∇_z log π(a).
    logits = torch.tensor([[1.0, 0.2, -0.5, 0.3]], dtype=torch.float64, requires_grad=True)
    reward = torch.tensor([0.0, 1.0, 0.3, 0.0], dtype=torch.float64)
    probs = torch.softmax(logits, -1)
    (true,) = torch.autograd.grad((probs * reward).sum(), logits)
    tempered = torch.softmax(logits.detach() / temperature, -1)[0]
    actions = torch.arange(4)[None, :]
    ratios = obj.importance_ratios(logits.detach(), actions, temperature)[0].double()
    assert torch.allclose(ratios * tempered, probs.detach()[0])
    expected = sum(
        tempered[a] * ratios[a] * (reward[a] - baseline) * (torch.eye(4, dtype=torch.float64)[a] - probs.detach()[0])
        for a in range(4)
    )
    assert torch.allclose(expected, true[0])


def test_importance_ratios_count_tokens_a_float32_softmax_would_lose() -> None:
    # 9,999 tokens 200 nats below the first: each underflows float32, together they hold e^-20.8
    # of the mass at temperature 10.
    logits = torch.full((1, 10_000), -200.0)
    logits[0, 0] = 0.0
    exact = 1.0 + 9_999 * torch.exp(torch.tensor(-20.0, dtype=torch.float64))  # π(0) = 1, π_T(0) = 1 / that
    ratio = obj.importance_ratios(logits, torch.tensor([[0]]), 10.0)[0, 0].double()
    assert abs(ratio - exact) < 1e-6


def test_logexp_with_distinct_candidates_containing_target_is_supervised_gradient() -> None:
    torch.manual_seed(4)
    probs = F.softmax(torch.randn(2, 8), -1)
    actions = torch.tensor([[5, 2, 7], [1, 0, 4]])
    rewards = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    direction = policy_gradient_logits(probs, actions, obj.logexp_weights(rewards))
    torch.testing.assert_close(direction, F.one_hot(torch.tensor([2, 4]), 8).double() - probs)


def test_logexp_is_zero_when_every_reward_is_zero() -> None:
    weights = obj.logexp_weights(torch.zeros(3, 4))
    assert torch.equal(weights, torch.zeros(3, 4))


def test_grpo_normalises_and_ignores_uniform_groups() -> None:
    weights = obj.grpo_weights(torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
    torch.testing.assert_close(weights[0], torch.tensor([0.25, -0.25, -0.25, 0.25]), atol=1e-5, rtol=0)
    assert torch.equal(weights[1], torch.zeros(4))


def test_rloo_weights_are_the_leave_one_out_advantages_over_k() -> None:
    """Each weight is (R_k - mean of the K - 1 others) / K: the others' mean divides by K - 1, or
    the baseline is biased and the estimate no longer averages to ∇E[R]."""
    weights = obj.rloo_weights(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 2.0, 3.0]]))
    # Row 0: the hit's others average 0; each miss's others average 1/3, so (0 - 1/3) / 4.
    # Row 1: the others average (6 - R_k) / 3, e.g. (0 - 2) / 4 and (3 - 1) / 4.
    expected = torch.tensor([[1 / 4, -1 / 12, -1 / 12, -1 / 12], [-1 / 2, -1 / 6, 1 / 6, 1 / 2]])
    torch.testing.assert_close(weights, expected)


def test_rloo_needs_two_samples() -> None:
    with pytest.raises(ValueError, match="K >= 2"):
        obj.rloo_weights(torch.ones(2, 1))


def test_miss_terms_are_gradient_of_log_one_minus_mass() -> None:
    torch.manual_seed(5)
    logits = torch.randn(2, 7, requires_grad=True)
    actions = torch.tensor([[1, 4, 6], [0, 2, 3]])
    rewards = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # row 0 missed, row 1 hit
    probs = F.softmax(logits, -1)
    target = torch.autograd.grad((1 - probs[0].gather(0, actions[0]).sum()).log(), logits)[0]
    weights, coefficient = obj.miss_terms(probs.detach(), actions, rewards)
    direction = policy_gradient_logits(probs.detach(), actions, weights, coefficient)
    torch.testing.assert_close(direction, target)


def test_miss_terms_skip_a_set_that_covers_the_vocabulary() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    actions = torch.tensor([[0, 1, 2], [0, 1, 2]])
    queried = torch.tensor([[True, True, True], [True, True, False]])
    weights, coefficient = obj.miss_terms(probs, actions, torch.zeros(2, 3), queried)
    assert weights[0].tolist() == [0.0, 0.0, 0.0] and coefficient[0] == 0.0
    assert coefficient[1] == pytest.approx(-0.8 / 0.2)


def test_entropy_bonus_is_entropy_gradient() -> None:
    torch.manual_seed(6)
    logits = torch.randn(3, 5, requires_grad=True)
    probs = F.softmax(logits, -1)
    entropy = -(probs * probs.log()).sum()
    target = torch.autograd.grad(entropy, logits)[0]
    direction = policy_gradient_logits(
        probs.detach(), torch.zeros(3, 1, dtype=torch.long), torch.zeros(3, 1), entropy_coef=1.0
    )
    torch.testing.assert_close(direction, target)


def test_entropy_bonus_is_finite_where_a_probability_is_exactly_zero() -> None:
    """A token whose probability underflowed to 0 contributes 0·log 0 = 0 to the entropy; its log
    must not turn the row's entropy, and so the whole row's direction, into NaN."""
    actions, weights = torch.tensor([[0]]), torch.tensor([[1.0]])
    direction = policy_gradient_logits(torch.tensor([[0.7, 0.3, 0.0]]), actions, weights, entropy_coef=0.1)
    assert torch.isfinite(direction).all()
    assert direction[0, 2] == 0.0
    # The zero-probability token changes nothing for the others.
    without = policy_gradient_logits(torch.tensor([[0.7, 0.3]]), actions, weights, entropy_coef=0.1)
    torch.testing.assert_close(direction[:, :2], without)


def test_group_loss_weighs_each_candidate_by_its_importance_ratio() -> None:
    """Candidates proposed at a temperature other than 1 carry π(a)/π_T(a): group_loss's gradient
    must be that of Σ_k r_k w_k log π(a_k), the ratio applied to both the scattered weights and
    the π coefficient, or the tempered rloo/grpo estimate is biased."""
    model = _model(tie=False)
    generator = torch.Generator().manual_seed(7)
    tokens = torch.tensor([[1, 4, 2], [3, 3, 5]])
    actions = torch.randint(0, 7, (2, 3, 4), generator=generator)
    rewards = torch.rand(2, 3, 4, generator=generator)
    ratios = 0.2 + 2 * torch.rand(2, 3, 4, generator=generator)
    contexts = tokens.numel()

    features, _ = model.features(tokens)
    log_probs = F.log_softmax(model.head(features), -1).reshape(contexts, 7)
    weights = obj.rloo_weights(rewards.reshape(contexts, 4)) * ratios.reshape(contexts, 4)
    objective = (weights * log_probs.gather(1, actions.reshape(contexts, 4))).sum() / contexts
    expected = torch.autograd.grad(objective, list(model.parameters()))

    with torch.no_grad():
        probs = F.softmax(model(tokens)[0], -1)
    segment = Segment(
        tokens=tokens, targets=torch.zeros_like(tokens), starts=torch.zeros_like(tokens, dtype=torch.bool),
        hidden=model.initial_hidden(2), actions=actions, rewards=rewards, probs=probs,
    )
    args = group_module.Args(k=4, estimator="rloo", replacement=True, temperature=0.5)
    features, _ = model.features(tokens)
    loss, queries = group_module.group_loss(
        args, model, segment, features, None, Workspace(7, torch.device("cpu")),
        Share.single(2, torch.device("cpu")), ratios=ratios,
    )
    assert queries == contexts * 4
    got = torch.autograd.grad(-loss, list(model.parameters()), allow_unused=True)
    for g, e in zip(got, expected):
        torch.testing.assert_close(torch.zeros_like(e) if g is None else g, e)


def test_unknown_estimator_names_the_choices() -> None:
    with pytest.raises(ValueError, match="rloo, grpo, logexp"):
        obj.group_weights("ppo", torch.zeros(1, 2))


def test_policy_gradient_logits_scale_and_out_buffer_change_nothing_else() -> None:
    """The in-place, pre-scaled form the agents use equals the plain formula times the scale."""
    probs = F.softmax(torch.randn(4, 9), -1)
    actions = torch.randint(0, 9, (4, 2))
    weights = torch.randn(4, 2)
    for beta in (0.0, 0.3):
        expected = policy_gradient_logits(probs, actions, weights, entropy_coef=beta) / 4
        got = policy_gradient_logits(probs, actions, weights, entropy_coef=beta, scale=0.25, out=torch.empty(4, 9))
        torch.testing.assert_close(got, expected)
    inplace = probs.clone()
    assert policy_gradient_logits(inplace, actions, weights, out=inplace) is inplace
    torch.testing.assert_close(inplace, policy_gradient_logits(probs, actions, weights))
    with pytest.raises(ValueError, match="probs intact"):
        policy_gradient_logits(inplace, actions, weights, entropy_coef=0.1, out=inplace)


def test_workspace_reuses_one_buffer_and_grows_only_when_asked_for_more() -> None:
    workspace = Workspace(9, torch.device("cpu"))
    first = workspace.rows(4)
    assert first.shape == (4, 9)
    assert workspace.rows(3).data_ptr() == first.data_ptr()  # reused: no fresh page faults
    grown = workspace.rows(6)
    assert grown.shape == (6, 9)
    assert workspace.rows(4).data_ptr() == grown.data_ptr()
