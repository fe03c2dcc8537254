"""What the SB3 agents (``ppo``, ``a2c``, ``recurrent-ppo``) share: the vector env, the policy
sizes and the logged ``learn`` call. Each agent file keeps only its algorithm's settings.

``window`` is the context the policy sees: ``k`` tokens for ``RNNLanguagePolicy`` (the env's
``context_length``, and evaluation by windows of ``k``), or ``None`` for the recurrent policy
(the env shows one token, the hidden state carries the rest, and evaluation carries it too).
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import configure
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecEnv

from irlm_agents.runs.args import TrainArgs, TrainResult, build_model, load_corpus_for
from irlm_agents.lm.evaluation import evaluate
from irlm_agents.runs.run_dir import RunDirectory
from irlm_agents.sb3.callbacks import ValidationCallback
from irlm_env import ENV_ID
from irlm_env.corpus import Corpus
from irlm_agents.lm.devices import resolve_device
from irlm_agents.lm.model import RNNLanguageModel
from irlm_agents.sb3 import make_vec_env
from irlm_env.errors import IrlmError
from irlm_env.rewards import CheckedReward, make_reward

#: Folder inside the run directory for SB3's own logger (progress.csv and its TensorBoard events),
#: kept apart from the run directory's metrics.csv.
SB3_LOG_DIR = "sb3"


def make_env(args: TrainArgs, corpus: Corpus, reward: CheckedReward, window: int | None) -> VecEnv:
    """The native vector env behind SB3's VecEnv interface, on the training split.

    With ``feed="action"`` the window (or the recurrent policy's one token) shows the agent's
    own sampled actions; the env checks the feed options.
    """
    return make_vec_env(
        ENV_ID,
        n_envs=args.n_envs,
        seed=args.seed,
        corpus=corpus,
        reward=reward,
        context_length=1 if window is None else window,
        **args.feed_options(),
    )


def policy_kwargs(model: RNNLanguageModel) -> dict[str, Any]:
    """``RNNLanguagePolicy`` sizes matching ``model``, whose weights are then copied in."""
    options = model.config.to_dict()
    del options["vocab_size"]
    return options


def train_sb3(name: str, algorithm: type[BaseAlgorithm], policy: type[BasePolicy], args: TrainArgs,
              window: int | None, **settings: Any) -> TrainResult:
    """Build ``algorithm(policy, env, **settings)`` from ``args`` and train it.

    The device is checked first, so a bad ``--device`` fails before any work. A fresh model is
    built here (or loaded with ``init_from``, its vocabulary checked against the corpus) and its
    weights copied into the policy, so SB3 and the native agents start from the same model.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise IrlmError(
            f"{name} trains with Stable-Baselines3, which runs in one process; start it without torchrun, "
            "or use RLlib for several env runners (README, Scaling out) or a native agent under torchrun"
        )
    device = resolve_device(args.device)
    corpus = load_corpus_for(args)

    # Seeding: everything random below derives from args.seed.
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    reward = make_reward(args.reward, corpus, **args.reward_options)
    env = make_env(args, corpus, reward, window)
    model = build_model(args, corpus)

    agent = algorithm(
        policy,
        env,
        learning_rate=args.learning_rate,
        policy_kwargs=policy_kwargs(model),
        device=device,
        seed=args.seed,
        **settings,
    )
    agent.policy.language_model.load_state_dict(model.state_dict())  # type: ignore[attr-defined]
    try:
        return learn(name, agent, args, corpus, reward, window)
    finally:
        env.close()


def learn(name: str, agent: BaseAlgorithm, args: TrainArgs, corpus: Corpus, reward: CheckedReward,
          window: int | None) -> TrainResult:
    """Run ``agent.learn`` inside a run directory and return the trained language model.

    ``reward`` is the one the env was built with, so validation scores what training rewards.
    """
    model: RNNLanguageModel = agent.policy.language_model  # type: ignore[attr-defined]

    def validate() -> dict[str, float]:
        return evaluate(model, corpus, "validation", reward=reward, context_length=window,
                        max_tokens=args.eval_tokens)

    with RunDirectory(name, args, corpus, model, eval_context_length=window) as run:
        run.record(0, validate())
        agent.set_logger(configure(str(run.path / SB3_LOG_DIR), ["stdout", "csv", "tensorboard"]))
        callback = ValidationCallback(run, validate, args.eval_every)
        agent.learn(args.total_tokens, callback=callback, log_interval=None)  # type: ignore[arg-type]
        run.record(agent.num_timesteps, validate())
        metrics = run.finish(agent.num_timesteps)
        for key, value in metrics.items():
            agent.logger.record(f"eval/{key}", value)
        agent.logger.dump(agent.num_timesteps)
        agent.logger.close()
    return TrainResult(model=model, corpus=corpus, metrics=metrics, run_dir=run.path)
