"""Native agents: the rollout's bookkeeping, the schedules, the command line, and that every
agent really learns.

Learning tests train a tiny GRU on the ``grammar`` corpus, whose best achievable next-token
accuracy is known exactly, and require at least 80% of it on validation. Each takes seconds.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from irlm_agents import group as group_module
from irlm_agents import mixer, supervised
from irlm_agents.group import known_rewards
from irlm_agents.lm.sampling import sample_candidates
from irlm_agents.native.estimators import cross_entropy_loss
from irlm_agents.native.rollout import Rollout, Segment
from irlm_agents.native.training import NativeArgs, Progress, build
from irlm_env.errors import IrlmError

NATIVE_AGENTS = ("supervised", "reinforce", "group", "expected", "mixer")

GRAMMAR = {"corpus": "grammar", "corpus_options": {"n_sentences": 3000}}
TINY = {
    **GRAMMAR,
    "hidden_size": 64,
    "embedding_dim": 32,
    "episode_length": 140,
    "eval_every": 10**9,
    "eval_tokens": 3000,
    "progress": False,
    "device": "cpu",
    "learning_rate": 1e-2,
}


def _train(agent: str, tmp_path: Path, **options: Any) -> dict[str, float]:
    module = importlib.import_module(f"irlm_agents.{agent}")
    args = module.Args(**{**TINY, "run_dir": str(tmp_path / agent), **options})
    result = module.train(args)
    assert (tmp_path / agent / "final.irlm").exists()
    return result.metrics


def _distinct_pairs(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    return sample_candidates(logits, 2, replacement=False, temperature=1.0)


def test_rollout_probabilities_match_fused_recomputation_across_episode_starts() -> None:
    """The update's fused pass (with mid-segment resets) reproduces the rollout's π exactly,
    which is what lets the update reuse the rollout's probabilities."""
    torch.manual_seed(0)
    args = NativeArgs(**{**TINY, "episode_length": 7, "n_envs": 3, "rollout_steps": 10})
    setup = build(args)
    for _ in range(3):
        segment = setup.rollout.collect(args.rollout_steps, _distinct_pairs, score=True)
        assert segment.starts[:, 0].all() or segment.starts[:, 1:].any()
        with torch.no_grad():
            probs = F.softmax(setup.model.head(setup.rollout.features(segment)), -1)
        torch.testing.assert_close(probs, segment.probs, atol=1e-5, rtol=1e-4)
        # Candidates are distinct, scored at the right state: candidate == target gets reward 1.
        assert (segment.actions[..., 0] != segment.actions[..., 1]).all()
        assert torch.equal(segment.rewards > 0, segment.actions == segment.targets[..., None])
    # Observations follow the true text: each step's target is the next step's token in-episode.
    same_episode = ~segment.starts[:, 1:]
    assert torch.equal(segment.targets[:, :-1][same_episode], segment.tokens[:, 1:][same_episode])


def _second_segment(ask_for_features: bool) -> Segment:
    torch.manual_seed(0)
    args = NativeArgs(**{**TINY, "episode_length": 50, "n_envs": 3, "rollout_steps": 10})
    rollout = build(args).rollout
    first = rollout.collect(args.rollout_steps, _distinct_pairs, score=True)
    if ask_for_features:
        rollout.features(first)
    return rollout.collect(args.rollout_steps, _distinct_pairs, score=True)


def test_the_rollout_carries_its_hidden_state_from_segment_to_segment() -> None:
    """The state after one segment starts the next, whether or not the update asked for the
    features (the rollout then re-runs the segment itself); no agent hands it back."""
    second = _second_segment(ask_for_features=True)
    assert not second.starts[:, 0].any() and second.hidden.abs().sum() > 0  # carried, not zeroed
    lazy = _second_segment(ask_for_features=False)
    torch.testing.assert_close(lazy.hidden, second.hidden)
    torch.testing.assert_close(lazy.probs, second.probs)


def test_a_segment_that_opens_with_an_episode_start_is_recomputed_from_a_zeroed_state() -> None:
    """With episodes as long as segments every segment after the first begins a new episode,
    while the state carried in is the last episode's: the fused pass must zero it at step 0 as
    the rollout did, or the update's features are not the ones the segment was played with."""
    torch.manual_seed(0)
    args = NativeArgs(**{**TINY, "episode_length": 5, "n_envs": 3, "rollout_steps": 5})
    rollout = build(args).rollout
    for index in range(3):
        segment = rollout.collect(args.rollout_steps, _distinct_pairs, score=True)
        assert segment.starts[:, 0].all() and not segment.starts[:, 1:].any()
        assert index == 0 or segment.hidden.abs().sum() > 0  # a live state comes in, to be zeroed
        with torch.no_grad():
            probs = F.softmax(rollout.model.head(rollout.features(segment)), -1)
        torch.testing.assert_close(probs, segment.probs, atol=1e-5, rtol=1e-4)


def test_features_take_the_last_segment_once() -> None:
    args = NativeArgs(**{**TINY, "n_envs": 2, "rollout_steps": 4})
    rollout = build(args).rollout
    old = rollout.collect(args.rollout_steps)
    new = rollout.collect(args.rollout_steps)
    with pytest.raises(ValueError, match="last collect"):
        rollout.features(old)
    rollout.features(new)
    with pytest.raises(ValueError, match="once"):
        rollout.features(new)


