"""What the SB3 agents (``ppo``, ``a2c``) share: the vector env, the policy sizes, the evaluation
callback, and the logged ``learn`` call. Each agent file keeps only its algorithm's settings.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecEnv

from irlm_agents.runs.args import TrainArgs, TrainResult, build_model, load_corpus_for
from irlm_agents.runs.logger import RunLogger
from irlm_env import ENV_ID
from irlm_env.corpus import Corpus
from irlm_agents.lm.devices import resolve_device
from irlm_agents.lm.model import RNNLanguageModel
from irlm_agents.sb3 import RNNLanguagePolicy, make_vec_env

#: Folder inside the run directory for SB3's own logger (progress.csv and its TensorBoard events),
#: kept apart from the RunLogger's metrics.csv.
SB3_LOG_DIR = "sb3"


def make_env(args: TrainArgs, corpus: Corpus) -> VecEnv:
    """The native vector env behind SB3's VecEnv interface, on the training split."""
    return make_vec_env(
        ENV_ID,
        n_envs=args.n_envs,
        seed=args.seed,
        corpus=corpus,
        reward=args.reward,
        reward_options=args.reward_options,
        context_length=args.context_length,
    )


def policy_kwargs(model: RNNLanguageModel) -> dict[str, Any]:
    """``RNNLanguagePolicy`` sizes matching ``model``, whose weights are then copied in."""
    options = model.config.to_dict()
    del options["vocab_size"]
    return options


class EvaluationCallback(BaseCallback):
    """Scores the policy's language model on validation every ``eval_every`` env tokens.

    The figures go to SB3's logger (stdout, CSV, TensorBoard, dumped at each evaluation together
    with SB3's own training statistics) and to the RunLogger (metrics.csv, best checkpoint,
    progress bar). Between evaluations the bar also shows the mean reward of the actions sampled
    in the last rollout (with the ``exact`` reward, their accuracy). SB3's VecEnv infos carry no
    per-step targets (building a dict per stream per step would slow the hot path), so the
    reward is the live signal.
    """

    def __init__(self, run: RunLogger, eval_every: int) -> None:
        super().__init__()
        self.run = run
        self.eval_every = eval_every
        self._next_eval = eval_every
        self._reward_sum = 0.0
        self._steps = 0

    def _on_step(self) -> bool:
        rewards: np.ndarray = self.locals["rewards"]
        self._reward_sum += float(rewards.sum())
        self._steps += len(rewards)
        return True

    def _on_rollout_start(self) -> None:
        # Here, not in _on_step: a rollout start follows the update of the previous rollout, so
        # the model scored (and checkpointed as best) is the one training has produced so far.
        if self.num_timesteps >= self._next_eval:
            metrics = self.run.evaluate(self.num_timesteps)
            for name, value in metrics.items():
                self.logger.record(f"eval/{name}", value)
            self.logger.record("time/total_timesteps", self.num_timesteps)
            self.logger.dump(self.num_timesteps)
            while self._next_eval <= self.num_timesteps:
                self._next_eval += self.eval_every

    def _on_rollout_end(self) -> None:
        if self._steps:
            self.run.advance(self.num_timesteps, reward=self._reward_sum / self._steps)
        self._reward_sum, self._steps = 0.0, 0


def train_sb3(name: str, algorithm: type[BaseAlgorithm], args: TrainArgs, **settings: Any) -> TrainResult:
    """Build ``algorithm(RNNLanguagePolicy, env, **settings)`` from ``args`` and train it.

    The device is checked first, so a bad ``--device`` fails before any work. A fresh model is
    built here (or loaded with ``init_from``, its vocabulary checked against the corpus) and its
    weights copied into the policy, so SB3 and the native agents start from the same model.
    """
    device = resolve_device(args.device)
    corpus = load_corpus_for(args)

    # Seeding: everything random below derives from args.seed.
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    env = make_env(args, corpus)
    model = build_model(args, corpus)

    agent = algorithm(
        RNNLanguagePolicy,
        env,
        learning_rate=args.learning_rate,
        policy_kwargs=policy_kwargs(model),
        device=device,
        seed=args.seed,
        **settings,
    )
    agent.policy.language_model.load_state_dict(model.state_dict())  # type: ignore[attr-defined]
    try:
        return learn(name, agent, args, corpus)
    finally:
        env.close()


def learn(name: str, agent: BaseAlgorithm, args: TrainArgs, corpus: Corpus) -> TrainResult:
    """Run ``agent.learn`` inside a RunLogger and return the trained language model."""
    model: RNNLanguageModel = agent.policy.language_model  # type: ignore[attr-defined]
    with RunLogger(name, args, corpus, model, eval_context_length=args.context_length) as run:
        agent.set_logger(configure(str(run.run_dir / SB3_LOG_DIR), ["stdout", "csv", "tensorboard"]))
        agent.learn(args.total_tokens, callback=EvaluationCallback(run, args.eval_every), log_interval=None)  # type: ignore[arg-type]
        metrics = run.finish(agent.num_timesteps)
        for name, value in metrics.items():
            agent.logger.record(f"eval/{name}", value)
        agent.logger.dump(agent.num_timesteps)
        agent.logger.close()
    return TrainResult(model=model, corpus=corpus, metrics=metrics, run_dir=run.run_dir)
