"""The group agent's answer memory: what it remembers, what it proposes, and what its miss term counts."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from irlm_agents import group as group_module
from irlm_agents.lm.model import ModelConfig, RNNLanguageModel
from irlm_agents.native.answer_memory import AnswerMemory, Recall
from irlm_agents.native.distributed import Share
from irlm_agents.native.gradients import Workspace
from irlm_agents.native.rollout import Segment
from irlm_env.errors import IrlmError

CPU = torch.device("cpu")


def _step(memory: AnswerMemory, shown: list[int], starts: list[bool]) -> Recall:
    return memory.recall(np.array(shown), np.array(starts))


def _feedback(memory: AnswerMemory, candidates: list[list[int]], rewards: list[list[float]]) -> None:
    """One step's feedback for each stream, every candidate queried up to the first hit."""
    actions = torch.tensor(candidates)[:, None, :]
    scores = torch.tensor(rewards)[:, None, :]
    hit = scores > 0
    queried = (torch.cumsum(hit.long(), -1) - hit.long()) == 0
    memory.learn(actions, scores * queried, queried)


def _no_feedback(memory: AnswerMemory, streams: int) -> None:
    """Close a step at which nothing was queried."""
    memory.learn(
        torch.zeros((streams, 1, 1), dtype=torch.int64), torch.zeros((streams, 1, 1)),
        torch.zeros((streams, 1, 1), dtype=torch.bool),
    )


def _context(memory: AnswerMemory, tokens: list[int], streams: int = 1) -> Recall:
    """Show ``tokens`` to every stream, the first starting an episode; the last step's recall,
    whose feedback is still to come."""
    for i, token in enumerate(tokens):
        if i:
            _no_feedback(memory, streams)
        recall = _step(memory, [token] * streams, [i == 0] * streams)
    return recall


def test_a_context_is_known_only_after_as_many_observations_since_the_episode_began() -> None:
    memory = AnswerMemory(streams=1, context=3, device=CPU)
    assert _context(memory, [5, 6]).keys == [None]
    _no_feedback(memory, 1)
    assert _context(memory, [5, 6, 7]).keys[0] is not None
    _no_feedback(memory, 1)
    assert _step(memory, [8], [False]).keys[0] is not None
    _no_feedback(memory, 1)
    # An episode start forgets the history: two observations since it are not a context yet.
    assert _context(memory, [1, 2]).keys == [None]


def test_a_rewarded_token_is_proposed_first_where_it_was_rewarded() -> None:
    memory = AnswerMemory(streams=1, context=2, device=CPU)
    _context(memory, [3, 4])
    _feedback(memory, [[8, 9]], [[0.0, 1.0]])  # 8 missed, 9 hit
    recall = _context(memory, [3, 4])
    assert recall.known.tolist() == [9]
    # The draws are kept clear of the answer, which then goes first.
    assert recall.exclude[1].tolist() == [9]
    assert recall.known_first(torch.tensor([[1, 2]])).tolist() == [[9, 1]]
    _no_feedback(memory, 1)
    # Another context is not answered by it.
    assert _context(memory, [4, 3]).known.tolist() == [-1]


def test_rejected_tokens_are_never_proposed_again_and_join_the_miss_term() -> None:
    memory = AnswerMemory(streams=2, context=2, device=CPU)
    _context(memory, [3, 4], streams=2)
    _feedback(memory, [[8, 9], [7, 8]], [[0.0, 0.0], [0.0, 0.0]])
    recall = _context(memory, [3, 4], streams=2)
    assert recall.known.tolist() == [-1, -1]
    assert recall.rejected == [[8, 9, 7], [8, 9, 7]]
    assert recall.exclude[0].tolist() == [0, 0, 0, 1, 1, 1]
    tokens, mask = memory.rejected_before()
    assert tokens.shape == mask.shape == (2, 3)
    assert tokens[mask].tolist() == [8, 9, 7, 8, 9, 7]


def test_candidates_a_hit_left_unqueried_are_not_rejected() -> None:
    memory = AnswerMemory(streams=1, context=2, device=CPU)
    _context(memory, [3, 4])
    _feedback(memory, [[8, 9]], [[1.0, 0.0]])  # 9 was never asked about
    _context(memory, [3, 4])
    _feedback(memory, [[8, 9]], [[1.0, 0.0]])
    assert memory.stats() == {"answered": 1.0, "rejected_only": 0.0, "unreliable": 0.0, "known_share": 1.0}


