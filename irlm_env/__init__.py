"""Next-word prediction as a reinforcement-learning problem with immediate rewards.

Importing the package registers ``irlm/NextWord-v0`` with Gymnasium. It stays light: torch and
Stable-Baselines3 are imported only when a torch-backed name (the model, evaluation,
checkpoints) is first used, so the environment works without paying for them.
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
    "Reward": "irlm_env.rewards",
    "make_reward": "irlm_env.plugins",
    "RNNLanguageModel": "irlm_env.model",
    "ModelConfig": "irlm_env.model",
    "resolve_device": "irlm_env.devices",
    "save_model": "irlm_env.checkpoints",
    "load_model": "irlm_env.checkpoints",
    "evaluate": "irlm_env.evaluation",
}

__all__ = ["ENV_ID", "IrlmError", "hookimpl", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'irlm_env' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
