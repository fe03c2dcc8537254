"""The built-in ``exact`` reward, registered through the same hook as any third-party reward."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from irlm_env.hookspecs import Register, hookimpl
from irlm_env.rewards.base import Reward

if TYPE_CHECKING:
    from irlm_env.corpus import Corpus


class ExactReward(Reward):
    """1.0 for the true next token and 0.0 for anything else: plain next-word accuracy."""

    name = "exact"

    def __init__(self, corpus: Corpus) -> None:
        self.vocab_size = len(corpus.vocab)

    def __call__(self, action: int, target: int, context: np.ndarray) -> float:
        return 1.0 if action == target else 0.0

    def batch(self, actions: np.ndarray, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        return (actions == targets[:, None]).astype(np.float64)

    def table(self, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        out = np.zeros((len(targets), self.vocab_size), dtype=np.float64)
        out[np.arange(len(targets)), targets] = 1.0
        return out


@hookimpl
def irlm_register_rewards(register: Register) -> None:
    register("exact", ExactReward, "1.0 if the action is the true next token, else 0.0")