@pytest.mark.parametrize(
    ("agent", "options"),
    [
        ("reinforce", {"entropy_coef": 0.0}),
        ("reinforce", {"entropy_coef": 0.05}),
        ("group", {"k": 4, "replacement": True}),  # logexp: contexts that missed are left out
        ("group", {"k": 4, "miss_weight": 1.0}),  # misses weigh too: every context is kept
        ("group", {"k": 4, "estimator": "rloo", "replacement": True, "entropy_coef": 0.05}),
        ("expected", {}),
        ("mixer", {"xe_tokens": 0, "anneal_tokens": 300, "entropy_coef": 0.05}),
    ],
    ids=str,
)
def test_updates_leave_the_rollouts_probabilities_as_they_were(
    agent: str, options: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update keeps its scratch in its own workspace; the segment's π is read, never written."""
    collected: list[tuple[Segment, torch.Tensor]] = []
    real = Rollout.collect

    def keep_a_copy(self: Rollout, *args: Any, **kwargs: Any) -> Segment:
        if collected:
            segment, before = collected[-1]
            assert torch.equal(segment.probs, before), "the update wrote into Segment.probs"
        segment = real(self, *args, **kwargs)
        collected.append((segment, segment.probs.clone()))
        return segment

    monkeypatch.setattr(Rollout, "collect", keep_a_copy)
    _train(agent, tmp_path, total_tokens=2000, n_envs=8, rollout_steps=10, **options)
    segment, before = collected[-1]
    assert len(collected) > 2 and torch.equal(segment.probs, before)


def test_known_rewards_stop_at_first_hit() -> None:
    rewards, queried = known_rewards(torch.tensor([[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]))
    assert torch.equal(rewards, torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0] * 4, [1.0, 0.0, 0.0, 0.0]]))
    assert queried.sum(-1).tolist() == [2, 4, 1]


def test_budget_mask_asks_while_the_conditional_chance_stays_above_the_threshold() -> None:
    # Row 0: 0.5, then 0.3 / (1 - 0.5) = 0.6, then 0.1 / 0.2 = 0.5, then 0.05 / 0.1 = 0.5: all asked.
    # Row 1: 0.02 < 0.25 but the first is always asked; the rest stop with it.
    # Row 2: 0.4, then 0.1 / 0.6 = 0.17 < 0.25: stops, even though 0.3 / 0.5 would pass.
    probs = torch.tensor([[0.5, 0.3, 0.1, 0.05], [0.02, 0.02, 0.02, 0.02], [0.4, 0.1, 0.3, 0.01]])
    allowed = group_module.budget_mask(probs, 0.25)
    assert allowed.tolist() == [[True] * 4, [True, False, False, False], [True, False, False, False]]
    rewards, queried = known_rewards(torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0] * 4]), allowed)
    assert queried.sum(-1).tolist() == [3, 1, 1]
    assert rewards.tolist() == [[0.0, 0.0, 1.0, 0.0], [0.0] * 4, [0.0] * 4]  # row 1's hit was never asked


def test_budget_mask_conditions_on_the_earlier_candidates_only() -> None:
    """The chance that a candidate is right given that the earlier ones were wrong divides by
    the mass the earlier ones left, not counting the candidate's own: 0.2 / (1 - 0.5) = 0.4 is
    below 0.5, so only the played candidate is asked; 0.3 / 0.5 = 0.6 is not, and 0.05 / 0.2 = 0.25 is again."""
    probs = torch.tensor([[0.5, 0.2, 0.2, 0.1], [0.5, 0.3, 0.05, 0.15]])
    allowed = group_module.budget_mask(probs, 0.5)
    assert allowed.tolist() == [[True, False, False, False], [True, True, False, False]]


def test_query_budget_moves_the_threshold_by_the_relative_error_against_what_was_affordable() -> None:
    """One step of the steering, by hand: the threshold's logarithm moves by ``gain`` times the
    segment's spend relative to the spend affordable before it. This is what the run's queries
    per token, a reported figure, are steered by."""
    budget = group_module.QueryBudget(per_token=2.0, total_tokens=100, threshold=0.1, gain=0.5)
    budget.update(50, 150)  # 3 a token where 2 were affordable: 50% over
    assert budget.threshold == pytest.approx(0.1 * np.exp(0.5 * 0.5))
    assert budget.affordable() == pytest.approx(1.0)  # the rest of the run pays for it
    budget.update(25, 25)  # exactly what is now affordable: the threshold stays
    assert budget.threshold == pytest.approx(0.1 * np.exp(0.5 * 0.5))


def test_query_budget_spends_its_budget_over_the_run() -> None:
    budget = group_module.QueryBudget(per_token=4.0, total_tokens=200 * 4000)
    generator = torch.Generator().manual_seed(0)
    # Candidates in roughly falling probability, as a sampler proposes them; their mass is part
    # of the vocabulary's.
    probs = (torch.randn(4000, 32, generator=generator) * 2).softmax(-1).sort(-1, descending=True).values * 0.7
    spends = []
    for _ in range(200):
        queries = int(group_module.budget_mask(probs, budget.threshold).sum())
        budget.update(4000, queries)
        spends.append(queries / 4000)
    assert 3.9 <= budget.queries / budget.tokens <= 4.02  # what was saved early is spent
    assert abs(sum(spends[-50:]) / 50 - 4.0) < 0.4


