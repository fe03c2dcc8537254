"""Arguments of the SB3 agents: the shared ones plus the policy's context window.

Only these agents see the text through a window of ``context_length`` tokens; the native agents'
recurrent policy reads one token per step and carries the rest in its hidden state, so the
option lives here rather than in ``TrainArgs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from irlm_agents.runs.args import TrainArgs
from irlm_env.options import check_int


@dataclass
class SB3Args(TrainArgs):
    """``TrainArgs`` plus the context window the SB3 policy sees."""

    context_length: int = field(default=8, metadata={"help": "tokens of context the policy sees"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("context_length", self.context_length)
