"""MIXER: a cross-entropy warm start annealed into REINFORCE (Ranzato et al. 2016).

MIXER trains the first part of every sequence with cross-entropy and the rest with REINFORCE,
moving the boundary towards the start as training goes on. Here a "sequence" is one segment of
``rollout_steps`` steps: for the first ``xe_tokens`` tokens every step is teacher-forced; after
that the last Δ steps of each segment use REINFORCE with a learned critic baseline, Δ growing
linearly from 0 to the whole segment over ``anneal_tokens`` tokens. After the anneal the agent
is pure REINFORCE (bandit feedback); before it, it uses the true targets. Only the loss follows
MIXER: with the default ``--feed truth`` the model still reads the true text at its REINFORCE
steps, where MIXER reads its own samples; ``--feed action`` gives that input side too.

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

from irlm_agents.lm.model import RNNLanguageModel
from irlm_agents.native.estimators import reinforce_weights
from irlm_agents.native.gradients import Workspace, head_surrogate, policy_gradient_logits
from irlm_agents.native.rollout import Segment
from irlm_agents.native.training import (
    NativeArgs,
    Progress,
    build,
    finish_run,
    log_update,
    make_optimizer,
    open_run,
    optimise,
    policy_sampler,
    seed_everything,
)
from irlm_agents.runs.args import TrainResult
from irlm_env.errors import IrlmError
from irlm_env.options import check_int


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
            check_int(name, getattr(self, name), minimum=0)
        # Training moves a segment (n_envs x rollout_steps tokens) at a time, and a segment's share
        # of REINFORCE is set where it starts: the last one must start late enough to have some.
        segment = self.n_envs * self.rollout_steps
        last_start = (math.ceil(self.total_tokens / segment) - 1) * segment
        if reinforce_steps(last_start, self) == 0:
            raise IrlmError(
                f"with xe_tokens={self.xe_tokens} and anneal_tokens={self.anneal_tokens}, REINFORCE would never "
                f"start: training moves in segments of n_envs x rollout_steps = {segment} tokens, and the last "
                f"of total_tokens={self.total_tokens} starts at {last_start}, so the run would be supervised "
                "training; lower --xe-tokens or raise --total-tokens"
            )


def reinforce_steps(tokens: int, args: Args) -> int:
    """Δ: how many final steps of a segment use REINFORCE after ``tokens`` training tokens."""
    if tokens < args.xe_tokens:
        return 0
    if args.anneal_tokens == 0:
        return args.rollout_steps
    progress = min(1.0, (tokens - args.xe_tokens) / args.anneal_tokens)
    return math.ceil(progress * args.rollout_steps)


def mixer_loss(
    args: Args, model: RNNLanguageModel, critic: nn.Linear, segment: Segment, features: torch.Tensor,
    delta: int, scratch: Workspace,
) -> torch.Tensor:
    """The segment's loss: cross-entropy on the first ``T - delta`` steps, REINFORCE with the
    critic's baseline on the last ``delta`` (and the critic's squared error there)."""
    rewards = segment.rewards[..., 0]
    values = critic(features.detach())[..., 0]
    is_rl = torch.arange(args.rollout_steps, device=rewards.device) >= args.rollout_steps - delta
    is_rl = is_rl.expand_as(rewards)
    actions = torch.where(is_rl, segment.actions[..., 0], segment.targets).reshape(-1, 1)
    weights = torch.where(is_rl, reinforce_weights(rewards, values.detach()), torch.ones_like(rewards))
    probs = segment.probs.reshape(actions.shape[0], -1)
    direction = policy_gradient_logits(probs, actions, weights.reshape(-1, 1), out=scratch.rows(actions.shape[0]))
    if args.entropy_coef:
        direction += policy_gradient_logits(
            probs, actions, torch.zeros_like(weights).reshape(-1, 1), entropy_coef=args.entropy_coef
        ) * is_rl.reshape(-1, 1)
    loss = args.critic_coef * F.mse_loss(values[is_rl], rewards[is_rl]) if delta else torch.zeros((), device=rewards.device)
    return loss - head_surrogate(model, features, direction.div_(rewards.numel()))


def train(args: Args) -> TrainResult:
    seed_everything(args.seed)
    setup = build(args)
    model, rollout = setup.model, setup.rollout
    critic = nn.Linear(model.config.hidden_size, 1).to(setup.device)
    setup.share.broadcast_module(critic)
    optimizer = make_optimizer([*model.parameters(), *critic.parameters()], args)
    scratch = Workspace(model.config.vocab_size, setup.device)
    progress = Progress(args.total_tokens, args.eval_every, setup.share)

    sampler = policy_sampler(setup.share)

    with open_run("mixer", args, setup) as run:
        while progress.tokens < args.total_tokens:
            with progress.timed():
                segment = rollout.collect(args.rollout_steps, sampler)
                delta = reinforce_steps(progress.tokens, args)
                loss = mixer_loss(args, model, critic, segment, rollout.features(segment), delta, scratch)
                optimise(optimizer, loss, args.max_grad_norm, setup)
            # REINFORCE steps used their reward; cross-entropy steps used the true token instead.
            reward = float(segment.rewards[..., 0].mean())
            progress.add(segment.num_tokens, delta * rollout.num_envs, reward=reward, accuracy=segment.accuracy)
            log_update(run, progress, setup, args)
        return finish_run(run, progress, setup, args)


if __name__ == "__main__":
    from irlm_agents.cli import run_agent

    run_agent("mixer")
