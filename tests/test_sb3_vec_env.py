from __future__ import annotations


import numpy as np
import pytest
from stable_baselines3 import A2C
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecCheckNan, VecMonitor

from irlm_env.envs.next_word import NextWordEnv
from irlm_env.errors import IrlmError
from irlm_agents.sb3 import SB3VecEnvAdapter, RNNLanguagePolicy, make_vec_env


ENV = {"corpus": "grammar", "corpus_options": {"n_sentences": 1000}, "context_length": 4}


@pytest.mark.parametrize("mode, episode_length", [("window", 5), ("line", 64)])
def test_matches_dummy_vec_env_with_monitor(mode: str, episode_length: int) -> None:
    """Same seeds -> the same observations, rewards, dones and episode infos as SB3's own
    DummyVecEnv of Monitor-wrapped single envs."""
    kwargs = {**ENV, "mode": mode, "episode_length": episode_length}
    ours = VecCheckNan(make_vec_env(n_envs=6, seed=3, **kwargs), raise_exception=True)
    theirs = DummyVecEnv([lambda: Monitor(NextWordEnv(**kwargs)) for _ in range(6)])
    theirs.seed(3)
    obs_a, obs_b = ours.reset(), theirs.reset()
    np.testing.assert_array_equal(obs_a, obs_b)
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(40):
        actions = rng.integers(0, ours.action_space.n, size=6)
        obs_a, rew_a, done_a, info_a = ours.step(actions)
        obs_b, rew_b, done_b, info_b = theirs.step(actions)
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(rew_a, rew_b)
        np.testing.assert_array_equal(done_a, done_b)
        for a, b in zip(info_a, info_b):
            assert ("episode" in a) == ("episode" in b)
            if "episode" in a:
                episodes += 1
                assert a["episode"]["r"] == pytest.approx(b["episode"]["r"])
                assert a["episode"]["l"] == b["episode"]["l"]
                np.testing.assert_array_equal(a["terminal_observation"], b["terminal_observation"])
                assert a["TimeLimit.truncated"] == b.get("TimeLimit.truncated", False)
    assert episodes > 6


def test_learn_keeps_episode_statistics() -> None:
    env = make_vec_env(n_envs=4, seed=0, **ENV, episode_length=5)
    model = A2C(RNNLanguagePolicy, env, n_steps=5, seed=0, device="cpu",
                policy_kwargs=dict(embedding_dim=8, hidden_size=8))
    model.learn(200)
    lengths = [info["l"] for info in model.ep_info_buffer]
    returns = [info["r"] for info in model.ep_info_buffer]
    assert len(lengths) == 200 // 5 and set(lengths) == {5}
    assert all(0 <= r <= 5 and float(r).is_integer() for r in returns)


def test_attributes_and_methods() -> None:
    env = make_vec_env(n_envs=3, **ENV)
    assert env.get_attr("vocab") == [env.env.vocab] * 3
    assert env.get_attr("render_mode", indices=[1]) == [None]
    assert env.env_is_wrapped(Monitor) == [True] * 3
    assert env.env_is_wrapped(VecMonitor) == [False] * 3  # type: ignore[arg-type]
    env.reset()
    assert env.env_method("targets")[0].shape == (3,)
    env.set_attr("copy", True)
    with pytest.raises(IrlmError, match="all 3 streams"):
        env.set_attr("copy", True, indices=[0])
    # a method called for one stream would act on all of them (a reset, a seed): refused too
    with pytest.raises(IrlmError, match="cannot call 'reset' on some streams only"):
        env.env_method("reset", indices=[0])
    env.set_options({"foo": 1})
    with pytest.raises(IrlmError, match="reset options"):
        env.reset()
    env.close()


def test_seeding_is_reproducible() -> None:
    first = make_vec_env(n_envs=4, seed=11, **ENV).reset()
    second = make_vec_env(n_envs=4, seed=11, **ENV).reset()
    other = make_vec_env(n_envs=4, seed=12, **ENV).reset()
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_bad_arguments() -> None:
    with pytest.raises(IrlmError, match="NextWord-v0"):
        make_vec_env("CartPole-v1", n_envs=2)
    with pytest.raises(IrlmError, match="autoreset_mode"):
        make_vec_env(n_envs=2, autoreset_mode="NextStep", **ENV)
    with pytest.raises(IrlmError, match="takes the env's options as keywords, not SB3's env_kwargs"):
        make_vec_env(n_envs=2, env_kwargs=ENV)
    from irlm_env.envs.vector import NextWordVectorEnv

    with pytest.raises(IrlmError, match="SameStep"):
        SB3VecEnvAdapter(NextWordVectorEnv(2, **ENV))
