"""The one interaction loop of the native agents: a recurrent policy driving the vector env.

The policy sees one token per step (``context_length=1``) and carries its hidden state across
steps, zeroing it where an episode starts. Each call to :meth:`Rollout.collect` plays ``T`` steps
on ``N`` streams and returns a :class:`Segment`; the agents then update on the whole segment
(truncated backpropagation through time).

Because the env's observations follow the true text whatever the agent chose, the segment's RNN
features can be recomputed in one fused pass at update time (:func:`segment_features`), and the
V-sized head need not run again: the rollout already computed π at every step, and parameters do
not change between rollout and update, so :func:`head_surrogate` backpropagates a logit-space
gradient built from those stored probabilities into the recomputed features and the head weights.
"""

from __future__ import annotations

import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.vector import AutoresetMode

from irlm_agents.runs.args import TrainArgs, TrainResult, build_model, load_corpus_for
from irlm_agents.runs.run_dir import RunDirectory
from irlm_agents.lm.evaluation import evaluate
from irlm_env.corpus import Corpus
from irlm_agents.lm.devices import resolve_device
from irlm_env.envs.vector import NextWordVectorEnv
from irlm_env.errors import IrlmError
from irlm_agents.lm.model import Hidden, RNNLanguageModel
from irlm_agents.lm.ngram import ngram_baselines
from irlm_env.rewards import make_reward

#: Picks the candidate tokens of each stream from the policy's logits (N, V) and their softmax
#: (N, V), which the rollout has already computed: returns (N, K) int64, column 0 being the
#: action the env is stepped with.
Sampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Segment:
    """``T`` steps of ``N`` streams, laid out (N, T, ...) like the model's batch-first input."""

    tokens: torch.Tensor  # (N, T) the observed token at each step (model input)
    targets: torch.Tensor  # (N, T) the true next token
    starts: torch.Tensor  # (N, T) bool: an episode begins at this step (hidden reset before it)
    hidden: Hidden  # hidden state before step 0 (detached), for the fused recomputation
    actions: torch.Tensor | None = None  # (N, T, K) candidates, column 0 the stepped action
    rewards: torch.Tensor | None = None  # (N, T, K) their rewards
    #: (N, T, V) π at each step, as computed during the rollout. A buffer the rollout reuses
    #: (allocating and first-touching it cost as much as a fifth of a rollout): it is valid
    #: until the next ``collect``, which is all an update needs, and an update may overwrite it
    #: with its logit-space direction once it has read it.
    probs: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        return self.tokens.numel()


