"""The SB3 callback that scores the policy's language model on validation during ``learn``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import safe_mean

from irlm_agents.runs.run_dir import RunDirectory


class ValidationCallback(BaseCallback):
    """Scores the policy's language model on validation every ``eval_every`` env tokens.

    ``validate`` is the run's call of :func:`irlm_agents.lm.evaluation.evaluate`. The figures go
    to the run directory (metrics.csv, best checkpoint, progress bar) and to SB3's logger
    (stdout, CSV, TensorBoard), dumped at each evaluation together with SB3's own training
    statistics and the episodes' mean reward and length (``rollout/ep_rew_mean``,
    ``rollout/ep_len_mean``), which SB3 itself logs only at a ``log_interval``: the agents leave
    that off so that SB3's tables do not scroll the progress bar away.
    Between evaluations the bar also shows the mean reward of the actions sampled in the last
    rollout (with the ``exact`` reward, their accuracy). SB3's VecEnv infos carry no per-step
    targets (building a dict per stream per step would slow the hot path), so the reward is the
    live signal.
    """

    def __init__(self, run: RunDirectory, validate: Callable[[], dict[str, float]], eval_every: int) -> None:
        super().__init__()
        self.run = run
        self.validate = validate
        self.eval_every = eval_every
        self._next_eval = eval_every
        self._reward_sum = 0.0
        self._steps = 0

    def _on_step(self) -> bool:
        self.run.check_stop()  # Ctrl-C or SIGTERM: stop between env steps, a safe point
        rewards: np.ndarray = self.locals["rewards"]
        self._reward_sum += float(rewards.sum())
        self._steps += len(rewards)
        return True

    def _on_rollout_start(self) -> None:
        # Here, not in _on_step: a rollout start follows the update of the previous rollout, so
        # the model scored (and checkpointed as best) is the one training has produced so far.
        if self.num_timesteps >= self._next_eval:
            metrics = self.run.record(self.num_timesteps, self.validate())
            for name, value in metrics.items():
                self.logger.record(f"eval/{name}", value)
            episodes = self.model.ep_info_buffer
            if episodes:
                self.logger.record("rollout/ep_rew_mean", safe_mean([info["r"] for info in episodes]))
                self.logger.record("rollout/ep_len_mean", safe_mean([info["l"] for info in episodes]))
            self.logger.record("time/total_timesteps", self.num_timesteps)
            self.logger.dump(self.num_timesteps)
            while self._next_eval <= self.num_timesteps:
                self._next_eval += self.eval_every

    def _on_rollout_end(self) -> None:
        if self._steps:
            self.run.advance(self.num_timesteps, reward=self._reward_sum / self._steps)
        self._reward_sum, self._steps = 0.0, 0
