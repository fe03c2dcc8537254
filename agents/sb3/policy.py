"""``RNNLanguagePolicy``: an SB3 actor-critic whose actor *is* the language model.

The observation is the environment's context window (token ids). The features extractor embeds
it and runs the RNN; the model's own head turns the last RNN output into next-token logits, and
those logits are the action distribution: no extra action layer sits on top, so training the
policy trains an ordinary ``RNNLanguageModel`` that every other tool in the project can evaluate,
save or fine-tune. The critic is one small linear layer on the same RNN output, so the RNN runs
once per batch for both.

Sizes go through ``policy_kwargs``::

    PPO(RNNLanguagePolicy, env, policy_kwargs=dict(cell="lstm", embedding_dim=64, hidden_size=128))

``init_from="model.irlm"`` warm-starts from a checkpoint saved by ``irlm_agents.lm.checkpoints``; the
model's sizes are then read from the checkpoint, and ``vocab`` (the env corpus's vocabulary) is
required to check that the checkpoint was trained on it. SB3 saves the algorithm's
``policy_kwargs`` as given, so ``PPO.load`` of such an agent reads the checkpoint again; call
:func:`make_self_contained` before ``agent.save`` to save one that loads without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from irlm_agents.lm.checkpoints import load_warm_start
from irlm_agents.lm.model import ModelConfig, RNNLanguageModel
from irlm_agents.sb3.distributions import LogProbEntropy, TokenDistribution, draw_tokens, token_ids
from irlm_env.errors import IrlmError
from irlm_env.vocabulary import Vocabulary

#: Model options accepted through ``policy_kwargs``; ``None`` means "the default, or the
#: checkpoint's value when warm-starting".
MODEL_OPTIONS = ("cell", "embedding_dim", "hidden_size", "num_layers", "dropout", "tie_weights", "pad_id")


def standalone_options(config: ModelConfig) -> dict[str, Any]:
    """The ``policy_kwargs`` that rebuild a policy of ``config`` without the checkpoint it may
    have been warm-started from: its sizes, and no ``init_from`` or ``vocab`` (the saved
    weights already hold the warm start)."""
    return {**{name: getattr(config, name) for name in MODEL_OPTIONS}, "init_from": None, "vocab": None}


def make_self_contained(agent: BaseAlgorithm) -> None:
    """Replace a warm-started agent's ``init_from`` and ``vocab`` by the sizes they resolved to.

    ``agent.save`` stores ``agent.policy_kwargs`` as they were given, and ``PPO.load`` builds the
    policy from them before setting the saved weights: with ``init_from`` there, loading needs
    the checkpoint at that path, though the saved weights already hold the warm start. Works for
    :class:`RNNLanguagePolicy` and ``RecurrentLanguagePolicy`` (their ``model_config``).
    """
    config = getattr(agent.policy, "model_config", None)
    if not isinstance(config, ModelConfig):
        raise IrlmError("make_self_contained needs an agent with an irlm_agents policy, got "
                        f"{type(agent.policy).__name__}")
    agent.policy_kwargs = {**agent.policy_kwargs, **standalone_options(config)}


class RNNFeaturesExtractor(BaseFeaturesExtractor):
    """Embeds the context window and runs the RNN; the features are its last output."""

    def __init__(self, observation_space: gym.spaces.Box, model: RNNLanguageModel) -> None:
        super().__init__(observation_space, features_dim=model.config.hidden_size)
        self.model = model

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        output, _ = self.model.features(token_ids(observations, self.model.config.vocab_size))
        return output[:, -1]


def check_spaces(policy: str, observation_space: gym.spaces.Space, action_space: gym.spaces.Space) -> None:
    """Refuse spaces that are not irlm/NextWord-v0's: one action per token, token-id observations."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise IrlmError(f"{policy} needs a Discrete action space (one action per token), got {action_space}")
    if not (
        isinstance(observation_space, gym.spaces.Box)
        and len(observation_space.shape) == 1
        and np.issubdtype(observation_space.dtype, np.integer)
    ):
        raise IrlmError(
            f"{policy} needs a 1-D integer Box observation (the context window of token "
            f"ids, as irlm/NextWord-v0 gives), got {observation_space}"
        )


def check_layout(policy: str, ortho_init: bool, net_arch: Any, share_features_extractor: bool,
                 kwargs: dict[str, Any]) -> None:
    """Refuse SB3 options that would add layers to, or re-initialise, the language model."""
    if ortho_init:
        raise IrlmError("ortho_init=True is not supported: it would overwrite the language model's weights")
    if net_arch:
        raise IrlmError(f"net_arch={net_arch!r} is not supported: the language model's head is the actor; size it with hidden_size")
    if not share_features_extractor:
        raise IrlmError("share_features_extractor=False is not supported: actor and critic share the RNN by design")
    if "features_extractor_class" in kwargs or "features_extractor_kwargs" in kwargs:
        raise IrlmError(f"{policy} builds its own features extractor; pass model sizes directly in policy_kwargs")


#: Where a warm start's vocabulary goes, for the error that asks for it.
PASS_VOCAB = "add it to policy_kwargs: dict(init_from=PATH, vocab=env.get_attr('vocab')[0])"


