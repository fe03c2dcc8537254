"""``RecurrentLanguagePolicy``: the language model as a recurrent policy for sb3-contrib's RecurrentPPO.

``RNNLanguagePolicy`` sees a window of ``context_length`` tokens and re-runs the RNN over all of
them at every step. This policy reads one token per step (an env made with
``context_length=1``) and carries the RNN's hidden state from step to step, zeroed where an
episode starts, as the native agents and supervised training do: the RNN runs once per token.

sb3-contrib's plumbing is written for its own LSTMs: ``RecurrentPPO`` sizes the states from
``policy.lstm_actor`` (``num_layers``, ``hidden_size``), keeps an ``(h, c)`` pair for the actor
and another for the critic, stores them in its rollout buffer, and at each update replays the
rollout as sequences that start from the stored states, with ``episode_starts`` marking where a
state must be zeroed. This policy fills that protocol with the model's own RNN, unchanged:

* ``lstm`` cells carry their ``(h, c)``; ``gru`` and ``rnn`` cells carry ``h`` in the ``h`` slot
  and leave the ``c`` slot as given (zeros: sb3-contrib starts every state at zero);
* actor and critic share the RNN, so the critic's states are the actor's (the same tensors), and
  the value head is one linear layer on the RNN output, as in ``RNNLanguagePolicy``;
* a sequence is run in one fused RNN call when its only episode starts are at its first step,
  which is always so for sb3-contrib's buffer (it cuts sequences at episode starts) and for
  one-step rollouts; otherwise step by step, zeroing the states in between.

    from sb3_contrib import RecurrentPPO
    env = make_vec_env("irlm/NextWord-v0", n_envs=64, corpus="grammar", context_length=1)
    agent = RecurrentPPO(RecurrentLanguagePolicy, env, policy_kwargs=dict(cell="lstm", hidden_size=64))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from irlm_agents.lm.model import Hidden, RNNLanguageModel
from irlm_agents.sb3.distributions import LogProbEntropy, TokenDistribution, draw_tokens, token_ids
from irlm_agents.sb3.policy import check_layout, check_spaces, model_config, standalone_options
from irlm_env.errors import IrlmError
from irlm_env.vocabulary import Vocabulary

try:
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
    from sb3_contrib.common.recurrent.type_aliases import RNNStates
except ImportError as error:  # an optional dependency: say which extra brings it
    raise IrlmError(
        "RecurrentLanguagePolicy needs sb3-contrib; install it with pip install 'irlm-env[recurrent]'"
    ) from error

#: An sb3-contrib state slot pair: (h, c), each (num_layers, batch, hidden_size).
States = tuple[torch.Tensor, ...]

#: RecurrentActorCriticPolicy options for its own LSTMs, which this policy does not build.
LSTM_OPTIONS = ("lstm_hidden_size", "n_lstm_layers", "shared_lstm", "enable_critic_lstm", "lstm_kwargs")


class RecurrentRNNFeatures(BaseFeaturesExtractor):
    """Runs the model's RNN over token sequences from given states, zeroing them at episode starts."""

    def __init__(self, observation_space: gym.spaces.Box, model: RNNLanguageModel) -> None:
        super().__init__(observation_space, features_dim=model.config.hidden_size)
        self.model = model

    def forward(  # type: ignore[override]
        self, observations: torch.Tensor, states: States, episode_starts: torch.Tensor
    ) -> tuple[torch.Tensor, States]:
        """RNN outputs (N, H) and the final states, for N = sequences x steps observations.

        As in sb3-contrib, the batch holds ``n_seq = states[0].shape[1]`` sequences one after
        the other (sequence-major), and ``episode_starts[i]`` zeroes the state before step i.
        """
        model = self.model
        n_seq = states[0].shape[1]
        tokens = token_ids(observations, model.config.vocab_size).reshape(n_seq, -1)
        starts = episode_starts.reshape(n_seq, -1) > 0.5
        hidden: Hidden = (states[0], states[1]) if model.is_lstm else states[0]
        if tokens.shape[1] == 1 or not bool(starts[:, 1:].any()):
            output, hidden = model.features(tokens, model.reset_hidden(hidden, starts[:, 0]))
        else:
            steps = []
            for t in range(tokens.shape[1]):
                step, hidden = model.features(tokens[:, t : t + 1], model.reset_hidden(hidden, starts[:, t]))
                steps.append(step)
            output = torch.cat(steps, dim=1)
        new_states = hidden if isinstance(hidden, tuple) else (hidden, states[1])
        return output.reshape(-1, model.config.hidden_size), new_states


