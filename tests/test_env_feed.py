"""Free running and scheduled sampling: ``feed="action"`` shows the agent its own predictions,
always or with ``feed_probability``, while rewards, targets and episode ends follow the
reference text; the vector env reproduces single envs exactly."""

from __future__ import annotations

import math
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from test_vector_env import assert_same, make_pair

import irlm_env
from irlm_env.corpus import Corpus, load_corpus
from irlm_env.envs.episodes import FEED_BLOCK, START_BLOCK
from irlm_env.envs.next_word import NextWordEnv
from irlm_env.envs.vector import NextWordVectorEnv
from irlm_env.errors import IrlmError


@pytest.fixture(scope="module")
def grammar() -> Corpus:
    return load_corpus("grammar")


def rollout_both(
    native: gym.vector.VectorEnv, sync: gym.vector.VectorEnv, steps: int, seed: Any,
    autoreset: AutoresetMode,
) -> int:
    """Step both with the same actions (half of them correct), resetting ended streams by
    mask when autoreset is disabled; compare every result. Returns the episodes ended."""
    assert_same(native.reset(seed=seed), sync.reset(seed=seed), "reset")
    rng = np.random.default_rng(0)
    n, vocab = native.num_envs, native.single_action_space.n
    ended_total = 0
    for step in range(steps):
        guesses = rng.integers(0, vocab, n)
        actions = np.where(rng.random(n) < 0.5, native.unwrapped.targets(), guesses)
        got, want = native.step(actions), sync.step(actions)
        assert_same(got, want, f"step {step}")
        ended = got[2] | got[3]
        ended_total += int(ended.sum())
        if autoreset is AutoresetMode.DISABLED and ended.any():
            assert_same(native.reset(options={"reset_mask": ended}),
                        sync.reset(options={"reset_mask": ended.copy()}), f"reset {step}")
    return ended_total


@pytest.mark.parametrize("probability", [1.0, 0.3])
@pytest.mark.parametrize("mode", ["window", "line"])
@pytest.mark.parametrize(
    "autoreset", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED]
)
def test_vector_env_reproduces_single_envs_when_feeding_actions(
    grammar: Corpus, probability: float, mode: str, autoreset: AutoresetMode
) -> None:
    native, sync = make_pair(grammar, 5, autoreset, mode=mode, episode_length=4,
                             context_length=3, feed="action", feed_probability=probability)
    # Past FEED_BLOCK steps: every stream refills its block of draws at least once.
    steps = FEED_BLOCK + 60 if probability < 1 else 300
    assert rollout_both(native, sync, steps, 11, autoreset) > 5 * 20
    # Unseeded resets continue each stream's generator; reseeding some starts new blocks.
    rollout_both(native, sync, 40, None, autoreset)
    rollout_both(native, sync, 40, [3, None, 5, None, 9], autoreset)


@pytest.mark.parametrize(
    "autoreset", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED]
)
def test_feeding_every_action_agrees_with_single_envs_past_the_start_block(
    grammar: Corpus, autoreset: AutoresetMode
) -> None:
    """At probability 1 no feed is drawn: a single env that drew them anyway would have moved its
    generator on, and its next block of episode starts, drawn after START_BLOCK episodes, would
    differ from the vector env's. Short episodes take every stream past that block."""
    native, sync = make_pair(grammar, 5, autoreset, mode="window", episode_length=2,
                             context_length=3, feed="action", feed_probability=1.0)
    assert rollout_both(native, sync, 3 * START_BLOCK + 300, 11, autoreset) > 5 * (START_BLOCK + 20)


def test_observation_shows_the_action_or_the_truth(grammar: Corpus) -> None:
    free = NextWordEnv(corpus=grammar, feed="action", episode_length=500)
    forced = NextWordEnv(corpus=grammar, episode_length=500)
    previous = free.reset(seed=0)[0]
    forced.reset(seed=0)
    rng = np.random.default_rng(0)
    wrong = 0
    for _ in range(200):
        action = int(rng.integers(0, free.action_space.n))
        obs, _, _, _, info = free.step(action)
        assert obs[-1] == action and np.array_equal(obs[:-1], previous[1:])
        previous = obs
        truth_obs, _, _, _, truth_info = forced.step(action)
        assert truth_obs[-1] == truth_info["target"]
        wrong += int(action != truth_info["target"])
    assert wrong > 100