def test_a_segment_of_several_steps_and_streams_is_learnt_per_stream_and_step() -> None:
    """Each (stream, step) keeps its own queried candidates and first hit; unqueried ones count for nothing."""
    memory = AnswerMemory(streams=2, context=1, device=CPU)
    _step(memory, [5, 6], [True, True])
    _step(memory, [7, 8], [False, False])
    actions = torch.tensor([[[1, 2, 3], [4, 1, 2]], [[3, 1, 9], [9, 8, 7]]])  # (stream, step, candidate)
    rewards = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]])
    queried = torch.tensor([[[1, 1, 0], [1, 1, 1]], [[1, 0, 0], [1, 1, 0]]], dtype=torch.bool)
    memory.learn(actions, rewards, queried)
    recall = _step(memory, [5, 6], [False, False])
    assert recall.known.tolist() == [2, -1] and recall.rejected == [[], [3]]  # 9's reward was never asked
    _no_feedback(memory, 2)
    recall = _step(memory, [7, 8], [False, False])
    assert recall.known.tolist() == [-1, 9] and recall.rejected == [[4, 1, 2], []]


@pytest.mark.parametrize(
    ("second", "rewards"),
    [([[7, 9]], [[1.0, 0.0]]), ([[9, 8]], [[0.0, 0.0]])],
    ids=["another-token-rewarded", "the-answer-missed"],
)
def test_conflicting_answers_make_a_context_unreliable(second: list[list[int]], rewards: list[list[float]]) -> None:
    memory = AnswerMemory(streams=1, context=2, device=CPU)
    _context(memory, [3, 4])
    _feedback(memory, [[9, 8]], [[1.0, 0.0]])
    _context(memory, [3, 4])
    _feedback(memory, second, rewards)
    recall = _context(memory, [3, 4])
    assert recall.known.tolist() == [-1] and recall.rejected == [[]]
    assert memory.stats()["unreliable"] == 1.0


def test_a_context_answered_after_rejections_counts_as_answered_only() -> None:
    """Once a context's answer is known its rejections are dropped: it is proposed first and
    nothing is excluded, and stats() must count the context once, as answered."""
    memory = AnswerMemory(streams=1, context=1, device=CPU)
    _context(memory, [3])
    _feedback(memory, [[5]], [[0.0]])
    assert memory.stats()["rejected_only"] == 1.0
    _context(memory, [3])
    _feedback(memory, [[7]], [[1.0]])
    assert memory.stats() == {"answered": 1.0, "rejected_only": 0.0, "unreliable": 0.0, "known_share": 0.0}
    recall = _context(memory, [3])
    assert recall.known.tolist() == [7] and recall.rejected == [[]]


def test_a_token_rewarded_where_it_was_rejected_makes_the_context_unreliable() -> None:
    memory = AnswerMemory(streams=1, context=2, device=CPU)
    _context(memory, [3, 4])
    _feedback(memory, [[9, 8]], [[0.0, 0.0]])
    _context(memory, [3, 4])
    _feedback(memory, [[9, 1]], [[1.0, 0.0]])
    assert memory.stats() == {"answered": 0.0, "rejected_only": 0.0, "unreliable": 1.0, "known_share": 0.0}


def test_rejections_per_context_are_capped() -> None:
    memory = AnswerMemory(streams=1, context=1, device=CPU, max_rejected=3)
    _context(memory, [3])
    _feedback(memory, [[1, 2]], [[0.0, 0.0]])
    _context(memory, [3])
    _feedback(memory, [[4, 5]], [[0.0, 0.0]])
    assert _context(memory, [3]).rejected == [[1, 2, 4]]


def test_learn_refuses_feedback_for_steps_it_did_not_recall() -> None:
    memory = AnswerMemory(streams=1, context=1, device=CPU)
    with pytest.raises(ValueError, match="1 steps but 0 were recalled"):
        _feedback(memory, [[1]], [[0.0]])