def model_config(vocab_size: int, options: dict[str, Any], init_from: str | Path | None,
                 vocab: Vocabulary | None) -> tuple[ModelConfig, RNNLanguageModel | None]:
    """Build the config from explicit options, or from the warm-start checkpoint.

    An option given explicitly that disagrees with the checkpoint is an error, not a silent
    override: the weights could not be loaded into a model of another shape.
    """
    given = {k: v for k, v in options.items() if v is not None}
    if init_from is None:
        return ModelConfig(vocab_size=vocab_size, **given), None
    model = load_warm_start(init_from, vocab, vocab_size, PASS_VOCAB)
    saved = model.config
    clashes = {k: (v, getattr(saved, k)) for k, v in given.items() if getattr(saved, k) != v}
    if clashes:
        listed = ", ".join(f"{k}={v!r} (checkpoint has {s!r})" for k, (v, s) in clashes.items())
        raise IrlmError(f"policy_kwargs disagree with checkpoint {str(init_from)!r}: {listed}; drop them to use the checkpoint's sizes")
    return saved, model


class RNNLanguagePolicy(ActorCriticPolicy):
    """Actor-critic policy hosting an ``RNNLanguageModel`` (see the module docstring).

    ``ortho_init`` defaults to ``False`` and cannot be switched on: SB3's orthogonal
    initialisation would overwrite the language model's output layer (and, with tied weights,
    its embedding), which also breaks warm starts.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        lr_schedule: Schedule,
        *,
        cell: str | None = None,
        embedding_dim: int | None = None,
        hidden_size: int | None = None,
        num_layers: int | None = None,
        dropout: float | None = None,
        tie_weights: bool | None = None,
        pad_id: int | None = None,
        init_from: str | Path | None = None,
        vocab: Vocabulary | None = None,
        ortho_init: bool = False,
        net_arch: list[int] | None = None,
        share_features_extractor: bool = True,
        **kwargs: Any,
    ) -> None:
        check_spaces("RNNLanguagePolicy", observation_space, action_space)
        check_layout("RNNLanguagePolicy", ortho_init, net_arch, share_features_extractor, kwargs)
        options = dict(
            cell=cell, embedding_dim=embedding_dim, hidden_size=hidden_size, num_layers=num_layers,
            dropout=dropout, tie_weights=tie_weights, pad_id=pad_id,
        )
        config, warm = model_config(int(action_space.n), options, init_from, vocab)
        self.model_config = config
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[],
            ortho_init=False,
            features_extractor_class=RNNFeaturesExtractor,
            features_extractor_kwargs={"model": RNNLanguageModel(config)},
            share_features_extractor=True,
            **kwargs,
        )
        if warm is not None:
            self.language_model.load_state_dict(warm.state_dict())

    @property
    def language_model(self) -> RNNLanguageModel:
        """The hosted model; training the policy trains it in place."""
        return self.features_extractor.model  # type: ignore[return-value]

    @property
    def lstm_actor(self) -> nn.Module:
        """What sb3-contrib's RecurrentPPO reads first from its policy: here, a pointer to the right one."""
        raise IrlmError(
            "RNNLanguagePolicy reads a context window and carries no hidden state, so RecurrentPPO cannot "
            "use it; use RecurrentPPO(RecurrentLanguagePolicy, env) (from irlm_agents.sb3.recurrent_policy) "
            "with an env made with context_length=1, or PPO(RNNLanguagePolicy, env)"
        )

    def make_features_extractor(self) -> BaseFeaturesExtractor:
        return RNNFeaturesExtractor(self.observation_space, **self.features_extractor_kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        """Actor = the model's own head over shared RNN features; critic = one linear layer.

        There is no separate ``action_net``: SB3 only uses one in the methods overridden below,
        which call ``language_model.head`` directly.
        """
        self.action_dist = TokenDistribution(int(self.action_space.n))
        self.value_net = nn.Linear(self.features_dim, 1)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for name in ("net_arch", "features_extractor_class", "features_extractor_kwargs", "ortho_init"):
            data.pop(name, None)
        data.update(standalone_options(self.model_config))
        return data

    def extract_features(self, obs: PyTorchObs, features_extractor: BaseFeaturesExtractor | None = None) -> torch.Tensor:  # type: ignore[override]
        # Skip SB3's preprocess_obs: it casts a Box observation to float; token ids must stay ids.
        return self.features_extractor(obs)  # type: ignore[arg-type]

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.extract_features(obs)
        actions, log_prob = draw_tokens(self.language_model.head(features), deterministic)
        return actions, self.value_net(features), log_prob

    def evaluate_actions(self, obs: PyTorchObs, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        features = self.extract_features(obs)
        log_prob, entropy = LogProbEntropy.apply(self.language_model.head(features), actions)
        return self.value_net(features), log_prob, entropy

    def get_distribution(self, obs: PyTorchObs) -> TokenDistribution:
        return self.action_dist.proba_distribution(self.language_model.head(self.extract_features(obs)))

    def predict_values(self, obs: PyTorchObs) -> torch.Tensor:
        return self.value_net(self.extract_features(obs))