def test_mixer_schedule_moves_from_cross_entropy_to_reinforce() -> None:
    args = mixer.Args(xe_tokens=100, anneal_tokens=1000, rollout_steps=10)
    assert [mixer.reinforce_steps(t, args) for t in (0, 99, 100, 101, 600, 1100, 5000)] == [0, 0, 0, 1, 5, 10, 10]


def test_group_rejects_inconsistent_options() -> None:
    group = importlib.import_module("irlm_agents.group")
    with pytest.raises(IrlmError, match="needs k >= 2"):
        group.Args(estimator="rloo", k=1)
    with pytest.raises(IrlmError, match="did you mean"):
        group.Args(estimator="logexpp")
    with pytest.raises(IrlmError, match="distinct candidates"):
        group.Args(miss_weight=1.0, replacement=True)
    with pytest.raises(IrlmError, match="between 1 and k=8"):
        group.Args(k=8, query_budget=12)
    with pytest.raises(IrlmError, match="distinct candidates"):
        group.Args(k=8, query_budget=4, replacement=True)
    assert group.Args(k=16, query_budget=4).stop_at_hit  # adaptive K queries in order
    with pytest.raises(IrlmError, match="set both, or neither"):
        group.Args(k=8, stop_at_hit=True, k_early=32)
    with pytest.raises(IrlmError, match="add --stop-at-hit"):
        group.Args(k=8, k_early=32, early_tokens=1000)
    with pytest.raises(IrlmError, match="drop --query-budget"):
        group.Args(k=8, query_budget=4, k_early=32, early_tokens=1000)
    with pytest.raises(IrlmError, match="truncate must be >= k_early"):
        group.Args(k=8, stop_at_hit=True, truncate=16, k_early=32, early_tokens=1000)


def test_curriculum_on_k_proposes_k_early_candidates_for_the_first_early_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    widths: list[int] = []
    real = group_module.group_loss

    def spy(args: Any, model: Any, segment: Segment, *rest: Any) -> Any:
        widths.append(segment.actions.shape[-1])
        return real(args, model, segment, *rest)

    monkeypatch.setattr(group_module, "group_loss", spy)
    # 8 streams x 10 steps = 80 tokens a segment: 200 early tokens are the first 3 segments.
    metrics = _train("group", tmp_path, k=1, k_early=4, early_tokens=200, stop_at_hit=True, miss_weight=1.0,
                     n_envs=8, rollout_steps=10, total_tokens=800)
    assert widths == [4, 4, 4] + [1] * 7
    # Early contexts asked up to 4 tokens each, the later ones exactly one; and the 64 queries of
    # the check that the reward is a yes or no, before the run.
    assert 1 < metrics["queries_per_token"] - 64 / 800 <= (3 * 4 + 7) / 10


def test_expected_needs_a_reward_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = importlib.import_module("irlm_agents.expected")
    real = expected.build

    def without_table(args: Any) -> Any:
        setup = real(args)
        monkeypatch.setattr(type(setup.reward), "has_table", property(lambda self: False))
        return setup

    monkeypatch.setattr(expected, "build", without_table)
    with pytest.raises(IrlmError, match="no reward table"):
        _train("expected", tmp_path, total_tokens=1000)


LEARNERS = [
    ("supervised", {"total_tokens": 30_000}),
    ("reinforce", {"total_tokens": 60_000, "baseline": "critic", "entropy_coef": 0.05}),
    ("reinforce", {"total_tokens": 60_000, "baseline": "mean", "entropy_coef": 0.05}),
    ("reinforce", {"total_tokens": 60_000, "baseline": "none", "entropy_coef": 0.05}),
    ("group", {"total_tokens": 30_000, "estimator": "logexp", "k": 8}),
    ("group", {"total_tokens": 40_000, "estimator": "rloo", "k": 8, "entropy_coef": 0.05}),
    ("group", {"total_tokens": 40_000, "estimator": "grpo", "k": 8, "entropy_coef": 0.05}),
    ("group", {"total_tokens": 40_000, "k": 4, "stop_at_hit": True, "miss_weight": 1.0, "temperature": 0.0}),
    ("group", {"total_tokens": 40_000, "k": 16, "query_budget": 3, "miss_weight": 1.0, "temperature": 0.7}),
    ("expected", {"total_tokens": 30_000, "objective": "log_er"}),
    ("mixer", {"total_tokens": 60_000, "xe_tokens": 10_000, "anneal_tokens": 20_000}),
]


@pytest.mark.parametrize(("agent", "options"), LEARNERS, ids=lambda x: x if isinstance(x, str) else "-".join(map(str, x.values())))
def test_agent_reaches_80_percent_of_best_accuracy_on_grammar(agent: str, options: dict[str, Any], tmp_path: Path) -> None:
    from irlm_env.corpus import load_corpus

    best = load_corpus("grammar", **GRAMMAR["corpus_options"]).best_accuracy
    assert best is not None
    metrics = _train(agent, tmp_path, **options)
    assert metrics["top1"] >= 0.8 * best, (metrics["top1"], best)
    assert metrics["top1"] > metrics["bigram_top1"] * 0.8 > metrics["majority_top1"]
    if "query_budget" in options:
        assert 1 < metrics["queries_per_token"] <= options["query_budget"]


