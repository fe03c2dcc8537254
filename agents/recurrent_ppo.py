"""Recurrent PPO (sb3-contrib) training the RNN language model as a recurrent policy.

The env shows one token per step and the policy carries the RNN's hidden state along each
stream, reset at episode starts (``RecurrentLanguagePolicy``), so the RNN runs once per token
instead of once per token of a window. Each update replays the rollout as sequences of
``n_steps`` tokens from the states stored during the rollout. The discount defaults to 0: an
action never changes later rewards (the text moves on regardless). Run it with no arguments for
a short run on the default corpus::

    python -m irlm_agents.recurrent_ppo
    irlm train recurrent-ppo --corpus grammar --total-tokens 20000
"""

from __future__ import annotations

from dataclasses import dataclass, field

from irlm_agents.runs.args import TrainArgs, TrainResult, default
from irlm_agents.sb3.args import check_algorithm_settings
from irlm_agents.sb3.training import train_sb3


@dataclass
class Args(TrainArgs):
    """Recurrent PPO settings on top of the shared ones."""

    # A short default budget, so running the file with no arguments finishes in minutes on a CPU.
    total_tokens: int = default("total_tokens", 30_000)
    eval_every: int = default("eval_every", 10_000)
    eval_tokens: int = default("eval_tokens", 5_000)
    # Without it a policy over thousands of words almost never samples a rewarded one.
    unigram_init: bool = default("unigram_init", True)
    n_steps: int = field(
        default=32, metadata={"help": "env steps per stream per rollout (the length of the replayed sequences)"}
    )
    batch_size: int = field(default=512, metadata={"help": "minibatch size (tokens) of each gradient step"})
    n_epochs: int = field(default=4, metadata={"help": "passes over each rollout"})
    gamma: float = field(default=0.0, metadata={"help": "discount; 0 suits immediate rewards"})
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda (irrelevant when gamma is 0)"})
    clip_range: float = field(default=0.2, metadata={"help": "PPO policy ratio clip"})
    ent_coef: float = field(
        default=0.01,
        metadata={"help": "entropy bonus; keeps sampling alive so the policy does not lock onto a wrong word early"},
    )
    vf_coef: float = field(default=0.5, metadata={"help": "value loss coefficient"})
    max_grad_norm: float = field(default=0.5, metadata={"help": "gradient norm clip"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_algorithm_settings(self)


def train(args: Args) -> TrainResult:
    # Here, not at the top: sb3-contrib is optional (pip install 'irlm-env[recurrent]'), and
    # `irlm train --help` imports every agent file to list it; without sb3-contrib the import
    # below is a one-line error naming the extra.
    from irlm_agents.sb3.recurrent_policy import RecurrentLanguagePolicy
    from sb3_contrib import RecurrentPPO

    return train_sb3(
        "recurrent-ppo",
        RecurrentPPO,
        RecurrentLanguagePolicy,
        args,
        None,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        n_epochs=args.n_epochs,
        gamma=args.gamma,
        gae_lambda=args.gae_lambda,
        clip_range=args.clip_range,
        ent_coef=args.ent_coef,
        vf_coef=args.vf_coef,
        max_grad_norm=args.max_grad_norm,
    )


if __name__ == "__main__":
    from irlm_agents.cli import run_agent

    run_agent("recurrent-ppo")
