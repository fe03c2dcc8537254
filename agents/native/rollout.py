"""The rollout of the native agents: a recurrent policy driving the vector env, segment by segment.

The policy sees one token per step (``context_length=1``) and carries its hidden state across
steps, zeroing it where an episode starts. Each call to :meth:`Rollout.collect` plays ``T`` steps
on ``N`` streams and returns a :class:`Segment`; the agent then updates on the whole segment
(truncated backpropagation through time).

Because the segment records the token the env showed at every step (the true text, or with
the env's ``feed="action"`` the agent's own stepped action), the update can recompute the
segment's RNN features with gradient in one fused pass over exactly those inputs
(:meth:`Rollout.features`) instead of keeping the step-by-step graph. A fed-back action is an
input like any other once shown: no gradient flows through its choice (as in scheduled
sampling). The vocabulary-sized head need not run again (see
:mod:`irlm_agents.native.gradients`). That fused pass also yields the state at the segment's
end, which the rollout keeps as the start of the next segment: the rollout owns its hidden
state, and agents never hand it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.vector import AutoresetMode

from irlm_agents.lm.model import Hidden, RNNLanguageModel
from irlm_env.envs.vector import NextWordVectorEnv
from irlm_env.errors import IrlmError

#: Picks the candidate tokens of each stream from the policy's logits (N, V) and their softmax
#: (N, V), which the rollout has already computed: returns (N, K) int64, column 0 being the
#: action the env is stepped with.
Sampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: (candidates (N, K), π (N, V)) -> (N, K) bool: the candidates a sequential querier may ask.
Asker = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Segment:
    """``T`` steps of ``N`` streams, laid out (N, T, ...) like the model's batch-first input."""

    tokens: torch.Tensor  # (N, T) the token the env showed at each step (model input)
    targets: torch.Tensor  # (N, T) the true next token (the reference text's, whatever was shown)
    starts: torch.Tensor  # (N, T) bool: an episode begins at this step (hidden reset before it)
    hidden: Hidden  # hidden state before step 0 (detached), for the fused recomputation
    actions: torch.Tensor | None = None  # (N, T, K) candidates, column 0 the stepped action
    rewards: torch.Tensor | None = None  # (N, T, K) their rewards; NaN where not scored (collect(score=False))
    #: (N, T, V) π at each step, as computed during the rollout (with dropout, recomputed by
    #: :meth:`Rollout.features` under the update's dropout masks). A buffer the rollout reuses
    #: (allocating and first-touching it cost as much as a fifth of a rollout): it is valid
    #: until the next ``collect``, which is all an update needs. Read it, never write it: an
    #: update keeps its own scratch (``irlm_agents.native.gradients.Workspace``).
    probs: torch.Tensor | None = None
    #: (N, T, C) what the reward got as ``context`` at each step (``collect(keep_contexts=True)``).
    reward_contexts: np.ndarray | None = None
    #: (N, T, K) bool: the candidates ``collect(ask=...)`` allowed itself to ask, decided on the
    #: rollout's probabilities (which dropout makes differ from the update's).
    allowed: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        return self.tokens.numel()

    @property
    def accuracy(self) -> float:
        """Fraction of stepped actions that were the true next token (sampled segments only)."""
        if self.actions is None:
            raise ValueError("a teacher-forced segment has no actions; score the model's logits instead")
        return float((self.actions[..., 0] == self.targets).float().mean())


