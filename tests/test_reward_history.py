"""Rewards that declare ``history_length`` get the true text before the target as their
context, whatever the agent sees (one token, its own fed actions); others get the observation."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from irlm_env import IrlmError, hookimpl, plugins
from irlm_env.corpus import Corpus, load_corpus
from irlm_env.envs.episodes import history_windows
from irlm_env.envs.next_word import NextWordEnv
from irlm_env.envs.vector import NextWordVectorEnv
from irlm_env.rewards import Reward, make_reward

H = 5


@pytest.fixture(scope="module")
def unique(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Every word occurs once, so a target (or, for an ``<eos>``, the word before it) tells
    its position in the split."""
    path = tmp_path_factory.mktemp("unique") / "words.txt"
    lines = [" ".join(f"w{3 * i + j}" for j in range(3)) for i in range(40)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_corpus("text", path=str(path))


pytestmark = pytest.mark.usefixtures("fresh_plugins")


class Judge(Reward):
    """Records the targets and contexts of every call; pays 1 for the true token."""

    history_length = H

    def __init__(self) -> None:
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, action: int, target: int, context: np.ndarray) -> float:
        assert context.shape == (H,) and not context.flags.writeable
        self.seen.append((np.array([target]), np.array(context)[None]))
        return float(action == target)

    def batch(self, actions: np.ndarray, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        assert contexts.shape == (len(targets), H) and not contexts.flags.writeable
        self.seen.append((np.array(targets), np.array(contexts)))
        return (actions == targets[:, None]).astype(np.float64)


def install(name: str, reward: Callable[..., Any]) -> None:
    class Plugin:
        @hookimpl
        def irlm_register_rewards(self, register: Callable[..., None]) -> None:
            register(name, reward)

    plugins.register_plugin(Plugin(), f"{name}-plugin")


def check_histories(corpus: Corpus, targets: np.ndarray, contexts: np.ndarray) -> int:
    """Assert each context is the H split tokens before its target, sliced here by hand;
    returns how many were left-padded at the split's start."""
    tokens = corpus.split("train").astype(np.int64)
    eos = corpus.vocab.eos_id
    where = {int(t): p for p, t in enumerate(tokens) if t != eos}
    padded = 0
    for target, context in zip(targets.tolist(), contexts, strict=True):
        position = where[target] if target != eos else where[int(context[-1])] + 1
        assert tokens[position] == target
        want = tokens[max(0, position - H):position]
        want = np.concatenate([np.zeros(H - len(want), np.int64), want])
        assert np.array_equal(context, want), (position, context, want)
        padded += int(position < H)
    return padded


@pytest.mark.parametrize("mode", ["window", "line"])
@pytest.mark.parametrize("feed", [{}, {"feed": "action"}, {"feed": "action", "feed_probability": 0.5}])
def test_single_env_reward_gets_the_true_history(unique: Corpus, mode: str, feed: dict) -> None:
    judge = Judge()
    install("judge", judge)
    env = NextWordEnv(corpus=unique, reward="judge", context_length=1, mode=mode,
                      episode_length=4, **feed)
    assert env.reward_fn.history_length == H
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(400):
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(0, len(env.vocab))))
        assert obs.shape == (1,)
        if terminated or truncated:
            env.reset()
    targets = np.concatenate([t for t, _ in judge.seen])
    contexts = np.concatenate([c for _, c in judge.seen])
    assert len(targets) == 400
    assert check_histories(unique, targets, contexts) > 0  # some at the split's start


@pytest.mark.parametrize("autoreset", ["NextStep", "SameStep"])
def test_vector_env_step_and_score_get_the_true_history(unique: Corpus, autoreset: str) -> None:
    judge = Judge()
    install("judge", judge)
    env = NextWordVectorEnv(8, corpus=unique, reward="judge", context_length=1, mode="line",
                            feed="action", feed_probability=0.5, autoreset_mode=autoreset)
    env.reset(seed=1)
    rng = np.random.default_rng(1)
    padded = 0
    for _ in range(150):
        live = ~env.pending_reset
        candidates = np.stack([env.targets(), rng.integers(0, len(env.vocab), 8)], axis=1)
        scores = env.score(candidates[:, :1])
        assert np.array_equal(scores[live, 0], np.ones(live.sum()))
        (targets, contexts), = judge.seen
        judge.seen.clear()
        padded += check_histories(unique, targets[live], contexts[live])
        assert np.array_equal(env.reward_contexts(), contexts)
        rewards = env.step(candidates[:, 1])[1]
        # The step asks the reward about the streams whose played token score() was not asked
        # about (and that it does not reset), with the same true histories.
        asked = live & (candidates[:, 1] != candidates[:, 0])
        if asked.any():
            (step_targets, step_contexts), = judge.seen
            assert np.array_equal(step_targets, targets[asked]) and np.array_equal(step_contexts, contexts[asked])
        judge.seen.clear()
        assert np.array_equal(rewards[live], (candidates[live, 1] == targets[live]).astype(float))
    assert padded > 0