def test_expected_reward_objective_learns_beyond_the_majority_token(tmp_path: Path) -> None:
    """E[R] (not log) has a vanishing gradient on tokens the model already rules out, so it
    plateaus; it must still learn well past the majority token."""
    from irlm_env.corpus import load_corpus

    metrics = _train("expected", tmp_path, total_tokens=30_000, objective="er")
    assert metrics["top1"] > 1.5 * metrics["majority_top1"]
    # The table is a reward for every vocabulary token: V queries per token.
    vocab = len(load_corpus("grammar", **GRAMMAR["corpus_options"]).vocab)
    assert metrics["queries_per_token"] == pytest.approx(vocab)


def test_validation_comes_at_every_multiple_of_eval_every_and_not_at_the_end() -> None:
    """The learning curve's points and the best checkpoints are taken at the first update that
    reaches each multiple of ``eval_every`` (late updates do not push the schedule back), and
    never at the budget's end, where the final validation comes anyway."""
    from irlm_agents.native.distributed import Share

    progress = Progress(total_tokens=1200, eval_every=300, share=Share.single(4, torch.device("cpu")))
    due = []
    while progress.tokens < progress.total_tokens:
        progress.add(120, 0, reward=0.0, accuracy=0.0)
        if progress.validation_due():
            due.append(progress.tokens)
    assert due == [360, 600, 960]


def test_queries_per_token_are_counted(tmp_path: Path) -> None:
    metrics = _train("group", tmp_path, total_tokens=4_000, k=6)
    assert metrics["queries_per_token"] == pytest.approx(6.0)
    assert np.isfinite(metrics["tokens_per_second"]) and metrics["tokens_per_second"] > 0


@pytest.mark.parametrize("agent", NATIVE_AGENTS)
def test_python_dash_m_reports_a_user_error_in_one_line(agent: str) -> None:
    """``python -m irlm_agents.AGENT`` goes through the command line's error handling, like
    ``irlm train AGENT``: one ``Error:`` line and exit status 1, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", f"irlm_agents.{agent}", "--rollout-steps", "0"],
        capture_output=True, text=True, timeout=120,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: --rollout-steps must be a positive integer"), result.stderr


def test_python_dash_m_reports_an_unknown_option_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "irlm_agents.group", "--bad-option"], capture_output=True, text=True, timeout=120
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: No such option") and "--bad-option" in lines[0], result.stderr


# The supervised control that learns from a random fraction of the tokens (``label_fraction``).


def test_kept_tokens_alone_make_the_loss_over_all_tokens() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 7)
    targets = torch.randint(0, 7, (3, 4))
    keep = torch.rand(3, 4) < 0.5
    nll = F.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1), reduction="none")
    torch.testing.assert_close(cross_entropy_loss(logits, targets, keep), nll[keep.reshape(-1)].sum() / 12)
    torch.testing.assert_close(cross_entropy_loss(logits, targets, torch.ones(3, 4, dtype=torch.bool)),
                               cross_entropy_loss(logits, targets))


@pytest.mark.parametrize("fraction", [0, 1.5, -0.1, float("nan"), True])
def test_a_label_fraction_outside_zero_to_one_is_refused(fraction: Any) -> None:
    with pytest.raises(IrlmError, match=r"label_fraction must be (in \(0, 1\]|a finite number)"):
        supervised.Args(**TINY, label_fraction=fraction)


def test_training_labels_about_the_asked_fraction_of_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept: list[float] = []

    def watch(logits: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        assert keep is not None and keep.shape == targets.shape
        kept.append(float(keep.float().mean()))
        return cross_entropy_loss(logits, targets, keep)

    monkeypatch.setattr(supervised, "cross_entropy_loss", watch)
    supervised.train(supervised.Args(**{**TINY, "n_envs": 8, "rollout_steps": 10, "total_tokens": 2000},
                                     label_fraction=0.3, run_dir=str(tmp_path / "run")))
    assert len(kept) >= 20
    assert abs(sum(kept) / len(kept) - 0.3) < 0.03


def test_a_max_grad_norm_of_zero_turns_clipping_off() -> None:
    """``--max-grad-norm 0`` means no clipping, as its help says; clipping to norm 0 instead would
    zero every gradient and the run would never learn."""
    from types import SimpleNamespace

    from irlm_agents.native.distributed import Share
    from irlm_agents.native.training import optimise

    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    setup = SimpleNamespace(share=Share.single(1, torch.device("cpu")), average=None)
    direction = torch.tensor([30.0, 40.0, 0.0])  # a gradient of norm 50
    optimise(optimizer, (weight * direction).sum(), 0.0, setup)  # type: ignore[arg-type]
    assert weight.tolist() == [-30.0, -40.0, 0.0]
    optimise(optimizer, (weight * direction).sum(), 1.0, setup)  # type: ignore[arg-type]
    torch.testing.assert_close(weight.detach(), torch.tensor([-30.6, -40.8, 0.0]))


def test_weight_decay_is_decoupled_and_zero_is_adam() -> None:
    """With no gradient AdamW only shrinks each parameter by lr·wd; at wd=0 its step is Adam's."""
    from irlm_agents.native.training import NativeArgs, make_optimizer

    torch.manual_seed(0)
    start = torch.randn(5)
    args = NativeArgs(corpus="grammar", learning_rate=0.1, weight_decay=0.5)
    shrunk = torch.nn.Parameter(start.clone())
    shrunk.grad = torch.zeros(5)
    make_optimizer([shrunk], args).step()
    assert torch.allclose(shrunk.detach(), start * (1 - 0.1 * 0.5))

    plain, adam = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    plain.grad = adam.grad = torch.randn(5)
    make_optimizer([plain], NativeArgs(corpus="grammar", learning_rate=0.1)).step()
    torch.optim.Adam([adam], lr=0.1).step()
    assert torch.equal(plain.detach(), adam.detach())
    with pytest.raises(IrlmError, match="weight_decay must be >= 0"):
        NativeArgs(corpus="grammar", weight_decay=-0.1)