class Rollout:
    """Drives ``env`` with ``model``; keeps the hidden state and observation between segments.

    ``env`` is a :class:`irlm_env.envs.vector.NextWordVectorEnv` made with ``context_length=1``
    and same-step autoreset (the observation after an episode's last step is the next episode's
    first). With ``sampler=None`` the model is not run during the rollout (teacher forcing): the
    env is stepped with a fixed action just to move its cursors, and only the true targets are
    kept; an env that feeds actions back (``feed="action"``) would show that fixed action, so
    it needs a sampler. With ``score=True`` all K candidates are scored with ``env.score`` (K
    reward queries per token); otherwise only the stepped action's reward is kept (1 query per
    token).
    ``seed`` seeds the env's streams as ``env.reset`` takes it: an int (stream i gets seed + i)
    or one seed per stream (a torchrun process's share of a larger run).
    """

    def __init__(
        self, env: NextWordVectorEnv, model: RNNLanguageModel, device: torch.device, seed: int | list[int]
    ) -> None:
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
        #: The last segment, until :meth:`features` has carried its final state forward.
        self._pending: Segment | None = None

    @property
    def shown(self) -> np.ndarray:
        """(N,) the token each stream shows at the step being played: the policy's input there.

        A sampler may read it (with :attr:`starting`) to know the context it picks candidates in.
        """
        return self._obs

    @property
    def starting(self) -> np.ndarray:
        """(N,) bool: the stream's episode begins at the step being played."""
        return self._starts

    def collect(
        self, steps: int, sampler: Sampler | None = None, *, score: bool = False, keep_contexts: bool = False,
        ask: Asker | None = None,
    ) -> Segment:
        """Play ``steps`` steps on every stream; ``sampler`` picks the candidates (None: teacher forcing).

        ``score`` asks the env for every candidate's reward, in one batched call a step. ``ask``
        asks one candidate at a time instead, in order, and stops at a stream's first positive
        reward: it maps the step's candidates and probabilities to the (N, K) mask of those that
        may be asked (a prefix of each row), and the candidates not asked get reward 0. The env
        pays the played candidate, once asked, with the answer it gave, so the reward is called
        once per query (plus once for a played candidate that was not asked).

        ``keep_contexts`` records what the reward gets as ``context`` at each step
        (``env.reward_contexts()``), for agents that call the reward's table themselves: the
        shown token, or the true history for a reward that declares a ``history_length``.
        """
        if sampler is None and self.env.setup.feed_probability > 0:
            raise ValueError(
                "this env feeds the agent's actions back (feed='action'), so the rollout needs a sampler: "
                "stepping with the fixed action would show it as the next token"
            )
        if self._pending is not None:
            # The update never asked for the features; the next segment still needs the state
            # at this one's end (computed now, under the current parameters).
            with torch.no_grad():
                self.features(self._pending)
        n, v = self.num_envs, self.model.config.vocab_size
        tokens = np.empty((n, steps), dtype=np.int64)
        targets = np.empty((n, steps), dtype=np.int64)
        starts = np.empty((n, steps), dtype=bool)
        hidden0 = self.model.detach_hidden(self._hidden)
        actions = rewards = probs = allowed_all = None
        contexts: np.ndarray | None = None
        if sampler is not None:
            if self._probs is None or self._probs.shape != (n, steps, v):
                self._probs = torch.empty((n, steps, v), device=self.device)
            probs = self._probs
        hidden = hidden0
        for t in range(steps):
            tokens[:, t] = self._obs
            starts[:, t] = self._starts
            targets[:, t] = self.env.targets()
            if keep_contexts:
                step_contexts = self.env.reward_contexts()
                if contexts is None:
                    contexts = np.empty((n, steps, step_contexts.shape[1]), dtype=np.int64)
                contexts[:, t] = step_contexts
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
                    if not score:
                        rewards[..., 1:] = float("nan")  # only the stepped action is scored
                actions[:, t] = candidates
                cand = candidates.cpu().numpy()
                step_actions = cand[:, 0]
                if ask is not None:
                    allowed = ask(candidates, step_probs)
                    if allowed_all is None:
                        allowed_all = torch.empty((n, steps, k), dtype=torch.bool, device=self.device)
                    allowed_all[:, t] = allowed
                    asked = self._ask_in_order(cand, allowed.cpu().numpy())
                    rewards[:, t] = torch.from_numpy(float32_rewards(asked))
                elif score:
                    rewards[:, t] = torch.from_numpy(float32_rewards(self.env.score(cand)))
            obs, step_rewards, terminated, truncated, _ = self.env.step(step_actions)
            if sampler is not None and (ask is not None or not score):
                # Asking one at a time, the step paid an asked candidate with its answer, and a
                # played one nobody asked about (a trusted memory's) with the reward's own.
                rewards[:, t, 0] = torch.from_numpy(float32_rewards(step_rewards))
            self._obs = np.asarray(obs)[:, 0]
            self._starts = np.logical_or(terminated, truncated)
        self._pending = Segment(
            tokens=torch.from_numpy(tokens).to(self.device),
            targets=torch.from_numpy(targets).to(self.device),
            starts=torch.from_numpy(starts).to(self.device),
            hidden=hidden0,
            actions=actions,
            rewards=rewards,
            probs=probs,
            reward_contexts=contexts,
            allowed=allowed_all,
        )
        return self._pending

    def _ask_in_order(self, candidates: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        """(N, K) rewards of the candidates a sequential querier asks: in order, up to each
        stream's first positive reward, within ``allowed``; 0 for the others."""
        rewards = np.zeros(candidates.shape, np.float64)
        open_ = np.ones(len(candidates), np.bool_)
        for j in range(candidates.shape[1]):
            streams = np.flatnonzero(open_ & allowed[:, j])
            if streams.size == 0:
                continue
            answers = self.env.score(candidates[streams, j : j + 1], streams)[:, 0]
            rewards[streams, j] = answers
            open_[streams[answers > 0]] = False
        return rewards

    def features(self, segment: Segment) -> torch.Tensor:
        """RNN outputs (N, T, H) of the segment just collected, with gradient, in one fused pass.

        One RNN call per stretch between episode starts: the state is zeroed where a stream's
        episode begins, which a single call over the segment could not do. With window episodes
        all streams restart together, so this is one or two calls per segment. The final state
        becomes the start of the next segment. Call it before the optimizer step, so it runs
        with the parameters the segment was collected with. With dropout it also recomputes the
        segment's π at these features (one more pass of the output layer), since the masks differ
        from the rollout's.
        """
        if segment is not self._pending:
            raise ValueError("Rollout.features takes the segment of the last collect, once")
        self._pending = None
        model = self.model
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
        self._hidden = model.detach_hidden(hidden)
        features = torch.cat(outputs, 1) if len(outputs) > 1 else outputs[0]
        if segment.probs is not None and model.training and model.config.dropout > 0:
            # This pass drew new dropout masks, so the rollout's π is not the π at these
            # features, and an update that took it would not follow its own objective's gradient
            # (with the masks out of step, it grew overconfident). The candidates, drawn from
            # the rollout's π, remain a proposal that never looked at the target.
            with torch.no_grad():
                segment.probs.copy_(torch.softmax(model.head(features), -1))
        return features


def float32_rewards(values: np.ndarray) -> np.ndarray:
    """The rewards in the model's float32; one that is finite in float64 but not here would turn
    every parameter into NaN at the next update, so it stops the run instead."""
    with np.errstate(over="ignore"):
        rewards = np.asarray(values, dtype=np.float32)
    if not np.isfinite(rewards).all():
        worst = np.asarray(values, dtype=np.float64).flat[int(np.argmin(np.isfinite(rewards)))]
        raise IrlmError(f"a reward of {worst:g} is beyond float32's range (about 3.4e38), which the agents train in; "
                        "scale the reward down")
    return rewards
