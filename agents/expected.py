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

from irlm_agents.runs.args import TrainResult
from irlm_agents.native.estimators import expected_reward_loss
from irlm_agents.native.rollout import (
    NativeArgs,
    UpdateStats,
    build_setup,
    optimise,
    sample_candidates,
    seed_everything,
    segment_features,
    train_loop,
)
from irlm_env.errors import IrlmError, suggest

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


def train(args: Args) -> TrainResult:
    seed_everything(args.seed)
    setup = build_setup(args)
    model, rollout, reward_fn = setup.model, setup.rollout, setup.env.reward_fn
    if not reward_fn.has_table:
        raise IrlmError(
            f"reward {args.reward!r} provides no reward table, so the exact gradient is unavailable; "
            "use a reward with a table (e.g. exact) or a sampling agent (group, reinforce)"
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)

    def sampler(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return sample_candidates(logits, 1, replacement=True, temperature=1.0, probs=probs)

    def update() -> UpdateStats:
        segment = rollout.collect(args.rollout_steps, sampler)
        assert segment.actions is not None and segment.rewards is not None
        contexts = segment.tokens.reshape(-1, 1).cpu().numpy()
        table = reward_fn.table(segment.targets.reshape(-1).cpu().numpy(), contexts)
        table_t = torch.from_numpy(np.asarray(table, dtype=np.float32)).to(setup.device)
        features, final_hidden = segment_features(model, segment)
        logits = model.head(features).reshape(table_t.shape)
        loss = expected_reward_loss(logits, table_t, log=args.objective == "log_er")
        optimise(optimizer, loss, args.max_grad_norm)
        rollout.carry(final_hidden)
        return UpdateStats(
            tokens=segment.num_tokens,
            queries=int(table_t.numel()),
            reward=float(segment.rewards.mean()),
            accuracy=float((segment.actions[..., 0] == segment.targets).float().mean()),
        )

    return train_loop("expected", args, setup, update)


if __name__ == "__main__":
    from irlm_agents.cli import agent_command

    agent_command("expected").main(prog_name="python -m irlm_agents.expected")
