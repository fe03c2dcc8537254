"""A label-free prior for bandit agents: the model's mean prediction should match the word frequencies.

The feedback's likelihood tells a bandit agent which tokens are wrong in a context (the miss
term ``log(1 - π(S))``), but it is indifferent to how the mass left over is shared among the
tokens never proposed there, and those are most of the vocabulary. A model trained on it
spreads that mass too evenly, onto rare words, and no answer corrects it.

How often each word comes next *overall* is known without any label: it is the unigram
frequency of the text the agent reads as its observations, the same counts ``--unigram-init``
starts the output bias at (no reward is involved). This term maximises
``Σ_v u_v log π̄_v``, the log-likelihood of those frequencies under the model's predicted
distribution averaged over contexts, ``π̄``. It says nothing about any one context: it only
moves mass between words everywhere in proportion to how far the model's average is from the
text's, which the per-context feedback then sorts out. At the fixed point ``π̄ = u`` it is zero.

``π̄`` is the mean over the segment being updated (1,120 contexts in the benchmarks; under
torchrun, each process's own streams), and the gradient flows through it exactly. A running
mean over earlier segments would be steadier but stale: the model moves between updates, and
on a small corpus the lag made it overshoot and diverge.

A segment is a few stretches of consecutive text, though, and where a text's vocabulary
changes from place to place (a manual's chapters, a wiki's articles) the words coming next
there are not the whole text's: the prior pulls a model that is right about them towards the
whole text's frequencies. :class:`RecentWords` mixes into the target the words each stream
read just before the segment (the previous segment's observations: past text, never the words
being predicted), at the share that best predicts the next words of the train split
(:func:`fit_recent_share`, fitted once with no reward). On text with no such locality the fit
gives a share near 0 and the target stays the word frequencies.
"""

from __future__ import annotations

import numpy as np
import torch

from irlm_env.errors import IrlmError

#: Segments sampled from the train split to fit the recent words' share; the share's
#: log-likelihood is concave, and at this many its argmax moves by less than the grid's 0.01.
FIT_SEGMENTS = 300


def marginal_scores(probs: torch.Tensor, unigram: torch.Tensor, weight: float, scale: float) -> torch.Tensor:
    """Per-word scores ρ (V,) whose term in the logits' direction is this prior's gradient.

    With ``π̄`` the mean of the M rows of ``probs``, ``∂/∂π_iv = weight·u_v / (M π̄_v)``, and
    through the softmax of row i that is ``π_iv (ρ_v - Σ_w π_iw ρ_w)`` with
    ``ρ = weight·scale·u / π̄``; ``scale`` is that ``1 / M`` (the agents scale every term by one
    over the number of contexts). :func:`irlm_agents.native.gradients.policy_gradient_logits`
    adds that term in the pass that builds the feedback's direction.
    """
    mean = probs.mean(0).clamp_min_(torch.finfo(probs.dtype).tiny)
    return torch.div(unigram, mean, out=mean).mul_(weight * scale)