def test_ema_decay_scores_and_saves_the_weights_average_without_changing_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's validation, checkpoints and returned model are the moving average of the weights
    after each update; the weights trained are the same as without it."""
    from irlm_agents.lm.checkpoints import load_model
    from irlm_agents.native import training

    def trained_weights(ema_decay: float, name: str) -> tuple[list[list[torch.Tensor]], Any]:
        after_each: list[list[torch.Tensor]] = []

        def watch(optimizer: torch.optim.Optimizer, *rest: Any) -> None:
            training.optimise(optimizer, *rest)
            after_each.append([p.detach().clone() for group in optimizer.param_groups for p in group["params"]])

        monkeypatch.setattr(supervised, "optimise", watch)
        result = supervised.train(supervised.Args(**{**TINY, "n_envs": 8, "rollout_steps": 10, "total_tokens": 800, "eval_every": 400},
                                                  ema_decay=ema_decay, run_dir=str(tmp_path / name)))
        return after_each, result

    plain, _ = trained_weights(0.0, "plain")
    steps, result = trained_weights(0.8, "averaged")
    assert len(steps) == 10
    assert all(torch.equal(a, b) for a, b in zip(plain[-1], steps[-1]))
    expected = steps[0]
    for weights in steps[1:]:
        expected = [0.8 * e + 0.2 * w for e, w in zip(expected, weights)]
    returned = list(result.model.parameters())
    assert all(torch.allclose(r, e, atol=1e-6) for r, e in zip(returned, expected))
    assert not all(torch.allclose(r, w, atol=1e-4) for r, w in zip(returned, steps[-1]))
    saved = load_model(tmp_path / "averaged" / "final.irlm").model
    assert all(torch.equal(s, r.detach()) for s, r in zip(saved.parameters(), returned))


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_an_ema_decay_outside_zero_to_one_is_refused(decay: float) -> None:
    with pytest.raises(IrlmError, match=r"ema_decay must be in \[0, 1\)"):
        NativeArgs(corpus="grammar", ema_decay=decay)


@pytest.mark.parametrize(("agent", "name"), [("reinforce", "critic_coef"), ("mixer", "critic_coef"),
                                              ("reinforce", "entropy_coef"), ("group", "entropy_coef"),
                                              ("mixer", "entropy_coef")])
def test_a_negative_loss_weight_is_refused(agent: str, name: str) -> None:
    module = importlib.import_module(f"irlm_agents.{agent}")
    with pytest.raises(IrlmError, match=rf"{name} must be >= 0 \(0 turns it off\), got -1.0"):
        module.Args(corpus="grammar", **{name: -1.0})


class _Graded:
    """A reward that pays 0.5 for a near miss (the target's neighbour id), several 1s (any id <= the
    target), or -1 for a miss."""

    def __init__(self, corpus: object, several: bool = False, signed: bool = False) -> None:
        self.several, self.signed = several, signed

    def __call__(self, action: int, target: int, context: np.ndarray) -> float:
        if self.signed:
            return 1.0 if action == target else -1.0
        if self.several:
            return float(action <= target)
        return 1.0 if action == target else 0.5 if abs(action - target) == 1 else 0.0


def _registered(name: str, reward: type) -> Iterator[None]:
    """``reward`` registered as ``name`` by a run-time plugin for one test, then forgotten."""
    from irlm_env import hookimpl, plugins

    class Plugin:
        @hookimpl
        def irlm_register_rewards(self, register: Any) -> None:
            register(name, reward)

    plugins.register_plugin(Plugin(), f"{name}-test")
    yield
    plugins.reset_plugins()


@pytest.fixture
def graded_reward() -> Iterator[None]:
    yield from _registered("graded", _Graded)


@pytest.mark.parametrize(("options", "problem"), [
    ({"stop_at_hit": True}, r"--stop-at-hit \(or --query-budget\) read the reward as a yes or no.*gave a reward of 0.5"),
    ({"miss_weight": 1.0}, r"--miss-weight read the reward as a yes or no.*gave a reward of 0.5"),
    ({"stop_at_hit": True, "reward_options": {"several": True}}, "gave 1 to several candidates in"),
])
def test_group_refuses_yes_no_options_with_a_graded_reward_before_the_run(
    graded_reward: None, tmp_path: Path, options: dict[str, Any], problem: str
) -> None:
    args = group_module.Args(**{**TINY, "run_dir": str(tmp_path / "run"), "k": 4, "reward": "graded", **options})
    with pytest.raises(IrlmError, match=problem):
        group_module.train(args)
    assert not (tmp_path / "run").exists()
    # the estimator alone weighs graded rewards, and runs
    group_module.train(group_module.Args(**{**TINY, "run_dir": str(tmp_path / "ok"), "k": 4, "reward": "graded"}))


def _count_group_loss_queries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A one-item list that sums the queries ``group_loss`` reports, as training calls it."""
    counted, loss = [0], group_module.group_loss

    def loss_spy(*args: Any, **kwargs: Any) -> Any:
        value, queries = loss(*args, **kwargs)
        counted[0] += queries
        return value, queries

    monkeypatch.setattr(group_module, "group_loss", loss_spy)
    return counted


