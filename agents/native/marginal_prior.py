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
"""

from __future__ import annotations

import torch


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
