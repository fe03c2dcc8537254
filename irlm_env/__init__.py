"""Next-word prediction as a reinforcement-learning problem with immediate rewards.

This package is the world the agents act in: corpora, tokenizers, rewards, plugins and the
environments. It needs numpy, gymnasium and pluggy only; everything that learns (torch, SB3)
lives in ``irlm_agents``. Importing it registers ``irlm/NextWord-v0`` with Gymnasium.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym

from irlm_env.errors import IrlmError
from irlm_env.hookspecs import hookimpl

__version__ = "0.1.0"

ENV_ID = "irlm/NextWord-v0"

if ENV_ID not in gym.registry:
    gym.register(
        id=ENV_ID,
        entry_point="irlm_env.envs.next_word:NextWordEnv",
        vector_entry_point="irlm_env.envs.vector:NextWordVectorEnv",
    )

# Names re-exported lazily: attribute -> module that defines it.
_LAZY = {
    "Corpus": "irlm_env.corpus",
    "load_corpus": "irlm_env.corpus",
    "Vocabulary": "irlm_env.vocabulary",
    "NextWordEnv": "irlm_env.envs.next_word",
    "NextWordVectorEnv": "irlm_env.envs.vector",
    "Reward": "irlm_env.rewards.base",
    "make_reward": "irlm_env.rewards",
}

__all__ = ["ENV_ID", "IrlmError", "hookimpl", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'irlm_env' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
