"""Rewards: the protocol plugins implement, and the built-in ``exact`` reward (``rewards.exact``)."""

from irlm_env.rewards.base import Reward

__all__ = ["Reward"]