def sample_candidates(
    logits: torch.Tensor,
    k: int,
    *,
    replacement: bool,
    temperature: float,
    truncate: int = 0,
    probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """K candidate tokens per row from ``softmax(logits / temperature)``.

    With replacement: inverse-CDF sampling, all K draws from one cumulative sum by one batched
    binary search (far cheaper than ``torch.multinomial`` or Gumbel noise over a large
    vocabulary); ``probs``, the softmax of ``logits`` when already computed, saves the softmax
    at temperature 1. Without replacement:
    Gumbel top-k (distinct tokens, in the order a sequential sampler would draw them); with
    ``truncate = M > 0`` only the M most probable tokens are candidates, which makes the draw
    cost O(M) instead of O(V) and never proposes tokens from the far tail.
    ``temperature = 0`` takes the K most probable tokens deterministically.
    """
    if temperature == 0:
        return logits.topk(k, dim=-1).indices
    scaled = logits / temperature if temperature != 1 else logits
    if replacement:
        cdf = probs.cumsum(-1) if probs is not None and temperature == 1 else F.softmax(scaled, -1).cumsum_(-1)
        draws = torch.rand(cdf.shape[0], k, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
        return torch.searchsorted(cdf, draws).clamp_(max=cdf.shape[-1] - 1)
    if 0 < truncate < scaled.shape[-1]:
        top = scaled.topk(max(truncate, k), dim=-1)
        return top.indices.gather(-1, gumbel_perturbed(top.values).topk(k, dim=-1).indices)
    return gumbel_perturbed(scaled).topk(k, dim=-1).indices


def gumbel_perturbed(scores: torch.Tensor) -> torch.Tensor:
    """``scores`` plus independent Gumbel(0, 1) noise, as ``-log(-log U)`` in place on one buffer.

    On CPU, ``Tensor.exponential_`` took about three times as long as a uniform draw and two
    logarithms; over a whole vocabulary it was the largest cost of a distinct-candidate rollout.
    """
    return torch.rand_like(scores).log_().neg_().log_().neg_().add_(scores)


class Rollout:
    """Drives ``env`` with ``model``; keeps the hidden state and observation between segments.

    ``env`` is a :class:`irlm_env.envs.vector.NextWordVectorEnv` made with ``context_length=1``
    and same-step autoreset (the observation after an episode's last step is the next episode's
    first). With ``sampler=None`` the model is not run during the rollout (teacher forcing): the
    env is stepped with a fixed action just to move its cursors, and only the true targets are
    kept. With ``score=True`` all K candidates are scored with ``env.score`` (K reward queries
    per token); otherwise only the stepped action's reward is kept (1 query per token).
    """

    def __init__(self, env: NextWordVectorEnv, model: RNNLanguageModel, device: torch.device, seed: int) -> None:
        if env.autoreset_mode != AutoresetMode.SAME_STEP:
            raise ValueError("Rollout needs a vector env with autoreset_mode=AutoresetMode.SAME_STEP")
        if env.single_observation_space.shape != (1,):
            raise ValueError("Rollout needs a vector env made with context_length=1 (the policy is recurrent)")
        self.env = env
        self.model = model
        self.device = device
        self.num_envs: int = env.num_envs
        obs, _ = env.reset(seed=seed)
        self._obs = np.asarray(obs)[:, 0]
        self._starts = np.ones(self.num_envs, dtype=bool)
        self._hidden: Hidden = model.initial_hidden(self.num_envs, device)
        self._fixed_action = np.zeros(self.num_envs, dtype=np.int64)
        self._probs: torch.Tensor | None = None
        self._workspace: torch.Tensor | None = None

    def collect(self, steps: int, sampler: Sampler | None = None, *, score: bool = False) -> Segment:
        n, v = self.num_envs, self.model.config.vocab_size
        tokens = np.empty((n, steps), dtype=np.int64)
        targets = np.empty((n, steps), dtype=np.int64)
        starts = np.empty((n, steps), dtype=bool)
        hidden0 = self.model.detach_hidden(self._hidden)
        actions = rewards = probs = None
        if sampler is not None:
            if self._probs is None or self._probs.shape != (n, steps, v):
                self._probs = torch.empty((n, steps, v), device=self.device)
            probs = self._probs
        hidden = hidden0
        for t in range(steps):
            tokens[:, t] = self._obs
            starts[:, t] = self._starts
            targets[:, t] = self.env.targets()
            if sampler is None:
                step_actions = self._fixed_action
            else:
                with torch.no_grad():
                    if self._starts.any():
                        hidden = self.model.reset_hidden(hidden, torch.from_numpy(self._starts).to(self.device))
                    x = torch.from_numpy(self._obs).to(self.device)[:, None]
                    features, hidden = self.model.features(x, hidden)
                    logits = self.model.head(features[:, 0])
                    step_probs = F.softmax(logits, -1)
                    probs[:, t] = step_probs
                    candidates = sampler(logits, step_probs)
                if actions is None:
                    k = candidates.shape[1]
                    actions = torch.empty((n, steps, k), dtype=torch.int64, device=self.device)
                    rewards = torch.empty((n, steps, k), device=self.device)
                actions[:, t] = candidates
                cand = candidates.cpu().numpy()
                step_actions = cand[:, 0]
                if score:
                    rewards[:, t] = torch.from_numpy(np.asarray(self.env.score(cand), dtype=np.float32))
            obs, step_rewards, terminated, truncated, _ = self.env.step(step_actions)
            if sampler is not None and not score:
                rewards[:, t, 0] = torch.from_numpy(np.asarray(step_rewards, dtype=np.float32))
            self._obs = np.asarray(obs)[:, 0]
            self._starts = np.logical_or(terminated, truncated)
        return Segment(
            tokens=torch.from_numpy(tokens).to(self.device),
            targets=torch.from_numpy(targets).to(self.device),
            starts=torch.from_numpy(starts).to(self.device),
            hidden=hidden0,
            actions=actions,
            rewards=rewards,
            probs=probs,
        )

    def workspace(self, rows: int) -> torch.Tensor:
        """A (rows, V) float buffer for an update's vocabulary-sized scratch, reused across
        updates (a fresh one per update would cost page faults comparable to a matrix product);
        valid until the next call."""
        v = self.model.config.vocab_size
        if self._workspace is None or self._workspace.shape[0] < rows:
            self._workspace = torch.empty((rows, v), device=self.device)
        return self._workspace[:rows]

    def carry(self, final_hidden: Hidden) -> None:
        """Carry the state at the segment's end (from the update's fused pass) into the next one.

        Taken from the update rather than the rollout so teacher-forced agents, which never run
        the model during a rollout, follow the same path.
        """
        self._hidden = self.model.detach_hidden(final_hidden)


def segment_features(model: RNNLanguageModel, segment: Segment) -> tuple[torch.Tensor, Hidden]:
    """RNN outputs (N, T, H) of the whole segment, with gradient, and the final hidden state.

    One fused RNN call per stretch between episode starts: the state is zeroed where a stream's
    episode begins, which a single call over the segment could not do. With window episodes
    all streams restart together, so this is one or two calls per segment.
    """
    any_start = segment.starts.any(0).cpu().numpy()
    cuts = [int(t) for t in np.flatnonzero(any_start)]
    bounds = sorted({0, *cuts, segment.tokens.shape[1]})
    hidden = segment.hidden
    outputs = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        if any_start[a]:
            hidden = model.reset_hidden(hidden, segment.starts[:, a])
        out, hidden = model.features(segment.tokens[:, a:b], hidden)
        outputs.append(out)
    return torch.cat(outputs, 1) if len(outputs) > 1 else outputs[0], hidden


def head_surrogate(model: RNNLanguageModel, features: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient is ``direction`` (M, V) backpropagated through the head at ``features``.

    ``direction`` is dL/dlogits for the logits the rollout already computed. For the linear head
    ``z = h Wᵀ + b`` the gradients are ``dL/dh = G W``, ``dL/dW = Gᵀ h`` and ``dL/db = Σ G``;
    the surrogate ``Σ h·(G W)₍detached₎ + Σ W·(Gᵀ h)₍detached₎ + Σ b·ΣG`` has exactly those, at
    the cost of the two backward matrix products only: the (M, V) logits are never recomputed.
    """
    h = features.reshape(-1, features.shape[-1])
    if model.projection is not None:
        h = model.projection(h)
    weight, bias = model.decoder.weight, model.decoder.bias
    g = direction.to(h.dtype)
    return (
        (h * (g @ weight.detach())).sum()
        + (weight * (g.t() @ h.detach())).sum()
        + (bias * g.sum(0)).sum()
    )


@dataclass
class NativeArgs(TrainArgs):
    """Settings shared by the native agents (recurrent policy, segment updates)."""

    context_length: int = field(
        default=1, metadata={"help": "must be 1: the native agents' policy is recurrent and carries its own context"}
    )
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
        if self.context_length != 1:
            raise IrlmError(
                f"context_length must be 1 for the native agents, got {self.context_length}; "
                "their recurrent policy sees one token per step and carries the rest in its state"
            )
        for name in ("rollout_steps", "episode_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise IrlmError(f"{name} must be a positive integer, got {value!r}")
        if self.max_grad_norm < 0:
            raise IrlmError(f"max_grad_norm must be >= 0 (0 turns clipping off), got {self.max_grad_norm!r}")


@dataclass
class Setup:
    """What every native agent builds before its loop."""

    corpus: Corpus
    model: RNNLanguageModel
    device: torch.device
    env: NextWordVectorEnv
    rollout: Rollout


def seed_everything(seed: int) -> None:
    """All seeding of a run, in one place: Python, numpy and torch (the env is seeded at reset)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_setup(args: NativeArgs) -> Setup:
    """Corpus, model on its device, the train-split vector env and the rollout driving it."""
    device = resolve_device(args.device)
    corpus = load_corpus_for(args)
    model = build_model(args, corpus).to(device)
    env = NextWordVectorEnv(
        args.n_envs,
        autoreset_mode=AutoresetMode.SAME_STEP,
        corpus=corpus,
        reward=args.reward,
        reward_options=dict(args.reward_options),
        split="train",
        context_length=1,
        mode=args.episode_mode,
        episode_length=args.episode_length,
    )
    return Setup(corpus, model, device, env, Rollout(env, model, device, args.seed))


def optimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float) -> None:
    """One optimizer step on ``loss``, with the shared gradient clipping."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm > 0:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()


@dataclass
class UpdateStats:
    """What one collect-and-update round reports to the loop."""

    tokens: int  # env steps taken (streams x steps)
    queries: int  # reward evaluations the agent used
    reward: float  # mean reward of the stepped actions (or of teacher-forced predictions)
    accuracy: float  # fraction of stepped actions equal to the true next token


def train_loop(agent: str, args: NativeArgs, setup: Setup, update: Callable[[], UpdateStats]) -> TrainResult:
    """Runs ``update`` until the token budget is spent, evaluating on validation as it goes.

    Training throughput (tokens/s) counts only the time spent in ``update`` (rollout and
    optimisation), not evaluation. The returned metrics add ``tokens_per_second``,
    ``queries_per_token``, ``peak_rss_mb`` and the n-gram peers on the same validation tokens.
    """
    peers = ngram_baselines(setup.corpus, "validation", orders=(1, 2, 4), max_tokens=args.eval_tokens)
    reward = make_reward(args.reward, setup.corpus, **args.reward_options)

    def validate() -> dict[str, float]:
        return evaluate(setup.model, setup.corpus, "validation", reward=reward, max_tokens=args.eval_tokens)

    tokens = queries = 0
    train_seconds = 0.0
    next_eval = args.eval_every
    with RunDirectory(agent, args, setup.corpus, setup.model, eval_context_length=None) as run:
        run.record(0, validate())
        run.log_scalars("validation/peers", 0, peers)
        setup.model.train()
        while tokens < args.total_tokens:
            start = time.perf_counter()
            stats = update()
            train_seconds += time.perf_counter() - start
            tokens += stats.tokens
            queries += stats.queries
            run.advance(tokens, reward=stats.reward, accuracy=stats.accuracy)
            if tokens >= next_eval and tokens < args.total_tokens:
                run.record(tokens, validate())
                run.log_scalars("train", tokens, {"tokens_per_second": tokens / train_seconds,
                                                  "queries_per_token": queries / tokens})
                next_eval += args.eval_every
        run.record(tokens, validate())
        run.log_scalars("train", tokens, {"tokens_per_second": tokens / max(train_seconds, 1e-9),
                                          "queries_per_token": queries / max(tokens, 1)})
        metrics = run.finish(tokens)
    metrics.update(peers)
    metrics["tokens"] = float(tokens)
    metrics["tokens_per_second"] = tokens / max(train_seconds, 1e-9)
    metrics["queries_per_token"] = queries / max(tokens, 1)
    metrics["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if setup.device.type == "cuda":
        metrics["peak_cuda_mb"] = torch.cuda.max_memory_allocated(setup.device) / 2**20
    return TrainResult(model=setup.model, corpus=setup.corpus, metrics=metrics, run_dir=run.path)
