"""REINFORCE, the rule this project started from, done right: θ += α (R - b) ∇log π(a), a sampled.

The policy is the recurrent language model: one token in per step, hidden state carried along
the stream and reset at episode starts. Each round plays ``rollout_steps`` steps on ``n_envs``
streams, sampling an action from π at every step (never the argmax) and receiving its reward
from the env: bandit feedback, one reward query per token. The update is truncated
backpropagation through time over the segment: the RNN is re-run in one fused pass over the
tokens the env showed (the true text, or with ``--feed action`` the agent's own sampled
actions), and the gradient enters the head through the probabilities the rollout already
computed, so the vocabulary-sized head runs once per token, not twice, and no log-sum over the
vocabulary is materialised for the update.

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

from irlm_agents.lm.sampling import sample_candidates
from irlm_agents.native.estimators import BASELINES, importance_ratios, reinforce_weights
from irlm_agents.native.distributed import Share
from irlm_agents.native.gradients import Workspace, head_surrogate, policy_gradient_logits
from irlm_agents.native.training import (
    NativeArgs,
    Progress,
    build,
    finish_run,
    log_update,
    make_optimizer,
    open_run,
    optimise,
    seed_everything,
)
from irlm_agents.runs.args import TrainResult
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


class Baseline:
    """The ``b`` of ``R - b``: zero (the seed's rule), a moving average of the reward, or a critic.

    The critic is a linear value head V(h_t) on the detached hidden state, trained by squared
    error alongside the policy (its parameters go to the same optimizer). The moving average is
    of the whole batch's mean reward, over all processes under torchrun.
    """

    def __init__(self, args: Args, hidden_size: int, share: Share) -> None:
        self.kind = args.baseline
        self.share = share
        self.decay = args.baseline_decay
        self.critic_coef = args.critic_coef
        self.critic = nn.Linear(hidden_size, 1).to(share.device) if args.baseline == "critic" else None
        if self.critic is not None:
            share.broadcast_module(self.critic)
        self.mean = torch.zeros((), device=share.device)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.critic.parameters()) if self.critic is not None else []

    def __call__(self, features: torch.Tensor, rewards: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor]:
        """The baseline for ``rewards`` (N, T) and the critic's loss (zero without a critic)."""
        if self.critic is not None:
            values = self.critic(features.detach())[..., 0]
            return values.detach(), self.critic_coef * F.mse_loss(values, rewards)
        loss = torch.zeros((), device=rewards.device)
        if self.kind == "mean":
            baseline = self.mean
            self.mean = self.decay * self.mean + (1 - self.decay) * self.share.average(rewards.mean())
            return baseline, loss
        return 0.0, loss


def train(args: Args) -> TrainResult:
    seed_everything(args.seed)
    setup = build(args)
    model, rollout = setup.model, setup.rollout
    baseline = Baseline(args, model.config.hidden_size, setup.share)
    optimizer = make_optimizer([*model.parameters(), *baseline.parameters()], args)
    scratch = Workspace(model.config.vocab_size, setup.device)
    progress = Progress(args.total_tokens, args.eval_every, setup.share)

    ratios: list[torch.Tensor] = []  # π(a)/π_T(a) of each step's action, when proposing at T != 1

    def sampler(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        actions = sample_candidates(
            logits, 1, replacement=True, temperature=args.temperature, probs=probs, uniform=setup.share.uniform
        )
        if args.temperature != 1:
            ratios.append(importance_ratios(logits, actions, args.temperature))
        return actions

    with open_run("reinforce", args, setup) as run:
        while progress.tokens < args.total_tokens:
            with progress.timed():
                segment = rollout.collect(args.rollout_steps, sampler)
                features = rollout.features(segment)
                rewards = segment.rewards[..., 0]
                b, critic_loss = baseline(features, rewards)
                contexts = rewards.numel()
                probs, actions = segment.probs.reshape(contexts, -1), segment.actions.reshape(contexts, 1)
                weights = reinforce_weights(rewards, b).reshape(contexts, 1)
                if ratios:
                    weights = weights * torch.stack(ratios, 1).reshape(contexts, 1)
                    ratios.clear()
                direction = policy_gradient_logits(
                    probs,
                    actions,
                    weights,
                    entropy_coef=args.entropy_coef,
                    scale=1 / contexts,
                    out=scratch.rows(contexts),
                )
                loss = critic_loss - head_surrogate(model, features, direction)
                optimise(optimizer, loss, args.max_grad_norm, setup)
            reward = float(rewards.mean())
            progress.add(segment.num_tokens, segment.num_tokens, reward=reward, accuracy=segment.accuracy)
            log_update(run, progress, setup, args)
        return finish_run(run, progress, setup, args)


if __name__ == "__main__":
    from irlm_agents.cli import run_agent

    run_agent("reinforce")
