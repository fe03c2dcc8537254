"""Exact expected-reward gradient over the whole vocabulary, from the reward's table.

For reward plugins that can tabulate the reward of every token (``reward.has_table``), the
gradient of E_a~π[R(a)] needs no sampling at all: it is Σ_a R(a) ∇π(a), zero variance. Two
objectives: ``er`` maximises E[R]; ``log_er`` maximises log E[R].

Say it plainly: with the 0/1 ``exact`` reward, log E[R] = log π(target), so ``log_er`` *is*
cross-entropy. The table reveals the target: this is full-information feedback, not bandit
feedback, and it is no evidence that reinforcement learning from rewards works. It is here as
the zero-variance limit of the sampled estimators, and for graded rewards (e.g. similarity)
whose table is not a one-hot.

The agent still acts (it samples from π) so its training reward is meaningful.

    python -m irlm_agents.expected --corpus grammar --objective er
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from irlm_agents.native.estimators import expected_reward_loss
from irlm_agents.native.rollout import Segment, float32_rewards
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
from irlm_env.errors import IrlmError, suggest
from irlm_env.rewards import CheckedReward

OBJECTIVES = ("er", "log_er")


@dataclass
class Args(NativeArgs):
    """Exact-gradient settings."""

    objective: str = field(
        default="er", metadata={"help": "er (maximise E[R]) or log_er (maximise log E[R]; cross-entropy for 0/1)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.objective not in OBJECTIVES:
            raise IrlmError(f"unknown objective {self.objective!r}; {suggest(self.objective, OBJECTIVES)}")


def reward_table(reward: CheckedReward, segment: Segment) -> torch.Tensor:
    """(N·T, V): the reward of every token at every step of the segment, from the reward's table.

    The contexts are the ones the env handed the reward (``collect(keep_contexts=True)``), so a
    reward that asks for the true history gets it here too, whatever the env showed the agent.
    """
    if segment.reward_contexts is None:
        raise ValueError("reward_table needs a segment collected with keep_contexts=True")
    contexts = segment.reward_contexts.reshape(-1, segment.reward_contexts.shape[-1])
    table = reward.table(segment.targets.reshape(-1).cpu().numpy(), contexts)
    return torch.from_numpy(float32_rewards(table)).to(segment.targets.device)


def check_log_table(args: Args, table: np.ndarray) -> None:
    """Refuse a negative reward for ``log_er``: log E[R] is undefined where E[R] can be below 0."""
    if args.objective == "log_er" and bool((table < 0).any()):
        raise IrlmError(
            f"the log_er objective needs rewards >= 0, but reward {args.reward!r} pays {float(table.min()):g}; "
            "use --objective er for signed rewards"
        )


def train(args: Args) -> TrainResult:
    seed_everything(args.seed)
    setup = build(args)
    model, rollout = setup.model, setup.rollout
    # A reward may define table() and still answer None ("cannot be tabulated"): ask it once here,
    # on the first step's contexts, rather than fail at the first update with the run half written.
    contexts = rollout.env.reward_contexts()
    first = setup.reward.table(rollout.env.targets(), contexts) if setup.reward.has_table else None
    if first is None:
        raise IrlmError(
            f"reward {args.reward!r} provides no reward table, so the exact gradient is unavailable; "
            "use a reward with a table (e.g. exact) or a sampling agent (group, reinforce)"
        )
    check_log_table(args, np.asarray(first))
    optimizer = make_optimizer(model.parameters(), args)
    progress = Progress(args.total_tokens, args.eval_every, setup.share)

    sampler = policy_sampler(setup.share)

    with open_run("expected", args, setup) as run:
        while progress.tokens < args.total_tokens:
            with progress.timed():
                segment = rollout.collect(args.rollout_steps, sampler, keep_contexts=True)
                table = reward_table(setup.reward, segment)  # log_er checks its signs itself
                logits = model.head(rollout.features(segment)).reshape(table.shape)
                if args.objective == "log_er":
                    # The mean over contexts with a signal, whose count differs between processes.
                    with_signal = setup.share.average((table.sum(-1) > 0).sum().to(table.dtype))
                    loss = expected_reward_loss(logits, table, log=True, signal_contexts=with_signal)
                else:
                    loss = expected_reward_loss(logits, table)
                optimise(optimizer, loss, args.max_grad_norm, setup)
            reward = float(segment.rewards.mean())
            progress.add(segment.num_tokens, table.numel(), reward=reward, accuracy=segment.accuracy)
            log_update(run, progress, setup, args)
        return finish_run(run, progress, setup, args)


if __name__ == "__main__":
    from irlm_agents.cli import run_agent

    run_agent("expected")
