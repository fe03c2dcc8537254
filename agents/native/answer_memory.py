"""Answer memory: what the reward said about a bandit agent's proposals, kept per observed context.

A bandit agent's feedback is spent on one update and then forgotten, yet on every pass through
a corpus the same contexts come back, and the agent asks again about tokens it has already been
told about. This memory keeps, for each context of the last ``context`` tokens the agent
observed (the env's observations: never the true next token), the token that was rewarded
there, or else the tokens that were queried there and missed. The group agent then proposes a
known answer first (so one query finds it), never proposes a rejected token again, and lets its
miss term say that the target is none of the tokens rejected there so far. The memory holds
nothing that the rewards of the agent's own proposals did not say, and it is used to choose what
to ask (and, with ``trust_memory``, to stand in for the reward of a known answer): the model is
evaluated without it.

It assumes the 0/1 reward's shape, at most one rewarded token per context, as ``stop_at_hit``
does. A context whose answers disagree (a rewarded token other than the known one, or a token
rewarded that had been rejected there: the same tokens followed by different words in
different places) is marked unreliable and ignored from then on.

Each process of a torchrun run keeps the memory of its own streams. A run directory does not
save it: a model trained with it is an ordinary model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: Rejected tokens kept per context. A context that stays unanswered past this many misses is
#: one the model ranks the target far down in; more exclusions would cost memory for little.
MAX_REJECTED = 64


@dataclass
class Recall:
    """What the memory said at one step, for each stream."""

    keys: list[bytes | None]  # the stream's context, None before it has seen ``context`` tokens
    known: np.ndarray  # (N,) int64: the token rewarded there before, -1 where none
    rejected: list[list[int]]  # the tokens that missed there before (empty where known)
    exclude: tuple[torch.Tensor, torch.Tensor]  # (rows, tokens) the draws must keep clear of

    def known_first(self, candidates: torch.Tensor) -> torch.Tensor:
        """Candidates (N, K) with each known answer put first; the draws were kept clear of it."""
        rows = np.flatnonzero(self.known >= 0)
        if rows.size:
            index = torch.from_numpy(rows).to(candidates.device)
            candidates[index, 1:] = candidates[index, :-1].clone()
            candidates[index, 0] = torch.from_numpy(self.known[rows]).to(candidates.device)
        return candidates


class AnswerMemory:
    """The answers of ``streams`` parallel streams, keyed by each one's last ``context`` observations.

    Call :meth:`recall` once per step with the tokens the streams show (before the policy picks
    its candidates), then, after the segment, :meth:`rejected_before` for the miss term and
    :meth:`learn` with the segment's queried candidates and rewards.
    """

    def __init__(
        self, streams: int, context: int, device: torch.device, max_rejected: int = MAX_REJECTED
    ) -> None:
        self.context = context
        self.device = device
        self.max_rejected = max_rejected
        self._history = np.zeros((streams, context), dtype=np.int64)
        self._seen = np.zeros(streams, dtype=np.int64)  # observations since the episode began
        self._answers: dict[bytes, int] = {}
        self._rejected: dict[bytes, list[int]] = {}
        self._unreliable: set[bytes] = set()
        self._steps: list[Recall] = []  # the recalls of the segment being played
        self._known_share = 0.0  # of the last segment's contexts, those with a known answer

    def stats(self) -> dict[str, float]:
        """How many contexts have an answer, only rejections, or conflicting answers, and the share
        of the last segment's steps that met a known answer (what ``trust_memory`` asks nothing about)."""
        return {
            "answered": float(len(self._answers)),
            "rejected_only": float(len(self._rejected)),
            "unreliable": float(len(self._unreliable)),
            "known_share": self._known_share,
        }

    def recall(self, shown: np.ndarray, starts: np.ndarray) -> Recall:
        """Add this step's observations (``starts``: an episode begins) and look up each context."""
        self._seen[starts] = 0
        self._history[:, :-1] = self._history[:, 1:]
        self._history[:, -1] = shown
        self._seen += 1
        streams = len(shown)
        keys: list[bytes | None] = [None] * streams
        known = np.full(streams, -1, dtype=np.int64)
        rejected: list[list[int]] = [[] for _ in range(streams)]
        rows: list[int] = []
        tokens: list[int] = []
        for i in np.flatnonzero(self._seen >= self.context).tolist():
            key = keys[i] = self._history[i].tobytes()
            answer = self._answers.get(key)
            if answer is not None:
                known[i] = answer
                rows.append(i)
                tokens.append(answer)
            elif key in self._rejected:
                rejected[i] = self._rejected[key]
                rows.extend([i] * len(rejected[i]))
                tokens.extend(rejected[i])
        exclude = (
            torch.tensor(rows, dtype=torch.int64, device=self.device),
            torch.tensor(tokens, dtype=torch.int64, device=self.device),
        )
        step = Recall(keys=keys, known=known, rejected=rejected, exclude=exclude)
        self._steps.append(step)
        return step

    def rejected_before(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens rejected at each context of the segment before it was played, for the miss term.

        Returns tokens (N·T, R) and a mask of the real entries (N·T, R), rows in the segment's
        (stream, step) order; R is the longest list (at least 1, so the shapes stay valid).
        """
        steps, streams = len(self._steps), len(self._history)
        width = max([1] + [len(r) for step in self._steps for r in step.rejected])
        tokens = np.zeros((streams, steps, width), dtype=np.int64)
        mask = np.zeros((streams, steps, width), dtype=bool)
        for t, step in enumerate(self._steps):
            for i, rejected in enumerate(step.rejected):
                if rejected:
                    tokens[i, t, : len(rejected)] = rejected
                    mask[i, t, : len(rejected)] = True
        return (
            torch.from_numpy(tokens.reshape(streams * steps, width)).to(self.device),
            torch.from_numpy(mask.reshape(streams * steps, width)).to(self.device),
        )

    def _known(self) -> np.ndarray:
        """Which contexts of the segment had a known answer when played: (N, T) bool."""
        return np.stack([step.known for step in self._steps], 1) >= 0

    def known_rows(self) -> torch.Tensor:
        """:meth:`_known` as a tensor of (N·T,) rows, in the segment's (stream, step) order."""
        return torch.from_numpy(self._known().reshape(-1)).to(self.device)

    def learn(self, actions: torch.Tensor, rewards: torch.Tensor, queried: torch.Tensor) -> None:
        """Record the segment's feedback: candidates (N, T, K), their rewards and the queried mask.

        Only queried candidates count; the first rewarded one is the context's answer.
        """
        if actions.shape[1] != len(self._steps):
            raise ValueError(f"learn got {actions.shape[1]} steps but {len(self._steps)} were recalled")
        # Only the queried entries leave the tensors, in (stream, step, candidate) order: an agent
        # with up to 32 candidates asks about 8 on average, and Python looks at what it asked.
        asked = queried.cpu().numpy()
        where = np.flatnonzero(asked)
        tokens = actions.cpu().numpy().ravel()[where].tolist()
        rewarded = (rewards.cpu().numpy().ravel()[where] > 0).tolist()
        counts = asked.sum(-1).ravel()
        ends = np.cumsum(counts)  # per (stream, step): where its queried entries end
        starts, ends = (ends - counts).tolist(), ends.tolist()
        steps = len(self._steps)
        self._known_share = float(self._known().mean()) if steps else 0.0
        for t, step in enumerate(self._steps):
            for i, key in enumerate(step.keys):
                if key is None or key in self._unreliable:
                    continue
                start, end = starts[i * steps + t], ends[i * steps + t]
                hit = next((tokens[j] for j in range(start, end) if rewarded[j]), None)
                self._record(key, tokens[start:end], hit)
        self._steps = []

    def _record(self, key: bytes, asked: list[int], hit: int | None) -> None:
        known = self._answers.get(key)
        if known is not None:
            if hit != known and (hit is not None or known in asked):
                self._forget(key)
            return
        rejected = self._rejected.get(key, [])
        if hit is not None:
            if hit in rejected:
                self._forget(key)
            else:
                self._answers[key] = hit
                self._rejected.pop(key, None)
            return
        new = [a for a in asked if a not in rejected][: self.max_rejected - len(rejected)]
        if new:
            self._rejected[key] = rejected + new

    def _forget(self, key: bytes) -> None:
        self._answers.pop(key, None)
        self._rejected.pop(key, None)
        self._unreliable.add(key)
