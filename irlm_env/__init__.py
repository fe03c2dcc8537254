"""Next-word prediction as a reinforcement-learning problem with immediate rewards.

This package is the world the agents act in: corpora, tokenizers, rewards, plugins and the
environments. It needs numpy, gymnasium and pluggy only; everything that learns (torch, SB3)
lives in ``irlm_agents``. Importing it registers ``irlm/NextWord-v0`` with Gymnasium.
"""

from __future__ import annotations

import gymnasium as gym

from irlm_env.corpus import Corpus, load_corpus
from irlm_env.corpus_spec import CorpusSpec
from irlm_env.envs.next_word import NextWordEnv
from irlm_env.envs.vector import NextWordVectorEnv
from irlm_env.errors import IrlmError
from irlm_env.hookspecs import hookimpl
from irlm_env.rewards import Reward, make_reward
from irlm_env.version import __version__
from irlm_env.vocabulary import Vocabulary

ENV_ID = "irlm/NextWord-v0"

if ENV_ID not in gym.registry:
    gym.register(
        id=ENV_ID,
        entry_point="irlm_env.envs.next_word:NextWordEnv",
        vector_entry_point="irlm_env.envs.vector:NextWordVectorEnv",
    )

__all__ = [
    "ENV_ID",
    "Corpus",
    "CorpusSpec",
    "IrlmError",
    "NextWordEnv",
    "NextWordVectorEnv",
    "Reward",
    "Vocabulary",
    "__version__",
    "hookimpl",
    "load_corpus",
    "make_reward",
]