def test_rewards_targets_and_ends_follow_the_reference(grammar: Corpus) -> None:
    # Starts come from the first block of the same generator, so episodes are the same
    # reference text; only the observations differ.
    for mode in ("window", "line"):
        fed = NextWordEnv(corpus=grammar, mode=mode, episode_length=5, feed="action",
                          feed_probability=0.3)
        forced = NextWordEnv(corpus=grammar, mode=mode, episode_length=5)
        fed.reset(seed=4)
        forced.reset(seed=4)
        rng = np.random.default_rng(1)
        differing, ends = 0, 0
        for _ in range(400):
            action = int(rng.integers(0, fed.action_space.n))
            a, b = fed.step(action), forced.step(action)
            assert a[1:] == b[1:]  # reward, terminated, truncated, target and correct
            differing += int(not np.array_equal(a[0], b[0]))
            if a[2] or a[3]:
                ends += 1
                assert np.array_equal(fed.reset()[0], forced.reset()[0])
        assert differing > 50 and ends > 20


@pytest.mark.parametrize("probability", [0.3, 0.0])
def test_fraction_of_fed_steps_is_the_probability(grammar: Corpus, probability: float) -> None:
    # Long windows: no stream resets, and every action differs from the truth, so each
    # step's newest token tells whether it was fed.
    env = NextWordVectorEnv(64, corpus=grammar, episode_length=1000, feed="action",
                            feed_probability=probability)
    env.reset(seed=2)
    fed = 0
    for _ in range(300):
        actions = (env.targets() + 1) % len(env.vocab)
        obs = env.step(actions)[0]
        fed += int((obs[:, -1] == actions).sum())
    assert abs(fed / (64 * 300) - probability) < 0.02
    single = NextWordEnv(corpus=grammar, episode_length=1000, feed="action",
                         feed_probability=probability)
    single.reset(seed=2)
    shown = []
    for action in np.random.default_rng(0).integers(0, single.action_space.n, 900).tolist():
        obs, _, _, _, info = single.step(action)
        if action != info["target"]:  # then the newest token tells which was shown
            shown.append(obs[-1] == action)
    assert abs(np.mean(shown) - probability) < 0.05


def test_same_seed_same_rollout_other_seed_differs(grammar: Corpus) -> None:
    def run(seed: int) -> list:
        env = NextWordEnv(corpus=grammar, feed="action", feed_probability=0.3, episode_length=8)
        record = [env.reset(seed=seed)[0].tolist()]
        for action in [5, 6, 7, 8, 9] * 30:
            obs, reward, terminated, truncated, info = env.step(action)
            record.append((obs.tolist(), reward, info))
            if terminated or truncated:
                record.append(env.reset()[0].tolist())
        return record

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_gymnasium_and_sb3_check_env_pass_when_feeding_actions(grammar: Corpus) -> None:
    for mode in ("window", "line"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            env = gym.make(irlm_env.ENV_ID, corpus=grammar, mode=mode, episode_length=16,
                           feed="action", feed_probability=0.5).unwrapped
            gym_check_env(env)
            sb3_check_env(env)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"feed": "actions"}, r"^unknown feed mode 'actions'; did you mean 'action'\? available: action, truth$"),
        ({"feed_probability": 0.5},
         r"^feed_probability=0\.5 only applies to fed actions; pass feed='action'"),
        ({"feed": "action", "feed_probability": 1.5},
         r"^feed_probability must be a real number in \[0, 1\], got 1\.5; pass e\.g\."),
        ({"feed": "action", "feed_probability": -0.1}, r"got -0\.1; pass"),
        ({"feed": "action", "feed_probability": math.nan}, r"got nan; pass"),
        ({"feed": "action", "feed_probability": True}, r"got True; pass"),
        ({"feed": "action", "feed_probability": "0.5"}, r"got '0\.5'; pass"),
    ],
)
def test_bad_feed_arguments_raise_one_line_errors(
    grammar: Corpus, kwargs: dict, match: str
) -> None:
    for make in (NextWordEnv, lambda **kw: NextWordVectorEnv(2, **kw)):
        with pytest.raises(IrlmError, match=match) as raised:
            make(corpus=grammar, **kwargs)
        assert "\n" not in str(raised.value)
