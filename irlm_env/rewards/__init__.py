"""Rewards: the protocol plugins implement, building and checking them, and the built-in ``exact``."""

from irlm_env.rewards.base import Reward
from irlm_env.rewards.checked import CheckedReward, make_reward

__all__ = ["CheckedReward", "Reward", "make_reward"]
