"""REINFORCE, the seed's rule done right: θ += α (R - b) ∇log π(a) with a sampled action a.

The policy is the recurrent language model: one token in per step, hidden state carried along
the stream and reset at episode starts. Each round plays ``rollout_steps`` steps on ``n_envs``
streams, sampling an action from π at every step (never the argmax) and receiving its reward
from the env: bandit feedback, one reward query per token. The update is truncated
backpropagation through time over the segment: the RNN is re-run in one fused pass (the
observations follow the true text whatever the agent chose), and the gradient enters the head
through the probabilities the rollout already computed, so the vocabulary-sized head runs once
per token, not twice, and no log-sum over the vocabulary is materialised for the update.

Baselines: ``none`` is the seed's exact rule; ``mean`` subtracts a moving average of the reward;
``critic`` subtracts a learned value V(h_t) from a linear head on the (detached) hidden state,
as in MIXER (Ranzato et al. 2016).

    python -m irlm_agents.reinforce --corpus grammar --total-tokens 200000 --baseline critic
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from irlm_agents.runs.args import TrainResult
from irlm_agents.native.estimators import BASELINES, policy_gradient_logits, reinforce_weights
from irlm_agents.native.rollout import (
    NativeArgs,
    UpdateStats,
    build_setup,
    head_surrogate,
    optimise,
    sample_candidates,
    seed_everything,
    segment_features,
    train_loop,
)
from irlm_env.errors import IrlmError, suggest


@dataclass
class Args(NativeArgs):
    """REINFORCE settings."""

    baseline: str = field(default="critic", metadata={"help": "reward baseline: none (the seed rule), mean or critic"})
    baseline_decay: float = field(
        default=0.99, metadata={"help": "mean baseline: weight of the old average in the moving average"}
    )
    critic_coef: float = field(default=1.0, metadata={"help": "critic baseline: weight of its squared-error loss"})
    temperature: float = field(
        default=1.0, metadata={"help": "sample actions from softmax(logits / temperature); must be > 0"}
    )
    entropy_coef: float = field(default=0.0, metadata={"help": "entropy bonus weight (exploration)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.baseline not in BASELINES:
            raise IrlmError(f"unknown baseline {self.baseline!r}; {suggest(self.baseline, BASELINES)}")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise IrlmError(f"baseline_decay must be in [0, 1), got {self.baseline_decay!r}")
        if not self.temperature > 0:
            raise IrlmError(f"temperature must be > 0 for sampling, got {self.temperature!r}")


def train(args: Args) -> TrainResult:
    seed_everything(args.seed)
    setup = build_setup(args)
    model, rollout = setup.model, setup.rollout
    critic = nn.Linear(model.config.hidden_size, 1).to(setup.device) if args.baseline == "critic" else None
    params = [*model.parameters(), *(critic.parameters() if critic is not None else ())]
    optimizer = torch.optim.Adam(params, lr=args.learning_rate)
    mean_reward = torch.zeros((), device=setup.device)

    def sampler(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return sample_candidates(logits, 1, replacement=True, temperature=args.temperature, probs=probs)

    def update() -> UpdateStats:
        nonlocal mean_reward
        segment = rollout.collect(args.rollout_steps, sampler)
        assert segment.actions is not None and segment.rewards is not None and segment.probs is not None
        features, final_hidden = segment_features(model, segment)
        rewards = segment.rewards[..., 0]
        loss = torch.zeros((), device=setup.device)
        if critic is not None:
            values = critic(features.detach())[..., 0]
            loss = args.critic_coef * F.mse_loss(values, rewards)
            baseline: torch.Tensor | float = values.detach()
        elif args.baseline == "mean":
            baseline = mean_reward
            mean_reward = args.baseline_decay * mean_reward + (1 - args.baseline_decay) * rewards.mean()
        else:
            baseline = 0.0
        weights = reinforce_weights(rewards, baseline).reshape(-1, 1)
        vocab = segment.probs.shape[-1]
        probs = segment.probs.reshape(-1, vocab)
        # The rollout's probabilities are not needed after this: without the entropy term the
        # direction overwrites them.
        direction = policy_gradient_logits(
            probs,
            segment.actions.reshape(-1, 1),
            weights,
            entropy_coef=args.entropy_coef,
            scale=1 / weights.shape[0],
            out=rollout.workspace(probs.shape[0]) if args.entropy_coef else probs,
        )
        loss = loss - head_surrogate(model, features, direction)
        optimise(optimizer, loss, args.max_grad_norm)
        rollout.carry(final_hidden)
        hits = float((segment.actions[..., 0] == segment.targets).float().mean())
        return UpdateStats(tokens=segment.num_tokens, queries=segment.num_tokens, reward=float(rewards.mean()), accuracy=hits)

    return train_loop("reinforce", args, setup, update)


if __name__ == "__main__":
    from irlm_agents.cli import agent_command

    agent_command("reinforce").main(prog_name="python -m irlm_agents.reinforce")
