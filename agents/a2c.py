"""A2C (Stable-Baselines3) training the RNN language model as its policy.

One gradient step per short rollout, no minibatches or epochs: cheaper per token than PPO. The
discount defaults to 0 because rewards are immediate (the text moves on whatever the action).
Adam replaces SB3's default RMSprop, which is unstable at language-model learning rates. Run it
with no arguments for a short run on the default corpus::

    python -m irlm_agents.a2c
    irlm train a2c --corpus grammar --total-tokens 20000
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stable_baselines3 import A2C

from irlm_agents.runs.args import TrainResult, default
from irlm_agents.sb3 import RNNLanguagePolicy
from irlm_agents.sb3.args import SB3Args
from irlm_agents.sb3.training import train_sb3


@dataclass
class Args(SB3Args):
    """A2C settings on top of the shared ones."""

    # A short default budget, so running the file with no arguments finishes in minutes on a CPU.
    total_tokens: int = default("total_tokens", 60_000)
    eval_every: int = default("eval_every", 10_000)
    eval_tokens: int = default("eval_tokens", 5_000)
    # Without it a policy over thousands of words almost never samples a rewarded one.
    unigram_init: bool = default("unigram_init", True)
    n_steps: int = field(default=8, metadata={"help": "env steps per stream per update"})
    gamma: float = field(default=0.0, metadata={"help": "discount; 0 suits immediate rewards"})
    gae_lambda: float = field(default=1.0, metadata={"help": "GAE lambda (irrelevant when gamma is 0)"})
    ent_coef: float = field(
        default=0.01,
        metadata={"help": "entropy bonus; keeps sampling alive so the policy does not lock onto a wrong word early"},
    )
    vf_coef: float = field(default=0.5, metadata={"help": "value loss coefficient"})
    max_grad_norm: float = field(default=0.5, metadata={"help": "gradient norm clip"})
    normalize_advantage: bool = field(default=True, metadata={"help": "standardize advantages per update"})
    use_rms_prop: bool = field(default=False, metadata={"help": "RMSprop (SB3's default) instead of Adam"})


def train(args: Args) -> TrainResult:
    return train_sb3(
        "a2c",
        A2C,
        RNNLanguagePolicy,
        args,
        args.context_length,
        n_steps=args.n_steps,
        gamma=args.gamma,
        gae_lambda=args.gae_lambda,
        ent_coef=args.ent_coef,
        vf_coef=args.vf_coef,
        max_grad_norm=args.max_grad_norm,
        normalize_advantage=args.normalize_advantage,
        use_rms_prop=args.use_rms_prop,
    )


if __name__ == "__main__":
    from irlm_agents.cli import run_agent

    run_agent("a2c")
