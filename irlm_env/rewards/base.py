"""The reward protocol every reward plugin implements.

A reward scores one prediction at a time, but the vector env scores thousands per step and
exact-gradient agents want the reward of every vocabulary token at once. :class:`Reward`
gives a plugin all three forms from just the scalar one, so a plugin can start simple and
add the fast forms when speed matters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Reward(ABC):
    """Base class for rewards; only ``__call__`` is required.

    ``context`` is the observation the agent saw (token ids, left-padded, oldest first).
    """

    name: str = ""

    @abstractmethod
    def __call__(self, action: int, target: int, context: np.ndarray) -> float:
        """Reward of predicting ``action`` when the true next token is ``target``."""

    def batch(self, actions: np.ndarray, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        """``(N, K)`` rewards of K candidate ``actions`` per stream; override to vectorize.

        The default loops over ``__call__`` so that every reward works in the vector env.
        """
        out = np.empty(actions.shape, dtype=np.float64)
        for row, col in np.ndindex(*actions.shape):
            out[row, col] = self(int(actions[row, col]), int(targets[row]), contexts[row])
        return out

    def table(self, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray | None:
        """``(N, V)`` reward of every vocabulary token, or ``None`` when it cannot be tabulated."""
        return None

    @property
    def has_table(self) -> bool:
        """Whether ``table`` is implemented, so agents can choose their estimator up front."""
        return type(self).table is not Reward.table
