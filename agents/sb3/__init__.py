"""Stable-Baselines3 adapters: the language-model policy and a fast ``VecEnv``.

SB3 itself turns ``device="cuda"`` into the CPU without a word on a machine without a GPU; pass
``device=resolve_device("cuda")`` (from ``irlm_agents.lm.devices``) to get an error instead.

```python
from stable_baselines3 import PPO
from irlm_agents.sb3 import RNNLanguagePolicy, make_vec_env

env = make_vec_env("irlm/NextWord-v0", n_envs=64, seed=0, corpus="grammar")
model = PPO(RNNLanguagePolicy, env, policy_kwargs=dict(cell="gru", embedding_dim=32, hidden_size=64))
```

Importing this package imports torch and SB3; ``import irlm_env`` alone does not.
"""

from __future__ import annotations

from irlm_agents.sb3.policy import RNNFeaturesExtractor, RNNLanguagePolicy, make_self_contained
from irlm_agents.sb3.vec_env import SB3VecEnvAdapter, make_vec_env

__all__ = ["RNNFeaturesExtractor", "RNNLanguagePolicy", "SB3VecEnvAdapter", "make_self_contained", "make_vec_env"]