def unqueried_share_terms(
    probs: torch.Tensor, scores: torch.Tensor, actions: torch.Tensor, queried: torch.Tensor | None,
    share: float, scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (B, K) and π-coefficients (B,) that keep ``share`` of the prior off the queried tokens.

    The feedback already sets the mass of the tokens queried in a context (a hit raises it, a
    miss lowers it), and the prior, which knows nothing of that context, pulls on them too.
    This term gives ``share`` of the prior's push to the tokens the feedback said nothing about
    there instead: in row i, with ``Q`` its queried tokens, that share of the direction becomes
    ``π_v (ρ_v - c_Q)`` outside ``Q`` and 0 on it, ``c_Q`` being the ρ-mean of π outside ``Q``,
    so the mass of ``Q`` stays where the feedback put it. Added to the whole prior's direction
    ``π (ρ - π·ρ)`` (:func:`marginal_scores`) it is a shift of each row's coefficient and a
    weight on each queried token, the form
    :func:`irlm_agents.native.gradients.policy_gradient_logits` takes, so it costs no second
    (B, V) array.

    ``actions`` must be distinct where ``queried`` (default: all) is set. ``scores`` come from
    :func:`marginal_scores` with this ``scale``; the results are in the units before it, as
    the feedback's own weights are.
    """
    cand = probs.gather(1, actions)
    if queried is not None:
        cand = cand * queried
    cand_scores = scores[actions]
    row_mean = probs @ scores
    off_mass = (1 - cand.sum(-1)).clamp_min(torch.finfo(probs.dtype).tiny)
    off_mean = (row_mean - (cand * cand_scores).sum(-1)) / off_mass
    # A mean of ρ over the tokens outside Q lies within ρ's range; rounding where Q holds nearly
    # all the mass must not push a queried token harder than the prior itself could.
    off_mean = off_mean.clamp(scores.min(), scores.max())
    return (
        cand * (off_mean[:, None] - cand_scores) * (share / scale),
        (off_mean - row_mean) * (share / scale),
    )


def fit_recent_share(tokens: np.ndarray, unigram: np.ndarray, streams: int, steps: int,
                     rng: np.random.Generator) -> float:
    """The share λ in ``(1 - λ) u + λ r`` that best predicts a segment's next words, on a grid of 0.01.

    ``r`` is the word frequencies of the ``steps`` tokens each of ``streams`` streams read just
    before the segment, pooled, as :class:`RecentWords` forms it during training. The fit reads
    the train split ``tokens`` as the agents read their observations, and no reward.
    """
    if len(tokens) < 2 * steps + 2:
        raise IrlmError(
            f"the train split has {len(tokens)} tokens, too few to fit the recent words' share over segments "
            f"of {steps} steps; use a longer corpus or drop --marginal-recent"
        )
    vocab = len(unigram)
    starts = rng.integers(steps, len(tokens) - steps, size=(FIT_SEGMENTS, streams))
    recent = tokens[starts[..., None] + np.arange(-steps, 0)].astype(np.int64).reshape(FIT_SEGMENTS, -1)
    upcoming = tokens[starts[..., None] + np.arange(1, steps + 1)].astype(np.int64).reshape(FIT_SEGMENTS, -1)
    rows = np.arange(FIT_SEGMENTS)[:, None] * vocab
    counts = np.bincount((rows + recent).ravel(), minlength=FIT_SEGMENTS * vocab)
    from_recent = counts[(rows + upcoming).ravel()] / recent.shape[1]
    from_unigram = unigram[upcoming.ravel()]
    shares = np.linspace(0.0, 0.99, 100)  # at 1 a word unread before would get no mass
    fits = [np.log((1 - share) * from_unigram + share * from_recent).mean() for share in shares]
    return float(shares[int(np.argmax(fits))])


class RecentWords:
    """The marginal prior's target: the word frequencies mixed with what each stream just read.

    Call :meth:`target` with a segment's episode starts before its update, then :meth:`read`
    with its tokens. A stream whose episode began in the segment jumped to another place in the
    text, so what it read before says nothing of it: it counts the word frequencies instead.
    """

    def __init__(self, unigram: torch.Tensor, share: float) -> None:
        self.unigram, self.share = unigram, share
        self._recent: torch.Tensor | None = None  # (N, V) each stream's last segment's word frequencies

    def target(self, starts: torch.Tensor) -> torch.Tensor:
        """(V,) the target for a segment whose episode starts are ``starts`` (N, T)."""
        if self._recent is None or not self.share:
            return self.unigram
        moved = starts.any(1, keepdim=True)
        streams = torch.where(moved, self.unigram, self._recent).mean(0)
        return (1 - self.share) * self.unigram + self.share * streams

    def read(self, tokens: torch.Tensor) -> None:
        """Remember the tokens (N, T) the streams showed in a segment, for the next one's target."""
        counts = torch.zeros(tokens.shape[0], len(self.unigram), dtype=self.unigram.dtype, device=tokens.device)
        self._recent = counts.scatter_add_(1, tokens, torch.ones_like(tokens, dtype=counts.dtype)).div_(tokens.shape[1])
