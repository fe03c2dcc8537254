"""Supervised reference: cross-entropy on the true next token, same model, stream and budget.

Every reinforcement-learning agent is judged against this one. It reads the same vector env as
the others (same streams, same episode starts, same token budget) but learns from the true next
token directly: full-information feedback. With ``feed="truth"`` (teacher forcing) it never
acts; the env is stepped with a fixed action only to move its cursors, so it costs no forward
pass during the rollout. With ``feed="action"`` it steps the env with a token sampled from its
own distribution, which the env shows as the next observation (always, or with probability
``feed_probability``: scheduled sampling, Bengio et al. 2015); the loss is still the
cross-entropy on the true targets, over the RNN re-run on the tokens actually shown.

``label_fraction`` below 1 makes it a control for the bandit agents: it learns from a random
fraction of the tokens only, as many as a bandit agent is told (its hits), but drawn at random
rather than where the model already ranks the true token high. The gap between this control and
a bandit agent with the same number of revealed tokens is the cost of *which* tokens the
feedback reveals; the gap to full supervision, the cost of how many.

    python -m irlm_agents.supervised --help
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from irlm_agents.native.estimators import cross_entropy_loss
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


@dataclass
class Args(NativeArgs):
    """Supervised settings: only how many of the tokens are labelled."""

    label_fraction: float = field(
        default=1.0,
        metadata={"help": "learn from this random fraction of the tokens only (a control for bandit agents)"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        fraction = self.label_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise IrlmError(f"label_fraction must be in (0, 1], got {fraction!r}; 1 labels every token")


def train(args: Args) -> TrainResult:
    seed_everything(args.seed)
    setup = build(args)
    model, rollout = setup.model, setup.rollout
    optimizer = make_optimizer(model.parameters(), args)
    progress = Progress(args.total_tokens, args.eval_every, setup.share)
    # Act only where the env shows actions: otherwise the fixed action costs no forward pass.
    sampler = policy_sampler(setup.share) if rollout.env.setup.feed_probability > 0 else None

    with open_run("supervised", args, setup) as run:
        while progress.tokens < args.total_tokens:
            with progress.timed():
                segment = rollout.collect(args.rollout_steps, sampler)
                logits = model.head(rollout.features(segment))
                keep = None
                if args.label_fraction < 1:
                    # The global batch's draw, as for sampling: the labels kept do not depend on
                    # the number of processes, and each process keeps its own streams' share.
                    streams, steps = segment.targets.shape
                    keep = setup.share.uniform(streams, steps, logits.device, torch.float32) < args.label_fraction
                loss = cross_entropy_loss(logits, segment.targets, keep)
                optimise(optimizer, loss, args.max_grad_norm, setup)
                accuracy = float((logits.detach().argmax(-1) == segment.targets).float().mean())
            progress.add(segment.num_tokens, 0, reward=accuracy, accuracy=accuracy)
            log_update(run, progress, setup, args)
        return finish_run(run, progress, setup, args)


if __name__ == "__main__":
    from irlm_agents.cli import run_agent

    run_agent("supervised")
