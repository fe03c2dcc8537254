"""Arguments of the SB3 agents: the shared ones plus the policy's context window, and the check
of the algorithms' own settings (``n_steps``, ``gamma``...) that every SB3 agent runs.

Only these agents see the text through a window of ``context_length`` tokens; the native agents'
recurrent policy reads one token per step and carries the rest in its hidden state, so the
option lives here rather than in ``TrainArgs``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from irlm_agents.runs.args import TrainArgs
from irlm_env.errors import IrlmError
from irlm_env.options import check_int

#: The SB3 algorithms' settings and the values they take, checked before a run starts: SB3 itself
#: asserts on some (batch_size 1), fails mid-run on others (n_epochs 0) and takes the rest (gamma 2).
_FLOAT_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "gamma": (lambda value: 0 <= value <= 1, "in [0, 1]"),
    "gae_lambda": (lambda value: 0 <= value <= 1, "in [0, 1]"),
    "clip_range": (lambda value: value > 0, "above 0"),
    "ent_coef": (lambda value: value >= 0, ">= 0"),
    "vf_coef": (lambda value: value >= 0, ">= 0"),
    "max_grad_norm": (lambda value: value > 0, "above 0"),
}
_INT_MINIMA = {"n_steps": 1, "n_epochs": 1, "batch_size": 2}


def check_algorithm_settings(args: TrainArgs) -> None:
    """Refuse an SB3 setting of ``args`` outside what the algorithm can use, naming it."""
    for name, minimum in _INT_MINIMA.items():
        if hasattr(args, name):
            check_int(name, getattr(args, name), minimum=minimum)
    for name, (allows, allowed) in _FLOAT_RANGES.items():
        if hasattr(args, name) and not allows(getattr(args, name)):
            raise IrlmError(f"{name} must be {allowed}, got {getattr(args, name)!r}")
    if getattr(args, "n_steps", 2) * args.n_envs < 2:
        raise IrlmError(
            f"n_steps x n_envs must be at least 2 (a rollout of one step has no advantage to normalise), "
            f"got {args.n_steps} x {args.n_envs}; raise --n-steps or --n-envs"
        )


@dataclass
class SB3Args(TrainArgs):
    """``TrainArgs`` plus the context window the SB3 policy sees."""

    context_length: int = field(default=8, metadata={"help": "tokens of context the policy sees"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("context_length", self.context_length)
        check_algorithm_settings(self)