class _LateGraded(_Graded):
    """0 or 1 on its first call (the check before the run), graded from then on."""

    calls = 0

    def batch(self, actions: np.ndarray, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        _LateGraded.calls += 1
        exact = (actions == targets[:, None]).astype(np.float64)
        return exact if _LateGraded.calls == 1 else exact + 0.5 * (np.abs(actions - targets[:, None]) == 1)


def test_group_checks_every_segments_answers_and_counts_the_first_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check before the run asks one context about the most frequent words and counts those
    queries; a reward that turns graded later is caught on the segment that shows it."""
    _LateGraded.calls = 0
    with contextlib.contextmanager(_registered)("late", _LateGraded):
        with pytest.raises(IrlmError, match=r"--stop-at-hit \(or --query-budget\) .* gave a reward of 0.5;"):
            group_module.train(group_module.Args(**{**TINY, "run_dir": str(tmp_path / "late"), "k": 4,
                                                    "reward": "late", "stop_at_hit": True}))
    assert _LateGraded.calls > 1 and not (tmp_path / "late").exists()
    added = [0]
    add = Progress.add

    def add_spy(self: Progress, tokens: int, queries: int, **kwargs: Any) -> None:
        added[0] += queries
        add(self, tokens, queries, **kwargs)

    monkeypatch.setattr(Progress, "add", add_spy)
    counted = _count_group_loss_queries(monkeypatch)
    result = group_module.train(group_module.Args(**{**TINY, "run_dir": str(tmp_path / "ok"), "k": 4,
                                                     "stop_at_hit": True}))
    vocab = len(result.corpus.vocab)
    assert added[0] == counted[0] + min(64, vocab) and counted[0] > 0


def test_logexp_refuses_a_negative_reward_and_rloo_takes_it(graded_reward: None, tmp_path: Path) -> None:
    signed = {**TINY, "k": 4, "reward": "graded", "reward_options": {"signed": True}}
    with pytest.raises(IrlmError, match=r"logexp estimator .* needs rewards >= 0, but reward 'graded' paid -1; "
                                        "use --estimator rloo or grpo"):
        group_module.train(group_module.Args(**{**signed, "run_dir": str(tmp_path / "run")}))
    assert not (tmp_path / "run").exists()  # refused at the first update: the folder is free again
    group_module.train(group_module.Args(**{**signed, "estimator": "rloo", "run_dir": str(tmp_path / "ok")}))


@pytest.mark.parametrize(("agent", "options"), [
    ("reinforce", {}), ("group", {"estimator": "rloo", "k": 2, "replacement": True}),
])
def test_tempered_proposals_are_importance_weighted(
    agent: str, options: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = importlib.import_module(f"irlm_agents.{agent}")
    temperatures: list[float] = []
    real = module.importance_ratios

    def spy(probs: torch.Tensor, actions: torch.Tensor, temperature: float) -> torch.Tensor:
        temperatures.append(temperature)
        return real(probs, actions, temperature)

    monkeypatch.setattr(module, "importance_ratios", spy)
    module.train(module.Args(**{**TINY, **options, "run_dir": str(tmp_path / "one")}))
    assert temperatures == []  # at temperature 1 the draws are the policy's own
    module.train(module.Args(**{**TINY, **options, "temperature": 0.5, "run_dir": str(tmp_path / "half")}))
    assert temperatures and set(temperatures) == {0.5}


def test_group_refuses_more_distinct_candidates_than_the_vocabulary(tmp_path: Path) -> None:
    args = group_module.Args(**{**TINY, "run_dir": str(tmp_path / "run"), "k": 10_000})
    with pytest.raises(IrlmError, match=r"k=10000 distinct candidates cannot be drawn from a vocabulary of \d+ tokens; "
                                        r"lower --k to at most"):
        group_module.train(args)
    assert not (tmp_path / "run").exists()


def test_grpo_and_mixer_settings_that_would_learn_nothing_are_refused() -> None:
    with pytest.raises(IrlmError, match="the grpo estimator needs k >= 2"):
        group_module.Args(estimator="grpo", k=1)
    with pytest.raises(IrlmError, match="with xe_tokens=50000 and anneal_tokens=100000, REINFORCE would never start"):
        mixer.Args(total_tokens=2000)
    # Below the budget is not enough: the last segment (8 x 35 = 280 tokens) of 1000 starts at 840.
    with pytest.raises(IrlmError, match="segments of n_envs x rollout_steps = 280 tokens, and the last of "
                                        "total_tokens=1000 starts at 840"):
        mixer.Args(total_tokens=1000, n_envs=8, xe_tokens=999, anneal_tokens=0)
    mixer.Args(total_tokens=1000, n_envs=8, xe_tokens=840, anneal_tokens=0)  # its last segment is all REINFORCE


def test_a_warm_start_refuses_model_options_the_checkpoint_overrides(tmp_path: Path) -> None:
    first = supervised.train(supervised.Args(**{**TINY, "run_dir": str(tmp_path / "first")}))
    final = str(first.run_dir / "final.irlm")
    hidden = first.model.config.hidden_size
    with pytest.raises(IrlmError, match=rf"--hidden-size {hidden * 2} \(the checkpoint has {hidden}\).*--dropout 0.3"):
        supervised.train(supervised.Args(**{**TINY, "hidden_size": hidden * 2, "dropout": 0.3, "init_from": final,
                                            "run_dir": str(tmp_path / "second")}))
    assert not (tmp_path / "second").exists()
    # the checkpoint's own values, or the defaults, are fine, and the run records the model it trained
    sizes_left_out = {key: value for key, value in TINY.items() if key not in ("hidden_size", "embedding_dim")}
    args = supervised.Args(**{**sizes_left_out, "init_from": final, "run_dir": str(tmp_path / "third")})
    supervised.train(args)
    assert args.hidden_size == 256  # the caller's Args stay as given (a default here)
    recorded = json.loads((tmp_path / "third" / "config.json").read_text())["args"]
    assert (recorded["hidden_size"], recorded["embedding_dim"]) == (hidden, first.model.config.embedding_dim)


class _Scaled:
    """Pays ``hit`` for the true token and ``miss`` otherwise, with a table."""

    def __init__(self, corpus: object, hit: float = 1.0, miss: float = 0.0) -> None:
        self.hit, self.miss = hit, miss

    def __call__(self, action: int, target: int, context: np.ndarray) -> float:
        return self.hit if action == target else self.miss

    def table(self, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        table = np.full((len(targets), 65), self.miss)
        table[np.arange(len(targets)), targets] = self.hit
        return table


@pytest.fixture
def scaled_reward() -> Iterator[None]:
    yield from _registered("scaled", _Scaled)


def test_expected_log_er_refuses_a_signed_reward_before_the_run(scaled_reward: None, tmp_path: Path) -> None:
    expected = importlib.import_module("irlm_agents.expected")
    signed = {**TINY, "reward": "scaled", "reward_options": {"miss": -1.0}}
    with pytest.raises(IrlmError, match="the log_er objective needs rewards >= 0, but reward 'scaled' pays -1; "
                                        "use --objective er"):
        expected.train(expected.Args(**{**signed, "objective": "log_er", "run_dir": str(tmp_path / "run")}))
    assert not (tmp_path / "run").exists()
    expected.train(expected.Args(**{**signed, "objective": "er", "total_tokens": 2000, "run_dir": str(tmp_path / "er")}))


@pytest.mark.parametrize("agent", ["reinforce", "group", "expected"])
def test_a_reward_beyond_float32_stops_the_run(scaled_reward: None, tmp_path: Path, agent: str) -> None:
    module = importlib.import_module(f"irlm_agents.{agent}")
    args = module.Args(**{**TINY, "reward": "scaled", "reward_options": {"hit": 1e39, "miss": 1e39},
                          "run_dir": str(tmp_path / "run")})
    with pytest.raises(IrlmError, match=r"a reward of 1e\+39 is beyond float32's range"):
        module.train(args)


def test_a_reward_beyond_float32_is_named_by_its_own_value() -> None:
    """The error names the reward that overflowed, not the first one of the batch, so the user
    knows by how much to scale the reward down."""
    from irlm_agents.native.rollout import float32_rewards

    np.testing.assert_array_equal(float32_rewards(np.array([0.5, 2.0])), np.array([0.5, 2.0], np.float32))
    with pytest.raises(IrlmError, match=r"a reward of -3e\+39 is beyond float32's range"):
        float32_rewards(np.array([[0.5, 1.0], [-3e39, 2.0]]))


class _Counting:
    """The exact reward, counting the candidates it judges."""

    judged = 0

    def __init__(self, corpus: object) -> None:
        pass

    def __call__(self, action: int, target: int, context: np.ndarray) -> float:
        return float(action == target)

    def batch(self, actions: np.ndarray, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        _Counting.judged += actions.size
        return (actions == targets[:, None]).astype(np.float64)


@pytest.fixture
def counting_reward() -> Iterator[None]:
    _Counting.judged = 0
    yield from _registered("counting", _Counting)


def test_asking_one_at_a_time_calls_the_reward_once_per_query(counting_reward: None) -> None:
    setup = build(NativeArgs(**{**TINY, "n_envs": 8, "reward": "counting"}))
    env = setup.rollout.env

    def draw(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Six candidates, the right one among them at a position that varies with the stream."""
        candidates = torch.topk(logits + 3 * torch.rand_like(logits), 6, -1).indices
        candidates[torch.arange(8), torch.arange(8) % 6] = torch.from_numpy(env.targets())
        return candidates

    first_four = lambda candidates, probs: torch.arange(6).expand(len(candidates), 6) < 4  # noqa: E731
    torch.manual_seed(0)
    _Counting.judged = 0
    segment = setup.rollout.collect(5, draw, ask=first_four)
    # What a sequential querier asks: up to 4 candidates, up to the first hit; the played
    # candidate (the first, always asked) is paid with its answer, not judged again.
    _, queried = group_module.known_rewards(segment.rewards.reshape(-1, 6), first_four(torch.zeros(40, 6), None))
    assert 40 <= _Counting.judged == int(queried.sum()) < 8 * 5 * 4
    # In bulk, every candidate once.
    _Counting.judged = 0
    setup.rollout.collect(5, draw, score=True)
    assert _Counting.judged == 8 * 5 * 6


def test_asking_one_at_a_time_with_dropout_counts_what_it_asked(counting_reward: None, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropout makes the update's probabilities differ from the rollout's: the queries counted
    must still be those the rollout asked, one reward call each."""
    asked = [0]
    collect = Rollout.collect

    def collect_spy(self: Rollout, *args: Any, **kwargs: Any) -> Segment:
        before = _Counting.judged
        segment = collect(self, *args, **kwargs)
        asked[0] += _Counting.judged - before
        return segment

    monkeypatch.setattr(Rollout, "collect", collect_spy)
    counted = _count_group_loss_queries(monkeypatch)
    small = {**TINY, "corpus_options": {"n_sentences": 400}, "hidden_size": 16, "embedding_dim": 8, "n_envs": 8,
             "rollout_steps": 16, "episode_length": 40, "eval_tokens": 500, "seed": 3}
    group_module.train(group_module.Args(**{**small, "reward": "counting", "k": 6, "query_budget": 4.0, "dropout": 0.5,
                                            "ask_one_at_a_time": True, "total_tokens": 8 * 16 * 8,
                                            "run_dir": str(tmp_path / "run")}))
    assert asked[0] == counted[0] > 0


def test_asking_one_at_a_time_trains_the_same_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = {**TINY, "k": 8, "query_budget": 2.0, "miss_weight": 1.0, "memory_context": 4, "trust_memory": True,
               "unigram_init": True, "temperature": 0.5, "total_tokens": 3000, "eval_every": 1500}
    logged: list[float] = []  # the training reward each update logs: the played tokens' rewards
    add = Progress.add

    def add_spy(self: Progress, *args: Any, reward: float, **kwargs: Any) -> None:
        logged.append(reward)
        add(self, *args, reward=reward, **kwargs)

    monkeypatch.setattr(Progress, "add", add_spy)
    bulk = group_module.train(group_module.Args(**{**options, "run_dir": str(tmp_path / "bulk")}))
    bulk_logged, logged[:] = list(logged), []
    one = group_module.train(group_module.Args(**{**options, "ask_one_at_a_time": True, "run_dir": str(tmp_path / "one")}))
    for key in ("top1", "perplexity", "queries_per_token"):
        assert one.metrics[key] == bulk.metrics[key]
    assert logged == bulk_logged and any(logged)
    with pytest.raises(IrlmError, match="ask_one_at_a_time asks until the first hit: add --stop-at-hit"):
        group_module.Args(k=4, ask_one_at_a_time=True)


def test_unscored_candidates_have_nan_rewards() -> None:
    setup = build(NativeArgs(**{**TINY, "n_envs": 4}))
    segment = setup.rollout.collect(3, lambda logits, probs: torch.topk(logits, 3, -1).indices)
    assert segment.rewards is not None and segment.rewards.shape == (4, 3, 3)
    assert torch.isnan(segment.rewards[..., 1:]).all() and not torch.isnan(segment.rewards[..., 0]).any()


def test_expected_refuses_a_reward_whose_table_is_none_before_the_run(tmp_path: Path) -> None:
    from irlm_env import Reward, hookimpl, plugins

    class Untabulated(Reward):
        """Defines table() but cannot tabulate, which the Reward base class allows."""

        def __init__(self, corpus: object) -> None:
            pass

        def __call__(self, action: int, target: int, context: np.ndarray) -> float:
            return float(action == target)

        def table(self, targets: np.ndarray, contexts: np.ndarray) -> None:
            return None

    class Plugin:
        @hookimpl
        def irlm_register_rewards(self, register: Any) -> None:
            register("untabulated", Untabulated)

    plugins.register_plugin(Plugin(), "untabulated-test")
    try:
        expected = importlib.import_module("irlm_agents.expected")
        args = expected.Args(**{**TINY, "run_dir": str(tmp_path / "run"), "reward": "untabulated"})
        with pytest.raises(IrlmError, match="reward 'untabulated' provides no reward table"):
            expected.train(args)
        assert not (tmp_path / "run").exists()
    finally:
        plugins.reset_plugins()
