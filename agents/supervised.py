"""Supervised reference: cross-entropy on the true next token, same model, stream and budget.

Every reinforcement-learning agent is judged against this one. It reads the same vector env as
the others (same streams, same episode starts, same token budget) but learns from the true next
token directly: full-information feedback. With ``feed="truth"`` (teacher forcing) it never
acts; the env is stepped with a fixed action only to move its cursors, so it costs no forward
pass during the rollout. With ``feed="action"`` it steps the env with a token sampled from its
own distribution, which the env shows as the next observation (always, or with probability
``feed_probability``: scheduled sampling, Bengio et al. 2015); the loss is still the
cross-entropy on the true targets, over the RNN re-run on the tokens actually shown.

    python -m irlm_agents.supervised --help
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from irlm_agents.native.estimators import cross_entropy_loss
from irlm_agents.native.training import (
    NativeArgs,
    Progress,
    build,
    finish_run,
    log_update,
    open_run,
    optimise,
    policy_sampler,
    seed_everything,
)
from irlm_agents.runs.args import TrainResult


@dataclass
class Args(NativeArgs):
    """Supervised training needs nothing beyond the shared settings."""


def train(args: Args) -> TrainResult:
    seed_everything(args.seed)
    setup = build(args)
    model, rollout = setup.model, setup.rollout
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    progress = Progress(args.total_tokens, args.eval_every, setup.share)
    # Act only where the env shows actions: otherwise the fixed action costs no forward pass.
    sampler = policy_sampler(setup.share) if rollout.env.setup.feed_probability > 0 else None

    with open_run("supervised", args, setup) as run:
        while progress.tokens < args.total_tokens:
            with progress.timed():
                segment = rollout.collect(args.rollout_steps, sampler)
                logits = model.head(rollout.features(segment))
                optimise(optimizer, cross_entropy_loss(logits, segment.targets), args.max_grad_norm, setup.share)
                accuracy = float((logits.detach().argmax(-1) == segment.targets).float().mean())
            progress.add(segment.num_tokens, 0, reward=accuracy, accuracy=accuracy)
            log_update(run, progress, setup, args)
        return finish_run(run, progress, setup, args)


if __name__ == "__main__":
    from irlm_agents.cli import run_agent

    run_agent("supervised")
