"""The next-word env as RLlib builds it in its env runners, its observation declared as token ids.

``config.environment(ENV_NAME, env_config={...})`` takes the env's keyword arguments (those of
``irlm_env.envs.next_word.NextWordEnv``) as ``env_config``. RLlib's default sync vectorization
makes one ``NextWordEnv`` per sub-env; with
``config.env_runners(gym_env_vectorize_mode="vector_entry_point")`` it asks for
``num_envs`` streams at once and gets the native ``NextWordVectorEnv`` (no Python loop over
streams).

The observation is a window of token ids. RLlib's default models would feed them to a dense
layer as numbers (for a Box of int64 they crash inside every env runner, and ``algo.train()``
returns after its sample timeout with no metrics). Here the observation space is
:class:`TokenIds`, a ``MultiDiscrete`` for which RLlib has no default encoder, so building an
algorithm with a default model fails at once, in the driver, with an error that names the
space and, through its text, the cause and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space
from ray.tune.registry import register_env as ray_register_env

from irlm_env.envs.next_word import NextWordEnv
from irlm_env.envs.vector import NextWordVectorEnv

#: The name RLlib knows the env by once :func:`register_env` ran (in the driver; Ray hands
#: the registration to its workers).
ENV_NAME = "irlm_next_word"


class TokenIds(gym.spaces.MultiDiscrete):
    """A window of ``context`` token ids, each in ``[0, vocab)``: what the env observes.

    RLlib's catalogs put the space's text into their "no default encoder" error, so the text
    carries the fix.
    """

    def __init__(self, vocab: int, context: int) -> None:
        super().__init__(np.full(context, vocab, dtype=np.int64), dtype=np.int64)

    def __repr__(self) -> str:
        vocab, context = int(self.nvec[0]), len(self.nvec)
        return (
            f"TokenIds(vocab={vocab}, context={context}): token ids need an embedding, which RLlib's "
            "default models lack; use irlm_agents.rllib.module.LanguageModelRLModule "
            "(config.rl_module(rl_module_spec=RLModuleSpec(module_class=LanguageModelRLModule)))"
        )


def make_env(config: Mapping[str, Any]) -> gym.Env | NextWordVectorEnv:
    """One env from RLlib's ``env_config`` (an ``EnvContext``); ``num_envs`` asks for a vector env."""
    options = dict(config)
    num_envs = options.pop("num_envs", None)
    if num_envs is None:
        env = NextWordEnv(**options)
        env.observation_space = TokenIds(len(env.vocab), env.observation_space.shape[0])
        return env
    vector = NextWordVectorEnv(num_envs, **options)
    vector.single_observation_space = TokenIds(len(vector.vocab), vector.single_observation_space.shape[0])
    vector.observation_space = batch_space(vector.single_observation_space, num_envs)
    return vector


def register_env() -> None:
    """Make :data:`ENV_NAME` known to RLlib (call it once in the driver, before building)."""
    ray_register_env(ENV_NAME, make_env)
