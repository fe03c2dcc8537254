"""``LanguageModelRLModule``: an RLlib RLModule (new API stack) whose policy *is* the project's
language model, so PPO (tested here; an algorithm needing more than the value-function API,
such as APPO's target networks, is not supported) trains an ordinary ``RNNLanguageModel`` that
every other tool here can evaluate, save or fine-tune.

The observation is the env's context window of token ids (int64). The model embeds it and runs
its RNN; its own head turns the last output into next-token logits, which are the action
distribution's inputs (RLlib's categorical over the vocabulary). The value head is one linear
layer on the same RNN output, so the RNN runs once for both.

Sizes go through the module spec's ``model_config`` (``ModelConfig``'s fields, or
``init_from`` to warm-start from a ``.irlm`` checkpoint, with ``vocab``, the env corpus's
vocabulary, to check the checkpoint against)::

    RLModuleSpec(module_class=LanguageModelRLModule, model_config={"hidden_size": 128})
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from irlm_agents.lm.checkpoints import load_warm_start
from irlm_agents.lm.model import ModelConfig, RNNLanguageModel
from irlm_env.errors import IrlmError
from irlm_env.vocabulary import Vocabulary

#: The language model's options a ``model_config`` may set (its vocabulary is the action space's).
MODEL_OPTIONS = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name != "vocab_size")
#: Keys RLlib itself may put into a module's ``model_config`` (PPO adds vf_share_layers), with
#: their defaults: accepted at those values, refused at others, which this module would ignore.
RLLIB_DEFAULTS = dataclasses.asdict(DefaultModelConfig())


class LanguageModelRLModule(TorchRLModule, ValueFunctionAPI):
    """The language model as an RLlib policy, with a value head; see the module docstring."""

    def setup(self) -> None:
        check_spaces(self.observation_space, self.action_space)
        given: dict[str, Any] = dict(self.model_config or {})
        init_from = given.pop("init_from", None)
        vocab = given.pop("vocab", None)
        unknown = sorted(k for k in given if k not in MODEL_OPTIONS and k not in RLLIB_DEFAULTS)
        if unknown:
            raise IrlmError(
                f"LanguageModelRLModule got unknown model_config keys {unknown}; it takes "
                f"{', '.join(MODEL_OPTIONS)} or init_from and vocab"
            )
        # vf_share_layers: PPO sets it either way; the value head always shares the RNN here.
        ignored = sorted(k for k in given if k in RLLIB_DEFAULTS and k != "vf_share_layers"
                         and given[k] != RLLIB_DEFAULTS[k])
        if ignored:
            raise IrlmError(
                f"LanguageModelRLModule does not use RLlib's default-model settings {ignored} (it is the project's "
                f"RNN language model); drop them and set its own: {', '.join(MODEL_OPTIONS)}"
            )
        options = {k: v for k, v in given.items() if k in MODEL_OPTIONS}
        self.language_model = _language_model(int(self.action_space.n), options, init_from, vocab)
        self.value_head = nn.Linear(self.language_model.config.hidden_size, 1)

    def _features(self, batch: dict[str, Any]) -> torch.Tensor:
        output, _ = self.language_model.features(batch[Columns.OBS].long())
        return output[:, -1]

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {Columns.ACTION_DIST_INPUTS: self.language_model.head(self._features(batch))}

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        features = self._features(batch)
        return {Columns.ACTION_DIST_INPUTS: self.language_model.head(features), Columns.EMBEDDINGS: features}

    def compute_values(self, batch: dict[str, Any], embeddings: Any | None = None) -> torch.Tensor:
        if embeddings is None:
            embeddings = self._features(batch)
        return self.value_head(embeddings).squeeze(-1)


def check_spaces(observation_space: gym.Space, action_space: gym.Space) -> None:
    """Refuse spaces that are not the next-word env's: token-id windows in, one token out."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise IrlmError(f"LanguageModelRLModule needs a Discrete action space (one action per token), got {action_space}")
    window = isinstance(observation_space, (gym.spaces.Box, gym.spaces.MultiDiscrete)) and len(observation_space.shape) == 1
    if not (window and np.issubdtype(observation_space.dtype, np.integer)):
        raise IrlmError(
            "LanguageModelRLModule needs a 1-D integer Box observation (the context window of token ids, "
            f"as the irlm_next_word env gives), got {observation_space}"
        )


def _language_model(vocab_size: int, options: dict[str, Any], init_from: str | None,
                    vocab: Vocabulary | None) -> RNNLanguageModel:
    if init_from is None:
        return RNNLanguageModel(ModelConfig(vocab_size=vocab_size, **options))
    if options:
        raise IrlmError(f"model_config has both init_from and sizes {sorted(options)}; the checkpoint sets the sizes")
    return load_warm_start(init_from, vocab, vocab_size,
                           'add it to model_config: {"init_from": PATH, "vocab": load_corpus(...).vocab}')
