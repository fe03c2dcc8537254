"""Supervised reference: teacher-forced cross-entropy on the same model, stream and budget.

Every reinforcement-learning agent is judged against this one. It reads the same vector env as
the others (same streams, same episode starts, same token budget) but learns from the true next
token directly: full-information feedback. It never acts; the env is stepped with a fixed action
only to move its cursors, so it costs no forward pass during the rollout.

    python -m irlm_agents.supervised --help
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from irlm_agents.runs.args import TrainResult
from irlm_agents.native.estimators import cross_entropy_loss
from irlm_agents.native.rollout import NativeArgs, UpdateStats, build_setup, optimise, seed_everything, segment_features, train_loop


@dataclass
class Args(NativeArgs):
    """Supervised training needs nothing beyond the shared settings."""


def train(args: Args) -> TrainResult:
    seed_everything(args.seed)
    setup = build_setup(args)
    model, rollout = setup.model, setup.rollout
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)

    def update() -> UpdateStats:
        segment = rollout.collect(args.rollout_steps)
        features, final_hidden = segment_features(model, segment)
        logits = model.head(features)
        loss = cross_entropy_loss(logits, segment.targets)
        optimise(optimizer, loss, args.max_grad_norm)
        rollout.carry(final_hidden)
        accuracy = float((logits.detach().argmax(-1) == segment.targets).float().mean())
        return UpdateStats(tokens=segment.num_tokens, queries=0, reward=accuracy, accuracy=accuracy)

    return train_loop("supervised", args, setup, update)


if __name__ == "__main__":
    from irlm_agents.cli import agent_command

    agent_command("supervised").main(prog_name="python -m irlm_agents.supervised")
