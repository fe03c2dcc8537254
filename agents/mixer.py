"""MIXER: a cross-entropy warm start annealed into REINFORCE (Ranzato et al. 2016).

MIXER trains the first part of every sequence with cross-entropy and the rest with REINFORCE,
moving the boundary towards the start as training goes on. Here a "sequence" is one segment of
``rollout_steps`` steps: for the first ``xe_tokens`` tokens every step is teacher-forced; after
that the last Δ steps of each segment use REINFORCE with a learned critic baseline, Δ growing
linearly from 0 to the whole segment over ``anneal_tokens`` tokens. After the anneal the agent
is pure REINFORCE (bandit feedback); before it, it uses the true targets.

Both kinds of step share one backward pass: a teacher-forced step contributes
``onehot(y) - π`` and a REINFORCE step ``(R - V) (onehot(a) - π)`` to the logit gradient, so the
rollout's probabilities are reused for both.

    python -m irlm_agents.mixer --corpus grammar --xe-tokens 20000 --anneal-tokens 40000
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from irlm_agents.runs.args import TrainResult
from irlm_agents.native.estimators import policy_gradient_logits, reinforce_weights
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
from irlm_env.errors import IrlmError


@dataclass
class Args(NativeArgs):
    """MIXER schedule settings."""

    xe_tokens: int = field(default=50_000, metadata={"help": "tokens of pure cross-entropy warm start"})
    anneal_tokens: int = field(
        default=100_000, metadata={"help": "tokens over which REINFORCE takes over the whole segment after warm start"}
    )
    critic_coef: float = field(default=1.0, metadata={"help": "weight of the critic's squared-error loss"})
    entropy_coef: float = field(default=0.0, metadata={"help": "entropy bonus weight on REINFORCE steps"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("xe_tokens", "anneal_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise IrlmError(f"{name} must be a non-negative integer, got {value!r}")


def reinforce_steps(tokens: int, args: Args) -> int:
    """Δ: how many final steps of a segment use REINFORCE after ``tokens`` training tokens."""
    if tokens < args.xe_tokens:
        return 0
    if args.anneal_tokens == 0:
        return args.rollout_steps
    progress = min(1.0, (tokens - args.xe_tokens) / args.anneal_tokens)
    return math.ceil(progress * args.rollout_steps)


def train(args: Args) -> TrainResult:
    seed_everything(args.seed)
    setup = build_setup(args)
    model, rollout = setup.model, setup.rollout
    critic = nn.Linear(model.config.hidden_size, 1).to(setup.device)
    optimizer = torch.optim.Adam([*model.parameters(), *critic.parameters()], lr=args.learning_rate)
    tokens_seen = 0

    def sampler(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return sample_candidates(logits, 1, replacement=True, temperature=1.0, probs=probs)

    def update() -> UpdateStats:
        nonlocal tokens_seen
        segment = rollout.collect(args.rollout_steps, sampler)
        assert segment.actions is not None and segment.rewards is not None and segment.probs is not None
        features, final_hidden = segment_features(model, segment)
        rewards = segment.rewards[..., 0]
        values = critic(features.detach())[..., 0]
        delta = reinforce_steps(tokens_seen, args)
        is_rl = torch.arange(args.rollout_steps, device=setup.device) >= args.rollout_steps - delta
        is_rl = is_rl.expand_as(rewards)
        actions = torch.where(is_rl, segment.actions[..., 0], segment.targets)
        weights = torch.where(is_rl, reinforce_weights(rewards, values.detach()), torch.ones_like(rewards))
        vocab = segment.probs.shape[-1]
        direction = policy_gradient_logits(
            segment.probs.reshape(-1, vocab), actions.reshape(-1, 1), weights.reshape(-1, 1)
        )
        if args.entropy_coef:
            direction += policy_gradient_logits(
                segment.probs.reshape(-1, vocab),
                actions.reshape(-1, 1),
                torch.zeros_like(weights).reshape(-1, 1),
                entropy_coef=args.entropy_coef,
            ) * is_rl.reshape(-1, 1)
        loss = args.critic_coef * F.mse_loss(values[is_rl], rewards[is_rl]) if delta else torch.zeros((), device=setup.device)
        loss = loss - head_surrogate(model, features, direction / rewards.numel())
        optimise(optimizer, loss, args.max_grad_norm)
        rollout.carry(final_hidden)
        tokens_seen += segment.num_tokens
        return UpdateStats(
            tokens=segment.num_tokens,
            queries=int(is_rl.sum()),
            reward=float(rewards.mean()),
            accuracy=float((segment.actions[..., 0] == segment.targets).float().mean()),
        )

    return train_loop("mixer", args, setup, update)


if __name__ == "__main__":
    from irlm_agents.cli import agent_command

    agent_command("mixer").main(prog_name="python -m irlm_agents.mixer")