def test_single_and_vector_env_give_the_same_histories(unique: Corpus) -> None:
    single_judge, vector_judge = Judge(), Judge()
    install("single", single_judge)
    install("vector", vector_judge)
    single = NextWordEnv(corpus=unique, reward="single", feed="action", feed_probability=0.3)
    vector = NextWordVectorEnv(1, corpus=unique, reward="vector", feed="action",
                               feed_probability=0.3, autoreset_mode="SameStep")
    single.reset(seed=5)
    vector.reset(seed=5)
    for action in [3, 4, 5, 6] * 40:
        obs, _, terminated, truncated, _ = single.step(action)
        vector_obs, _, _, _, info = vector.step(np.array([action]))
        if terminated or truncated:  # the vector env has reset at once: compare both
            assert np.array_equal(info["final_obs"][0], obs)
            obs = single.reset()[0]
        assert np.array_equal(vector_obs[0], obs)
    for (a, b), (c, d) in zip(single_judge.seen, vector_judge.seen, strict=True):
        assert np.array_equal(a, c) and np.array_equal(b, d)


def test_history_windows_pads_only_at_the_start_of_the_array() -> None:
    tokens = np.arange(10, 30, dtype=np.uint16)
    windows = history_windows(tokens, np.array([[0, 2], [7, 20]]), 4, pad_id=0)
    assert windows.dtype == np.int64 and windows.shape == (2, 2, 4)
    assert windows.tolist() == [[[0, 0, 0, 0], [0, 0, 10, 11]], [[13, 14, 15, 16], [26, 27, 28, 29]]]
    assert history_windows(tokens, 3, 2).tolist() == [11, 12]
    with pytest.raises(IrlmError, match=r"position 21 is outside the token array; use positions in \[0, 20\]"):
        history_windows(tokens, [1, 21], 2)
    with pytest.raises(IrlmError, match=r"position -1 is outside"):
        history_windows(tokens, [-1], 2)
    with pytest.raises(IrlmError, match=r"must be integer positions.*\[1\.5\]"):
        history_windows(tokens, [1.5], 2)
    with pytest.raises(IrlmError, match="history length must be a positive integer, got 0"):
        history_windows(tokens, [1], 0)


@pytest.mark.parametrize("length", [0, -2, True, 2.5, "5"])
def test_invalid_history_length_names_the_plugin_and_the_fix(unique: Corpus, length: Any) -> None:
    judge = Judge()
    judge.history_length = length
    install("judge", judge)
    with pytest.raises(IrlmError, match=(
        rf"^reward 'judge' \(plugin 'judge-plugin'\) has history_length={re.escape(repr(length))}; "
        r"set it to None .* or to an int >= 1"
    )):
        make_reward("judge", unique)


def test_a_plain_function_reward_still_gets_the_observation(unique: Corpus) -> None:
    contexts: list[np.ndarray] = []

    def plain(action: int, target: int, context: np.ndarray) -> float:
        contexts.append(np.array(context))
        return float(action == target)

    install("plain", plain)
    assert make_reward("plain", unique).history_length is None
    env = NextWordEnv(corpus=unique, reward="plain", context_length=3, feed="action")
    seen = [env.reset(seed=0)[0]]
    for action in [4, 5, 6, 7, 8]:
        seen.append(env.step(action)[0])
    assert all(np.array_equal(a, b) for a, b in zip(contexts, seen[:-1], strict=True))
    assert len(contexts) == 5
    vector = NextWordVectorEnv(2, corpus=unique, reward="plain", context_length=3, feed="action")
    obs, _ = vector.reset(seed=0)
    contexts.clear()
    after = vector.step(np.array([4, 5]))[0]
    assert np.array_equal(np.stack(contexts), obs)
    assert np.array_equal(vector.reward_contexts(), after)


def test_the_rollout_keeps_the_contexts_the_reward_got_for_table_agents(unique: Corpus) -> None:
    """``agents/expected.py`` calls the reward's table itself: it must pass the true history."""
    import torch

    from irlm_agents.lm.model import ModelConfig, RNNLanguageModel
    from irlm_agents.native.rollout import Rollout

    judge = Judge()
    install("judge", judge)
    env = NextWordVectorEnv(4, corpus=unique, reward="judge", context_length=1, mode="line",
                            autoreset_mode="SameStep", feed="action")
    model = RNNLanguageModel(ModelConfig(vocab_size=len(unique.vocab), embedding_dim=8, hidden_size=8))
    rollout = Rollout(env, model, torch.device("cpu"), seed=0)

    def sampler(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return torch.full((logits.shape[0], 1), 3, dtype=torch.int64)  # never the truth, always shown

    segment = rollout.collect(30, sampler, keep_contexts=True)
    assert segment.reward_contexts is not None and segment.reward_contexts.shape == (4, 30, H)
    assert (segment.tokens[:, 1:][~segment.starts[:, 1:]] == 3).all()  # the agent saw its own token
    check_histories(unique, segment.targets.reshape(-1).numpy(), segment.reward_contexts.reshape(-1, H))
    assert rollout.collect(5, sampler).reward_contexts is None


def test_evaluation_scores_a_history_reward_on_the_true_history(unique: Corpus) -> None:
    from irlm_agents.lm.evaluation import evaluate
    from irlm_agents.lm.model import ModelConfig, RNNLanguageModel

    judge = Judge()
    model = RNNLanguageModel(ModelConfig(vocab_size=len(unique.vocab), embedding_dim=8, hidden_size=8))
    for context_length in (None, 2):
        judge.seen.clear()
        evaluate(model, unique, "train", reward=judge, context_length=context_length, max_tokens=60)
        (targets, contexts), = judge.seen
        assert len(targets) == 60
        assert check_histories(unique, targets, contexts) > 0
