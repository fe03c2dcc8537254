"""Other libraries' ways of building the env work: SB3's make_vec_env, TorchRL's GymEnv and
GymWrapper, and the keyword errors that such libraries parse."""

from __future__ import annotations

from contextlib import nullcontext

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import irlm_env
from irlm_agents.sb3 import RNNLanguagePolicy
from irlm_env.envs.next_word import NextWordEnv
from irlm_env.envs.vector import NextWordVectorEnv
from irlm_env.errors import IrlmError

ENV_KWARGS = {"corpus": "grammar", "corpus_options": {"n_sentences": 1000}, "context_length": 4}


@pytest.mark.parametrize("vec_env_cls", [DummyVecEnv, SubprocVecEnv])
def test_sb3_make_vec_env_builds_and_trains(vec_env_cls: type) -> None:
    """SB3 asks for render_mode="rgb_array"; the env warns (in the worker processes, with
    SubprocVecEnv) and renders nothing, as Gymnasium's envs do.

    Subprocess workers start without this process's imports, so the id names the module
    (``irlm_env:``) for Gymnasium to import first.
    """
    in_process = vec_env_cls is DummyVecEnv
    env_id = irlm_env.ENV_ID if in_process else f"irlm_env:{irlm_env.ENV_ID}"
    with pytest.warns(UserWarning, match="render_mode='rgb_array'") if in_process else nullcontext():
        vec_env = sb3_make_vec_env(env_id, n_envs=4, seed=0, env_kwargs=ENV_KWARGS, vec_env_cls=vec_env_cls)
    try:
        assert vec_env.reset().shape == (4, 4)
        agent = PPO(RNNLanguagePolicy, vec_env, n_steps=8, batch_size=16, n_epochs=1, seed=0, device="cpu",
                    policy_kwargs={"embedding_dim": 8, "hidden_size": 12})
        agent.learn(64)
        assert agent.num_timesteps == 64
        assert vec_env.get_attr("render_mode") == [None] * 4
    finally:
        vec_env.close()


@pytest.mark.parametrize("make", [NextWordEnv, lambda **kw: NextWordVectorEnv(2, **kw)], ids=["env", "vector"])
def test_unsupported_render_mode_warns_and_renders_nothing(make: object) -> None:
    with pytest.warns(UserWarning, match="does not support render_mode='human'.*rendering is off"):
        env = make(render_mode="human", **ENV_KWARGS)  # type: ignore[operator]
    assert env.render_mode is None


@pytest.mark.parametrize("make", [NextWordEnv, lambda **kw: gym.make(irlm_env.ENV_ID, **kw)], ids=["env", "gym.make"])
def test_unknown_keyword_uses_pythons_wording_and_keeps_the_suggestion(make: object) -> None:
    with pytest.raises(TypeError) as caught:
        make(frameskip=1, **ENV_KWARGS)  # type: ignore[operator]
    message = str(caught.value)
    assert "NextWordEnv.__init__() got an unexpected keyword argument 'frameskip'" in message
    assert "available: context_length" in message
    assert isinstance(caught.value, IrlmError)


def test_torchrl_gym_env_and_gym_wrapper() -> None:
    """TorchRL passes frameskip and drops it when the TypeError says Python's standard words."""
    from torchrl.envs import GymEnv, GymWrapper

    for env in (GymEnv(irlm_env.ENV_ID, **ENV_KWARGS), GymWrapper(gym.make(irlm_env.ENV_ID, **ENV_KWARGS))):
        state = env.reset()
        assert state["observation"].shape == (4,)
        rollout = env.rollout(5)
        assert rollout["next", "reward"].shape == (5, 1)
        assert np.isin(rollout["next", "reward"].numpy(), [0.0, 1.0]).all()
        env.close()