def test_memory_needs_distinct_candidates_queried_until_a_hit() -> None:
    with pytest.raises(IrlmError, match="add --stop-at-hit"):
        group_module.Args(memory_context=12)
    with pytest.raises(IrlmError, match="drop --replacement"):
        group_module.Args(memory_context=12, stop_at_hit=True, replacement=True, estimator="logexp")
    with pytest.raises(IrlmError, match="memory_context"):
        group_module.Args(memory_context=-1, stop_at_hit=True)
    assert group_module.Args(memory_context=12, query_budget=4).memory_context == 12


def test_the_miss_term_counts_the_tokens_rejected_there_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """group_loss hands miss_terms the segment's queried candidates plus the earlier rejections."""
    seen: dict[str, torch.Tensor] = {}
    real = group_module.miss_terms

    def spy(probs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, queried: torch.Tensor) -> Any:
        seen.update(actions=actions.clone(), queried=queried.clone())
        return real(probs, actions, rewards, queried)

    monkeypatch.setattr(group_module, "miss_terms", spy)
    memory = AnswerMemory(streams=1, context=1, device=CPU)
    _context(memory, [3])
    _feedback(memory, [[5, 6]], [[0.0, 0.0]])
    _context(memory, [3])  # the segment: one stream, one step, at the context that rejected 5 and 6

    model = RNNLanguageModel(ModelConfig(vocab_size=10, embedding_dim=4, hidden_size=8))
    args = group_module.Args(k=2, stop_at_hit=True, miss_weight=1.0, memory_context=1)
    segment = Segment(
        tokens=torch.tensor([[3]]), targets=torch.tensor([[0]]), starts=torch.tensor([[False]]),
        hidden=model.initial_hidden(1, CPU), actions=torch.tensor([[[1, 2]]]), rewards=torch.zeros((1, 1, 2)),
        probs=torch.full((1, 1, 10), 0.1),
    )
    features = torch.zeros((1, 1, 8), requires_grad=True)
    group_module.group_loss(args, model, segment, features, None, Workspace(10, CPU), Share.single(1, CPU), memory)
    assert seen["actions"].tolist() == [[1, 2, 5, 6]]
    assert seen["queried"].tolist() == [[True, True, True, True]]
    # And the memory learnt the segment: 1 and 2 are rejected there now too.
    assert _context(memory, [3]).rejected == [[5, 6, 1, 2]]


@pytest.mark.parametrize(
    ("allowed", "queried", "queries"),
    [
        # the redrawn 1 asked again: it counts once, through this segment's query
        (None, [True, True, True, False, True, True], 3),
        # the redrawn 1 not asked (asked one at a time, or cut by the budget): it is still known
        # to be wrong there, so it counts once through the memory's entry
        ([True, True, False], [True, True, False, True, True, True], 2),
    ],
)
def test_a_rejected_token_drawn_again_counts_once_in_the_miss_term(
    monkeypatch: pytest.MonkeyPatch, allowed: list[bool] | None, queried: list[bool], queries: int
) -> None:
    """With fewer than K tokens left to draw, the sampler proposes a rejected one again; π(S) must
    count it once, whether or not this segment asks about it."""
    seen: dict[str, torch.Tensor] = {}
    real = group_module.miss_terms

    def spy(probs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, queried: torch.Tensor) -> Any:
        seen.update(actions=actions.clone(), queried=queried.clone(), terms=real(probs, actions, rewards, queried)[1])
        return real(probs, actions, rewards, queried)

    monkeypatch.setattr(group_module, "miss_terms", spy)
    memory = AnswerMemory(streams=1, context=1, device=CPU)
    _context(memory, [3])
    _feedback(memory, [[1, 2, 4]], [[0.0, 0.0, 0.0]])
    _context(memory, [3])
    model = RNNLanguageModel(ModelConfig(vocab_size=5, embedding_dim=4, hidden_size=8))
    args = group_module.Args(k=3, stop_at_hit=True, miss_weight=1.0, memory_context=1)
    segment = Segment(  # 0 and 3 were left to draw, so 1 was drawn again
        tokens=torch.tensor([[3]]), targets=torch.tensor([[0]]), starts=torch.tensor([[False]]),
        hidden=model.initial_hidden(1, CPU), actions=torch.tensor([[[0, 3, 1]]]), rewards=torch.zeros((1, 1, 3)),
        probs=torch.tensor([[[0.1, 0.2, 0.3, 0.2, 0.2]]]),
        allowed=None if allowed is None else torch.tensor([[allowed]]),
    )
    features = torch.zeros((1, 1, 8), requires_grad=True)
    _, used = group_module.group_loss(
        args, model, segment, features, None, Workspace(5, CPU), Share.single(1, CPU), memory
    )
    assert used == queries
    assert seen["actions"].tolist() == [[0, 3, 1, 1, 2, 4]]
    assert seen["queried"].tolist() == [queried]
    # S covers the whole vocabulary: no likelihood left to raise, so no miss term.
    assert seen["terms"].tolist() == [0.0]


