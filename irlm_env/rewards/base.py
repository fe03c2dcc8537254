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

    ``context`` is the observation the agent saw (token ids, left-padded, oldest first),
    unless the reward sets ``history_length``.
    """

    name: str = ""

    history_length: int | None = None
    """How much of the true text the reward reads as ``context``.

    ``None``: the observation the agent saw, which may be one token (a recurrent agent) or
    hold the agent's own fed predictions (``feed="action"``). An int ``H >= 1``: the last H
    tokens of the reference text before the target, oldest first, whatever the agent's
    context length and feed mode: what a reward that judges a prediction in its true
    surroundings (a judge model) needs. The history reaches back before the episode's start
    (it is the true text) and is left-padded with the pad id (0) only at the start of the
    split. Every form gets it: an ``(H,)`` array for ``__call__``, ``(N, H)`` for ``batch``
    and ``table``, read-only like the observation.
    """

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
