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
