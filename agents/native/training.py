"""What every native agent's training loop calls: settings, set-up, the optimizer step, counting
and logging. Plain functions and two small records; the loop itself lives in each agent's file::

    seed_everything(args.seed)
    setup = build(args)
    optimizer = make_optimizer(setup.model.parameters(), args)
    progress = Progress(args.total_tokens, args.eval_every, setup.share)
    with open_run("supervised", args, setup) as run:
        while progress.tokens < args.total_tokens:
            with progress.timed():
                segment = setup.rollout.collect(args.rollout_steps)
                loss = ...                           # the agent's own update
                optimise(optimizer, loss, args.max_grad_norm, setup)
            progress.add(segment.num_tokens, 0, reward=..., accuracy=...)
            log_update(run, progress, setup, args)
        return finish_run(run, progress, setup, args)

Under torchrun the same loop runs in every process on its share of the streams (see
:mod:`irlm_agents.native.distributed`): ``optimise`` averages the gradients, ``Progress.add``
sums the counts, and rank 0 alone holds the run directory (``run`` is None elsewhere).
"""

from __future__ import annotations

import random
import resource
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from irlm_agents.lm.evaluation import evaluate
from irlm_agents.lm.model import RNNLanguageModel
from irlm_agents.lm.ngram import ngram_baselines
from irlm_agents.lm.sampling import sample_candidates
from irlm_agents.native.distributed import Share, StopAgreed, join, leave
from irlm_agents.native.rollout import Rollout, Sampler
from irlm_agents.runs.args import TrainArgs, TrainResult, build_model, load_corpus_for
from irlm_agents.runs.run_dir import FINAL_CHECKPOINT, RunDirectory, TrainingInterrupted
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
    weight_decay: float = field(
        default=0.0, metadata={"help": "decoupled weight decay (AdamW) on every parameter; 0 is plain Adam"}
    )
    ema_decay: float = field(
        default=0.0,
        metadata={"help": "validate, checkpoint and return an exponential moving average of the weights, "
                          "folded in after every update with this decay (0.995: about the last 200 updates); "
                          "0 keeps the trained weights themselves"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("rollout_steps", "episode_length"):
            check_int(name, getattr(self, name))
        if self.max_grad_norm < 0:
            raise IrlmError(f"max_grad_norm must be >= 0 (0 turns clipping off), got {self.max_grad_norm!r}")
        if not self.weight_decay >= 0:
            raise IrlmError(f"weight_decay must be >= 0 (0 turns it off), got {self.weight_decay!r}")
        if not 0 <= self.ema_decay < 1:
            raise IrlmError(f"ema_decay must be in [0, 1) (0 turns the average off), got {self.ema_decay!r}")
        # The agents that have them: a negative weight would penalise entropy or grow the critic's error.
        for name in ("entropy_coef", "critic_coef"):
            if getattr(self, name, 0.0) < 0:
                raise IrlmError(f"{name} must be >= 0 (0 turns it off), got {getattr(self, name)!r}")


def make_optimizer(parameters: Iterable[torch.nn.Parameter], args: NativeArgs) -> torch.optim.AdamW:
    """Adam with decoupled weight decay, one optimizer for every native agent so they stay comparable.

    Weight decay keeps the model from growing confident on text it has passed over several times;
    with ``weight_decay=0`` AdamW's step is Adam's.
    """
    return torch.optim.AdamW(parameters, lr=args.learning_rate, weight_decay=args.weight_decay)


def seed_everything(seed: int) -> None:
    """Python, numpy and torch; the env streams are seeded by the rollout's reset, with the same seed.

    Every process of a torchrun job takes the same seed: their torch generators stay in step
    (see ``Share.uniform``) and their streams get the seeds of the single-process run.
    """
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
    rollout: Rollout  # driving this process's streams of the train-split vector env
    peers: dict[str, float]  # the n-gram predictors' figures on the validation tokens (rank 0)
    share: Share  # this process's rank and streams (all of them without torchrun)
    average: AveragedModel | None = None  # the weights' moving average (``ema_decay``), or None

    @property
    def scored_model(self) -> RNNLanguageModel:
        """The model validated, checkpointed and returned: the weights' average when there is one."""
        return self.model if self.average is None else self.average.module


def build(args: NativeArgs) -> Setup:
    """Corpus, reward, this process's streams, model on its device and the rollout driving them.

    The env is built before the model, so a bad env option (``feed``, ``episode_length``...)
    fails with the env's own message before any model work. Under torchrun this joins the
    process group (left again when the run closes, see :func:`open_run`).
    """
    share = join(args.device, args.n_envs)
    device = share.device
    with share.main_first():
        corpus = load_corpus_for(args)
    reward = make_reward(args.reward, corpus, **args.reward_options)
    env = NextWordVectorEnv(
        len(share.streams),
        autoreset_mode=AutoresetMode.SAME_STEP,
        corpus=corpus,
        reward=reward,
        split="train",
        context_length=1,
        mode=args.episode_mode,
        episode_length=args.episode_length,
        **args.feed_options(),
    )
    model = build_model(args, corpus).to(device)
    share.broadcast_module(model)
    peers = ngram_baselines(corpus, "validation", orders=(1, 2, 4), max_tokens=args.eval_tokens) if share.is_main else {}
    rollout = Rollout(env, model, device, share.seeds(args.seed))
    average = weight_average(model, args.ema_decay)
    return Setup(corpus, reward, model, device, rollout, peers, share, average)


def weight_average(model: RNNLanguageModel, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights (Polyak averaging), or None for ``decay=0``.

    A policy-gradient step from a handful of 0/1 rewards is a noisy estimate, so the weights
    wander around the region a smaller step would settle in; their average over the last few
    hundred updates sits nearer its middle, at no cost to training (the optimizer never sees it).
    It is PyTorch's own ``AveragedModel``; every process of a torchrun job holds the same weights,
    so the same average.
    """
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))


def policy_sampler(share: Share) -> Sampler:
    """One token per stream drawn from π (one reward query per token).

    The agents that learn from the stepped action's reward alone (``expected``, ``mixer``) act
    with it, and so does ``supervised`` where the env shows actions (``feed="action"``):
    scheduled sampling feeds back a token drawn from the model (Bengio et al. 2015).
    """

    def sampler(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return sample_candidates(logits, 1, replacement=True, temperature=1.0, probs=probs, uniform=share.uniform)

    return sampler


def optimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float, setup: Setup) -> None:
    """One optimizer step on ``loss``: gradients averaged over processes, then the shared clipping;
    then the weights folded into their moving average, if the run keeps one (inside the timed
    update, so the tokens per second pay for it)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    setup.share.average_gradients(params)
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    if setup.average is not None:
        setup.average.update_parameters(setup.model)


@dataclass
class Progress:
    """Tokens, reward queries and training time so far, and when validation is next due.

    Only time spent inside :meth:`timed` (rollout and update) counts as training, so tokens
    per second measure the agent, not the validation schedule. Counts are over all processes.
    """

    total_tokens: int
    eval_every: int
    share: Share
    tokens: int = 0
    queries: int = 0
    seconds: float = 0.0
    reward: float = 0.0  # the last update's mean reward of the stepped actions
    accuracy: float = 0.0  # and the fraction of them that were the true token
    stop: signal.Signals | None = None  # Ctrl-C or SIGTERM noted by some process (torchrun)
    next_eval: int = field(init=False)

    def __post_init__(self) -> None:
        self.next_eval = self.eval_every

    @contextmanager
    def timed(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds += time.perf_counter() - start

    def add(self, tokens: int, queries: int, *, reward: float, accuracy: float) -> None:
        """Count one update's env steps and reward queries; keep its mean reward and accuracy.

        Under torchrun this is the update's one all-reduce of statistics: counts are summed and
        means averaged over processes (their shares are equal), and a stop signal noted by any
        process is known to all, which then stop after the same update (see :func:`log_update`).
        """
        if self.share.distributed:
            tokens, queries, reward, accuracy, sigint, sigterm = self.share.sum(
                tokens, queries, reward, accuracy, *self.share.stop.flags()
            )
            reward /= self.share.world_size
            accuracy /= self.share.world_size
            if sigint or sigterm:
                self.stop = signal.SIGTERM if sigterm else signal.SIGINT
        self.tokens += int(tokens)
        self.queries += int(queries)
        self.reward, self.accuracy = reward, accuracy

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
    return evaluate(setup.scored_model, setup.corpus, "validation", reward=setup.reward, max_tokens=args.eval_tokens)


@contextmanager
def open_run(agent: str, args: NativeArgs, setup: Setup) -> Iterator[RunDirectory | None]:
    """The run directory around the loop, holding the untrained model's figures and the peers'.

    Ctrl-C inside it saves the model and ends as ``TrainingInterrupted`` (see ``RunDirectory``).
    Under torchrun rank 0 holds the directory and the others get None; every process learns
    its path, the processes stop together on a signal, and they leave the process group together
    (see :func:`irlm_agents.native.distributed.leave`).
    """
    share = setup.share
    if not share.distributed:
        with RunDirectory(agent, args, setup.corpus, setup.scored_model, eval_context_length=None) as run:
            _start(run, setup, args)
            yield run
        return
    together = False
    try:
        with ExitStack() as stack:
            run, path = _open_shared(stack, agent, args, setup)
            stack.enter_context(share.stop.watching())
            if run is not None:
                _start(run, setup, args)
            setup.model.train()
            try:
                yield run
            except StopAgreed as stop:
                together = True
                if run is None:  # rank 0 saves the model as its RunDirectory closes
                    raise TrainingInterrupted(path, path / FINAL_CHECKPOINT, stop.tokens, stop.signal) from stop
                raise
        together = True
    finally:
        leave(share, together=together)


def _open_shared(
    stack: ExitStack, agent: str, args: NativeArgs, setup: Setup
) -> tuple[RunDirectory | None, Path]:
    """Rank 0 opens the run directory and tells the others its path, or why it could not."""
    run, error = None, ""
    if setup.share.is_main:
        try:
            run = stack.enter_context(
                RunDirectory(agent, args, setup.corpus, setup.scored_model, eval_context_length=None)
            )
        except IrlmError as exc:
            error = str(exc)
    path, error = setup.share.broadcast((run.path if run is not None else None, error))
    if error:
        raise IrlmError(error)
    return run, path


def _start(run: RunDirectory, setup: Setup, args: NativeArgs) -> None:
    run.record(0, validate(setup, args))
    run.log_scalars("validation/peers", 0, setup.peers)
    setup.model.train()


def log_update(run: RunDirectory | None, progress: Progress, setup: Setup, args: NativeArgs) -> None:
    """After each update: the stepped actions' mean reward and accuracy; validation when due."""
    if run is not None:
        run.advance(progress.tokens, reward=progress.reward, accuracy=progress.accuracy)
    if progress.stop is not None:
        raise StopAgreed(progress.stop, progress.tokens)
    if progress.validation_due() and run is not None:
        run.record(progress.tokens, validate(setup, args))
        run.log_scalars("train", progress.tokens, progress.rates())


def finish_run(run: RunDirectory | None, progress: Progress, setup: Setup, args: NativeArgs) -> TrainResult:
    """Final validation and checkpoint; the metrics add throughput, queries, memory and the peers.

    Under torchrun every process returns rank 0's metrics and run directory.
    """
    metrics: dict[str, float] = {}
    path = None
    if run is not None:
        run.record(progress.tokens, validate(setup, args))
        run.log_scalars("train", progress.tokens, progress.rates())
        metrics = run.finish(progress.tokens)
        metrics.update(setup.peers)
        metrics["tokens"] = float(progress.tokens)
        metrics.update(progress.rates())
        metrics["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if setup.device.type == "cuda":
            metrics["peak_cuda_mb"] = torch.cuda.max_memory_allocated(setup.device) / 2**20
        path = run.path
    metrics, path = setup.share.broadcast((metrics, path))
    return TrainResult(model=setup.scored_model, corpus=setup.corpus, metrics=metrics, run_dir=path)