def test_memory_saves_queries_on_text_seen_again(tmp_path: Path) -> None:
    """Several passes over a small text: remembered answers cost one query, and rejected tokens
    are not asked about again, so the run spends fewer queries per token than without memory."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30)]
    text = tmp_path / "text.txt"
    text.write_text("\n".join(" ".join(rng.choice(words) for _ in range(20)) for _ in range(150)) + "\n")
    spent = {}
    for context in (0, 4):
        args = group_module.Args(
            corpus="text", corpus_options={"path": str(text)}, k=2, stop_at_hit=True, miss_weight=1.0,
            memory_context=context, total_tokens=20_000, hidden_size=64, embedding_dim=32, episode_length=140,
            eval_every=10**9, eval_tokens=3000, progress=False, device="cpu", learning_rate=1e-2, seed=0,
            run_dir=str(tmp_path / f"memory{context}"),
        )
        spent[context] = group_module.train(args).metrics["queries_per_token"]
    assert spent[4] < spent[0] - 0.1, spent


def test_trust_memory_needs_the_memory() -> None:
    with pytest.raises(IrlmError, match="set --memory-context above 0"):
        group_module.Args(k=2, stop_at_hit=True, trust_memory=True)
    assert group_module.Args(k=2, stop_at_hit=True, memory_context=4, trust_memory=True).trust_memory


def test_known_rows_follow_the_segments_stream_step_order() -> None:
    memory = AnswerMemory(streams=2, context=1, device=CPU)
    _step(memory, [3, 4], [True, True])
    _feedback(memory, [[7], [8]], [[1.0], [0.0]])  # 7 answers context 3; 8 is rejected after 4
    _step(memory, [4, 3], [False, False])  # the segment's first step: stream 1 is at the known context
    _step(memory, [3, 5], [False, False])  # its second step: stream 0 is
    assert memory.known_rows().tolist() == [False, True, True, False]  # (stream 0: t0, t1), (stream 1: t0, t1)


def _trusted_loss(trust: bool, table_reward: float) -> tuple[int, list[list[float]], list[list[bool]]]:
    """One stream and step at a context whose answer 7 is known; the table gives ``table_reward`` to it.

    Returns the queries counted, and the rewards and queried mask of the two candidates that the
    miss term saw.
    """
    memory = AnswerMemory(streams=1, context=1, device=CPU)
    _context(memory, [3])
    _feedback(memory, [[7]], [[1.0]])
    _context(memory, [3])
    seen: dict[str, torch.Tensor] = {}
    real = group_module.miss_terms

    def spy(probs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, queried: torch.Tensor) -> Any:
        seen.update(rewards=rewards.clone(), queried=queried.clone())
        return real(probs, actions, rewards, queried)

    model = RNNLanguageModel(ModelConfig(vocab_size=10, embedding_dim=4, hidden_size=8))
    args = group_module.Args(k=2, stop_at_hit=True, miss_weight=1.0, memory_context=1, trust_memory=trust)
    segment = Segment(
        tokens=torch.tensor([[3]]), targets=torch.tensor([[0]]), starts=torch.tensor([[False]]),
        hidden=model.initial_hidden(1, CPU), actions=torch.tensor([[[7, 2]]]),
        rewards=torch.tensor([[[table_reward, 1.0 - table_reward]]]), probs=torch.full((1, 1, 10), 0.1),
    )
    features = torch.zeros((1, 1, 8), requires_grad=True)
    patch = pytest.MonkeyPatch()
    patch.setattr(group_module, "miss_terms", spy)
    try:
        _, queries = group_module.group_loss(
            args, model, segment, features, None, Workspace(10, CPU), Share.single(1, CPU), memory
        )
    finally:
        patch.undo()
    return queries, seen["rewards"].tolist(), seen["queried"][:, :2].tolist()


def test_a_trusted_known_answer_costs_no_query_and_is_not_read_from_the_table() -> None:
    # Asked again, the known answer costs one query; trusted, none, with the same feedback.
    assert _trusted_loss(False, 1.0) == (1, [[1.0, 0.0]], [[True, False]])
    assert _trusted_loss(True, 1.0) == (0, [[1.0, 0.0]], [[True, False]])
    # Where the table would now say 7 is wrong (the same context followed by another word), the
    # asking agent goes on to the next candidate; the trusting one never looks and trains on 7.
    assert _trusted_loss(False, 0.0) == (2, [[0.0, 1.0]], [[True, True]])
    assert _trusted_loss(True, 0.0) == (0, [[1.0, 0.0]], [[True, False]])


def test_the_budget_may_plan_under_a_query_a_token_only_when_tokens_can_cost_none() -> None:
    for floor in (1.0, 0.0):
        budget = group_module.QueryBudget(per_token=1.0, total_tokens=100, floor=floor)
        budget.update(50, 80)  # 20 of the 100 queries left for 50 tokens
        assert budget.affordable() == pytest.approx(max(floor, 0.4))


def test_a_trusting_budget_that_is_spent_asks_only_first_candidates() -> None:
    """With a trusted memory the floor is 0, so the spend still affordable can reach 0 (or near
    it) before the run ends: the steering must not divide by it or overflow, and the budget then
    asks each context not answered yet about its first candidate only."""
    spent = group_module.QueryBudget(per_token=0.98, total_tokens=100_000, floor=0.0)
    spent.update(50_000, 98_000)  # the whole run's budget gone at half way
    assert spent.affordable() == 0.0
    spent.update(1120, 1120)
    assert spent.threshold == math.inf
    probs = torch.tensor([[0.3, 0.3, 0.2], [0.9, 0.05, 0.05]])
    assert group_module.budget_mask(probs, spent.threshold).tolist() == [[True, False, False]] * 2
    nearly = group_module.QueryBudget(per_token=0.98, total_tokens=100_000, floor=0.0)
    nearly.update(50_000, 97_999)  # one query left for 50,000 tokens: exp of about 25,000
    nearly.update(1120, 1120)
    assert nearly.threshold == math.inf
    # A large step that exp can take is taken as it is, as it always was.
    steep = group_module.QueryBudget(per_token=1.0, total_tokens=1000, floor=0.0)
    steep.update(500, 990)  # 0.02 a token left
    steep.update(100, 402)  # 4.02 a token: the logarithm moves by 0.5 * 4 / 0.02 = 100
    assert steep.threshold == pytest.approx(0.1 * math.exp(0.5 * 0.98) * math.exp(100))


def _spent(tmp_path: Path, name: str, **options: Any) -> float:
    """Queries per token of a short run over a small text read several times."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30)]
    text = tmp_path / "text.txt"
    text.write_text("\n".join(" ".join(rng.choice(words) for _ in range(20)) for _ in range(150)) + "\n")
    args = group_module.Args(
        corpus="text", corpus_options={"path": str(text)}, miss_weight=1.0, memory_context=4,
        total_tokens=20_000, hidden_size=64, embedding_dim=32, episode_length=140, eval_every=10**9,
        eval_tokens=3000, progress=False, device="cpu", learning_rate=1e-2, seed=0, run_dir=str(tmp_path / name),
        **options,
    )
    return float(group_module.train(args).metrics["queries_per_token"])


def test_trusting_the_memory_spends_fewer_queries_on_text_seen_again(tmp_path: Path) -> None:
    asked = _spent(tmp_path, "asked", k=2, stop_at_hit=True)
    trusted = _spent(tmp_path, "trusted", k=2, stop_at_hit=True, trust_memory=True)
    assert trusted < asked - 0.05, (trusted, asked)


def test_a_budget_of_one_query_a_token_holds_when_the_memory_is_trusted(tmp_path: Path) -> None:
    """Known contexts cost nothing, so the budget spends their share on second candidates elsewhere
    and still ends at one query a token or under (without trust it could not go under one)."""
    spent = _spent(tmp_path, "budget", k=4, query_budget=1.0, trust_memory=True)
    assert 0.9 <= spent <= 1.0, spent