class RecurrentLanguagePolicy(RecurrentActorCriticPolicy):
    """Recurrent actor-critic hosting an ``RNNLanguageModel`` (see the module docstring).

    Model options go through ``policy_kwargs`` as for ``RNNLanguagePolicy`` (``cell``,
    ``embedding_dim``, ``hidden_size``, ``num_layers``, ``dropout``, ``tie_weights``,
    ``init_from`` with ``vocab``); sb3-contrib's LSTM options (``lstm_hidden_size``, ...) are refused, since
    the model's RNN is the recurrent part.
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
        check_spaces("RecurrentLanguagePolicy", observation_space, action_space)
        if observation_space.shape != (1,):
            raise IrlmError(
                "RecurrentLanguagePolicy reads one token per step and carries the rest in its hidden state; "
                f"make the env with context_length=1 (its observation has {observation_space.shape[0]} tokens; "
                "with rl_zoo3: --env-kwargs context_length:1)"
            )
        check_layout("RecurrentLanguagePolicy", ortho_init, net_arch, share_features_extractor, kwargs)
        given = sorted(name for name in LSTM_OPTIONS if name in kwargs)
        if given:
            raise IrlmError(
                f"{', '.join(given)}: RecurrentLanguagePolicy builds no LSTM of its own; the language model's "
                "RNN is the recurrent part, sized with cell, hidden_size and num_layers"
            )
        options = dict(
            cell=cell, embedding_dim=embedding_dim, hidden_size=hidden_size, num_layers=num_layers,
            dropout=dropout, tie_weights=tie_weights, pad_id=pad_id,
        )
        config, warm = model_config(int(action_space.n), options, init_from, vocab)
        self.model_config = config
        # Not RecurrentActorCriticPolicy.__init__: it would build two LSTMs and an MLP of its own.
        # What its methods read besides those (the predict() state shape) is set below.
        ActorCriticPolicy.__init__(
            self,
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[],
            ortho_init=False,
            features_extractor_class=RecurrentRNNFeatures,
            features_extractor_kwargs={"model": RNNLanguageModel(config)},
            share_features_extractor=True,
            **kwargs,
        )
        self.lstm_hidden_state_shape = (config.num_layers, 1, config.hidden_size)
        if warm is not None:
            self.language_model.load_state_dict(warm.state_dict())

    @property
    def language_model(self) -> RNNLanguageModel:
        """The hosted model; training the policy trains it in place."""
        return self.features_extractor.model  # type: ignore[return-value]

    @property
    def lstm_actor(self) -> nn.RNNBase:
        """The model's RNN, from which RecurrentPPO reads ``num_layers`` and ``hidden_size``."""
        return self.language_model.rnn

    def make_features_extractor(self) -> BaseFeaturesExtractor:
        return RecurrentRNNFeatures(self.observation_space, **self.features_extractor_kwargs)  # type: ignore[arg-type]

    def _build(self, lr_schedule: Schedule) -> None:
        """Actor = the model's own head; critic = one linear layer; both on the RNN output."""
        self.action_dist = TokenDistribution(int(self.action_space.n))
        self.value_net = nn.Linear(self.features_dim, 1)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for name in ("net_arch", "features_extractor_class", "features_extractor_kwargs", "ortho_init"):
            data.pop(name, None)
        data.update(standalone_options(self.model_config))
        return data

    def _features(self, obs: torch.Tensor, states: States, episode_starts: torch.Tensor) -> tuple[torch.Tensor, States]:
        return self.features_extractor(obs, states, episode_starts)  # type: ignore[no-any-return]

    def forward(  # type: ignore[override]
        self, obs: torch.Tensor, lstm_states: RNNStates | None = None, episode_starts: torch.Tensor | None = None,
        deterministic: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, RNNStates]:
        if lstm_states is None or episode_starts is None:  # PPO or A2C calls policy(obs) with no state
            raise IrlmError(
                "RecurrentLanguagePolicy carries a hidden state that only sb3-contrib's RecurrentPPO passes it; "
                "use RecurrentPPO(RecurrentLanguagePolicy, env), or PPO/A2C with RNNLanguagePolicy "
                "(irlm_agents.sb3), which reads a context window"
            )
        features, states = self._features(obs, lstm_states.pi, episode_starts)
        actions, log_prob = draw_tokens(self.language_model.head(features), deterministic)
        return actions, self.value_net(features), log_prob, RNNStates(states, states)

    def get_distribution(  # type: ignore[override]
        self, obs: torch.Tensor, lstm_states: States, episode_starts: torch.Tensor
    ) -> tuple[TokenDistribution, States]:
        features, states = self._features(obs, lstm_states, episode_starts)
        return self.action_dist.proba_distribution(self.language_model.head(features)), states

    def predict_values(  # type: ignore[override]
        self, obs: torch.Tensor, lstm_states: States, episode_starts: torch.Tensor
    ) -> torch.Tensor:
        return self.value_net(self._features(obs, lstm_states, episode_starts)[0])

    def evaluate_actions(  # type: ignore[override]
        self, obs: torch.Tensor, actions: torch.Tensor, lstm_states: RNNStates, episode_starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features, _ = self._features(obs, lstm_states.pi, episode_starts)
        log_prob, entropy = LogProbEntropy.apply(self.language_model.head(features), actions)
        return self.value_net(features), log_prob, entropy
