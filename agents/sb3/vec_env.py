"""An SB3 ``VecEnv`` backed by the native numpy ``NextWordVectorEnv``.

SB3's own ``DummyVecEnv`` steps one Python env object per stream; at hundreds of streams that
loop, not the model, sets the pace. This adapter steps all streams with one call into the
vector env (in Gymnasium's ``SAME_STEP`` autoreset mode, the one SB3 expects) and only converts
the result to SB3's conventions:

* ``dones = terminated | truncated``;
* at an episode end, that stream's info holds ``terminal_observation``,
  ``TimeLimit.truncated`` (so SB3 bootstraps the value of a cut-off window episode) and
  ``episode = {"r", "l", "t"}``, exactly what SB3's ``Monitor``/``VecMonitor`` would add, so
  ``ep_info_buffer`` and ``rollout/ep_rew_mean`` are right without another wrapper;
* SB3 needs a list with one info dict per stream: streams without an episode end get an empty
  dict, and per-step ``target``/``correct`` are not copied into them (read them from
  ``venv.env`` if needed), so the only per-stream Python work is for the few streams whose
  episode ended.

All streams live in one env object, so ``get_attr`` returns that object's attribute once per
requested index, while ``env_method`` (which calls the method once and repeats its result) and
``set_attr`` accept all indices only: a method or a setting acts on every stream at once. Read
an attribute of some streams with ``get_attr``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from irlm_env import ENV_ID
from irlm_env.envs.vector import NextWordVectorEnv
from irlm_env.errors import IrlmError


class SB3VecEnvAdapter(VecEnv):
    """SB3 view of a ``NextWordVectorEnv`` (see the module docstring)."""

    def __init__(self, env: NextWordVectorEnv) -> None:
        if not isinstance(env, NextWordVectorEnv):
            raise IrlmError(f"SB3VecEnvAdapter wraps a NextWordVectorEnv, got {type(env).__name__}")
        if env.autoreset_mode is not AutoresetMode.SAME_STEP:
            raise IrlmError(
                "SB3VecEnvAdapter needs the vector env in autoreset_mode='SameStep' (what SB3 expects), "
                f"got {env.autoreset_mode.value!r}; build it with irlm_agents.sb3.make_vec_env"
            )
        self.env = env
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        n = env.num_envs
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(n, np.float64)
        self._lengths = np.zeros(n, np.int64)
        self._t_start = time.time()

    # -- stepping ------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        seeds = self._seeds if any(s is not None for s in self._seeds) else None
        if any(self._options):
            raise IrlmError(
                f"irlm/NextWord-v0 takes no reset options through SB3, got {self._options[0]!r}"
            )
        obs, _ = self.env.reset(seed=seeds)
        self._reset_seeds()
        self._reset_options()
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise IrlmError("step_wait() called without step_async(actions)")
        actions, self._actions = self._actions, None
        obs, rewards, terminated, truncated, vec_info = self.env.step(np.asarray(actions).reshape(self.num_envs))
        dones = terminated | truncated
        self._returns += rewards
        self._lengths += 1
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            final_obs = vec_info["final_obs"]
            elapsed = round(time.time() - self._t_start, 6)
            for i in np.flatnonzero(dones).tolist():
                infos[i] = {
                    "terminal_observation": final_obs[i],
                    "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                    "episode": {"r": float(self._returns[i]), "l": int(self._lengths[i]), "t": elapsed},
                }
            self._returns[dones] = 0.0
            self._lengths[dones] = 0
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.env.close()

    def render(self, mode: str | None = None) -> Any:
        """The vector env's own frames (text, one per stream with ``render_mode="ansi"``)."""
        return self.env.render()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs

    # -- attributes ----------------------------------------------------------------------
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.env, attr_name)
        return [value for _ in self._get_indices(indices)]

    def _all_streams(self, what: str, indices: VecEnvIndices) -> list[int]:
        """The indices, which must be every stream: all of them share one NextWordVectorEnv."""
        chosen = list(self._get_indices(indices))
        if len(chosen) != self.num_envs:
            raise IrlmError(
                f"cannot {what} on some streams only: all {self.num_envs} streams share one NextWordVectorEnv; "
                "do it for all (indices=None)"
            )
        return chosen

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self._all_streams(f"set {attr_name!r}", indices)
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        chosen = self._all_streams(f"call {method_name!r}", indices)
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in chosen]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """True for ``Monitor`` only: this adapter already reports Monitor's episode statistics,
        which is what SB3 (e.g. ``evaluate_policy``) asks the question for."""
        wrapped = isinstance(wrapper_class, type) and issubclass(Monitor, wrapper_class)
        return [wrapped for _ in self._get_indices(indices)]


def make_vec_env(env_id: str = ENV_ID, n_envs: int = 8, seed: int | None = None, **env_kwargs: Any) -> SB3VecEnvAdapter:
    """Build ``n_envs`` streams of ``irlm/NextWord-v0`` as one SB3 ``VecEnv``.

    ``env_kwargs`` are ``NextWordEnv``'s arguments (corpus, reward, context_length, ...).
    ``seed`` seeds stream ``i`` with ``seed + i`` at the first reset, as SB3's own
    ``make_vec_env`` does.
    """
    if env_id != ENV_ID:
        raise IrlmError(
            f"irlm_agents.sb3.make_vec_env builds {ENV_ID!r} only, got {env_id!r}; for other envs use "
            "stable_baselines3.common.env_util.make_vec_env"
        )
    if "env_kwargs" in env_kwargs:
        raise IrlmError(
            "irlm_agents.sb3.make_vec_env takes the env's options as keywords, not SB3's env_kwargs dict: "
            "make_vec_env(n_envs=4, corpus='grammar') rather than make_vec_env(..., env_kwargs=dict(corpus='grammar'))"
        )
    for forbidden in ("autoreset_mode", "num_envs"):
        if forbidden in env_kwargs:
            raise IrlmError(f"make_vec_env sets {forbidden!r} itself; pass n_envs= for the number of streams")
    vec_env = SB3VecEnvAdapter(NextWordVectorEnv(n_envs, autoreset_mode=AutoresetMode.SAME_STEP, **env_kwargs))
    if seed is not None:
        vec_env.seed(seed)
    return vec_env
