"""What every native agent's training loop calls: settings, set-up, the optimizer step, counting
and logging. Plain functions and two small records; the loop itself lives in each agent's file::

    seed_everything(args.seed)
    setup = build(args)
    optimizer = torch.optim.Adam(setup.model.parameters(), lr=args.learning_rate)
    progress = Progress(args.total_tokens, args.eval_every)
    with open_run("supervised", args, setup) as run:
        while progress.tokens < args.total_tokens:
            with progress.timed():
                segment = setup.rollout.collect(args.rollout_steps)
                loss = ...                           # the agent's own update
                optimise(optimizer, loss, args.max_grad_norm)
            progress.add(segment.num_tokens, queries=0)
            log_update(run, progress, setup, args, reward=..., accuracy=...)
        return finish_run(run, progress, setup, args)
"""

from __future__ import annotations

import random
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from irlm_agents.lm.devices import resolve_device
from irlm_agents.lm.evaluation import evaluate
from irlm_agents.lm.model import RNNLanguageModel
from irlm_agents.lm.ngram import ngram_baselines
from irlm_agents.native.rollout import Rollout
from irlm_agents.runs.args import TrainArgs, TrainResult, build_model, load_corpus_for
from irlm_agents.runs.run_dir import RunDirectory
from irlm_env.corpus import Corpus
from irlm_env.envs.vector import NextWordVectorEnv
from irlm_env.errors import IrlmError
from irlm_env.options import check_int
from irlm_env.rewards import CheckedReward, make_reward


@dataclass
class NativeArgs(TrainArgs):
    """Settings shared by the native agents (recurrent policy, segment updates)."""

    rollout_steps: int = field(
        default=35, metadata={"help": "steps per stream in one segment (truncated backpropagation length)"}
    )
    episode_mode: str = field(
        default="window", metadata={"help": "env episodes: window (random stretches of text) or line"}
    )
    episode_length: int = field(
        default=700, metadata={"help": "steps of a window episode; the hidden state is reset between episodes"}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "clip the gradient norm to this (0: no clipping)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("rollout_steps", "episode_length"):
            check_int(name, getattr(self, name))
        if self.max_grad_norm < 0:
            raise IrlmError(f"max_grad_norm must be >= 0 (0 turns clipping off), got {self.max_grad_norm!r}")


def seed_everything(seed: int) -> None:
    """Python, numpy and torch; the env streams are seeded by the rollout's reset, with the same seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Setup:
    """What every native agent builds before its loop."""

    corpus: Corpus
    reward: CheckedReward  # built once: the env's, and the one validation scores with
    model: RNNLanguageModel
    device: torch.device
    rollout: Rollout  # driving the train-split vector env
    peers: dict[str, float]  # the n-gram predictors' figures on the validation tokens


def build(args: NativeArgs) -> Setup:
    """Corpus, model on its device, reward, the train-split vector env and the rollout driving it."""
    device = resolve_device(args.device)
    corpus = load_corpus_for(args)
    model = build_model(args, corpus).to(device)
    reward = make_reward(args.reward, corpus, **args.reward_options)
    env = NextWordVectorEnv(
        args.n_envs,
        autoreset_mode=AutoresetMode.SAME_STEP,
        corpus=corpus,
        reward=reward,
        split="train",
        context_length=1,
        mode=args.episode_mode,
        episode_length=args.episode_length,
    )
    peers = ngram_baselines(corpus, "validation", orders=(1, 2, 4), max_tokens=args.eval_tokens)
    return Setup(corpus, reward, model, device, Rollout(env, model, device, args.seed), peers)


def optimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float) -> None:
    """One optimizer step on ``loss``, with the shared gradient clipping."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm > 0:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()


@dataclass
class Progress:
    """Tokens, reward queries and training time so far, and when validation is next due.

    Only time spent inside :meth:`timed` (rollout and update) counts as training, so tokens
    per second measure the agent, not the validation schedule.
    """

    total_tokens: int
    eval_every: int
    tokens: int = 0
    queries: int = 0
    seconds: float = 0.0
    next_eval: int = field(init=False)

    def __post_init__(self) -> None:
        self.next_eval = self.eval_every

    @contextmanager
    def timed(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds += time.perf_counter() - start

    def add(self, tokens: int, queries: int) -> None:
        """Count one update's env steps and the reward evaluations it used."""
        self.tokens += tokens
        self.queries += queries

    def validation_due(self) -> bool:
        """Whether to validate now (every ``eval_every`` tokens); a yes schedules the next one.

        Never at the end of the budget: :func:`finish_run` validates then.
        """
        if self.tokens < self.next_eval or self.tokens >= self.total_tokens:
            return False
        self.next_eval += self.eval_every
        return True

    def rates(self) -> dict[str, float]:
        return {
            "tokens_per_second": self.tokens / max(self.seconds, 1e-9),
            "queries_per_token": self.queries / max(self.tokens, 1),
        }


def validate(setup: Setup, args: NativeArgs) -> dict[str, float]:
    """The model's figures on the first ``eval_tokens`` of validation, state carried along streams."""
    return evaluate(setup.model, setup.corpus, "validation", reward=setup.reward, max_tokens=args.eval_tokens)


@contextmanager
def open_run(agent: str, args: NativeArgs, setup: Setup) -> Iterator[RunDirectory]:
    """The run directory around the loop, holding the untrained model's figures and the peers'.

    Ctrl-C inside it saves the model and ends as ``TrainingInterrupted`` (see ``RunDirectory``).
    """
    with RunDirectory(agent, args, setup.corpus, setup.model, eval_context_length=None) as run:
        run.record(0, validate(setup, args))
        run.log_scalars("validation/peers", 0, setup.peers)
        setup.model.train()
        yield run


def log_update(
    run: RunDirectory, progress: Progress, setup: Setup, args: NativeArgs, *, reward: float, accuracy: float
) -> None:
    """After each update: the stepped actions' mean reward and accuracy; validation when due."""
    run.advance(progress.tokens, reward=reward, accuracy=accuracy)
    if progress.validation_due():
        run.record(progress.tokens, validate(setup, args))
        run.log_scalars("train", progress.tokens, progress.rates())


def finish_run(run: RunDirectory, progress: Progress, setup: Setup, args: NativeArgs) -> TrainResult:
    """Final validation and checkpoint; the metrics add throughput, queries, memory and the peers."""
    run.record(progress.tokens, validate(setup, args))
    run.log_scalars("train", progress.tokens, progress.rates())
    metrics = run.finish(progress.tokens)
    metrics.update(setup.peers)
    metrics["tokens"] = float(progress.tokens)
    metrics.update(progress.rates())
    metrics["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if setup.device.type == "cuda":
        metrics["peak_cuda_mb"] = torch.cuda.max_memory_allocated(setup.device) / 2**20
    return TrainResult(model=setup.model, corpus=setup.corpus, metrics=metrics, run_dir=run.path)
