"""Policy-gradient estimators and exact objectives as pure functions, so their maths can be tested alone.

Every bandit estimator here is written in one shape: per context (row) a few sampled tokens
``actions`` (B, K) with scalar weights ``weights`` (B, K), so that the ascent direction in logit
space is ``Σ_k w_k (onehot(a_k) - π)``, the gradient of ``Σ_k w_k log π(a_k)``.
:mod:`irlm_agents.native.gradients` turns those weights into parameter gradients without
recomputing the model's head. The exact objectives (full information: the true token or the
reward table) are ordinary losses, means over contexts, to be minimised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from irlm_env.errors import IrlmError

#: Baselines understood by :func:`reinforce_weights`.
BASELINES = ("none", "mean", "critic")
#: Group estimators understood by :func:`group_weights`.
ESTIMATORS = ("rloo", "grpo", "logexp")


def reinforce_weights(rewards: torch.Tensor, baseline: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Per-sample weights ``R - b`` of REINFORCE; with ``b = 0`` this is the seed's rule."""
    return rewards - baseline


def rloo_weights(rewards: torch.Tensor) -> torch.Tensor:
    """Leave-one-out advantages ``R_k - mean_{j≠k} R_j`` divided by K (unbiased for ∇E[R] with replacement)."""
    k = rewards.shape[-1]
    if k < 2:
        raise ValueError(f"RLOO needs at least 2 samples per context, got K={k}; use K >= 2")
    others = (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)
    return (rewards - others) / k


def grpo_weights(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Group-normalised advantages ``(R_k - mean R) / (std R + eps)`` divided by K (GRPO-style).

    All-equal groups get zero weight: they carry no information about which token is better.
    """
    k = rewards.shape[-1]
    centred = rewards - rewards.mean(-1, keepdim=True)
    return centred / (rewards.std(-1, unbiased=False, keepdim=True) + eps) / k


def logexp_weights(rewards: torch.Tensor) -> torch.Tensor:
    """Weights ``R_k / Σ_j R_j`` of the log-expected-reward objective ``E_context[log E_a R]``.

    For samples drawn from π, ``Σ_k R_k ∇log π(a_k) / Σ_k R_k`` is a (self-normalised) estimate of
    ``∇E[R] / E[R] = ∇log E[R]``. Contexts where every sampled reward is 0 get zero weight. With
    the 0/1 reward and distinct candidates that contain the target, it is exactly ``∇log π(y)``
    on that context: the supervised gradient, earned from bandit feedback.
    """
    total = rewards.sum(-1, keepdim=True)
    return torch.where(total > 0, rewards / total.clamp_min(1e-12), torch.zeros_like(rewards))


def importance_ratios(logits: torch.Tensor, actions: torch.Tensor, temperature: float) -> torch.Tensor:
    """``π(a) / π_T(a)`` (B, K) for actions drawn with replacement from ``π_T = softmax(logits / T)``.

    A policy gradient weighs ``∇log π(a)``; when the actions came from the tempered policy, each
    weight times this ratio keeps the estimate of ``∇E_π[R]`` unbiased, and keeps a baseline a
    pure variance reduction (``E_π_T[ratio · b ∇log π] = b E_π[∇log π] = 0``). Computed from the
    logits in float64, so that tokens whose probability underflows a float32 softmax still count.
    """
    logits = logits.double()
    tempered = torch.log_softmax(logits / temperature, -1).gather(1, actions)
    return torch.exp(torch.log_softmax(logits, -1).gather(1, actions) - tempered).float()


def group_weights(estimator: str, rewards: torch.Tensor) -> torch.Tensor:
    """Dispatch to one of :data:`ESTIMATORS`."""
    if estimator == "rloo":
        return rloo_weights(rewards)
    if estimator == "grpo":
        return grpo_weights(rewards)
    if estimator == "logexp":
        return logexp_weights(rewards)
    raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")


def miss_terms(
    probs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, queried: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and π-coefficients of ``log(1 - π(S))`` on contexts where every candidate scored 0.

    A miss still says something: the queried set S does not hold a rewarded token. Maximising
    ``log(1 - π(S))`` moves mass off S; its logit gradient is ``-(onehot(S)π - π(S)π) / (1 - π(S))``,
    i.e. weights ``-π(a_k)/(1-π(S))`` and coefficient ``-π(S)/(1-π(S))`` in the form used by
    :func:`irlm_agents.native.gradients.policy_gradient_logits`. ``actions`` must be distinct
    per row (sampling without replacement) for π(S) to be the sum of the candidates'
    probabilities. ``queried`` (B, K) marks the candidates whose reward was asked for (default:
    all); the others are not in S. A set that covers the whole vocabulary and still missed (a
    context whose next word varies, in a small vocabulary) has no likelihood to raise: its row
    gets no miss term.
    """
    cand = probs.gather(1, actions)
    if queried is not None:
        cand = cand * queried
    size = actions.shape[1] if queried is None else queried.sum(-1)
    mass = cand.sum(-1).clamp(max=1.0 - 1e-6)
    miss = ((rewards.sum(-1) <= 0) & (size < probs.shape[-1])).to(probs.dtype)
    scale = miss / (1.0 - mass)
    return -cand * scale[:, None], -mass * scale


def expected_reward_loss(
    logits: torch.Tensor, table: torch.Tensor, log: bool = False, signal_contexts: torch.Tensor | None = None
) -> torch.Tensor:
    """Exact ``-E_a~π[R]`` (or ``-log E_a~π[R]``) per context, averaged: zero-variance gradient.

    ``table`` (B, V) holds the reward of every token. With ``log=True`` and the 0/1 reward this is
    *exactly* cross-entropy (``log E[R] = log π(y)``): full-information feedback, not bandit
    feedback. Contexts whose table is all zero carry no signal for ``log E[R]`` and are skipped.
    Rewards must be non-negative for the log form. ``signal_contexts`` is the count the log
    form divides by (default: this batch's contexts with a signal); data-parallel training
    passes the mean count per process, so that averaged gradients are the whole batch's.
    """
    if not log:
        return -(F.softmax(logits, -1) * table).sum(-1).mean()
    if bool((table < 0).any()):
        raise IrlmError("log E[R] needs non-negative rewards; use the E[R] objective (--objective er) for signed "
                        "rewards")
    has_signal = table.sum(-1) > 0
    log_table = torch.where(table > 0, table.clamp_min(1e-30).log(), torch.full_like(table, float("-inf")))
    # A row of -inf would give a NaN gradient through the masking below; those rows drop out anyway.
    log_table = torch.where(has_signal[:, None], log_table, torch.zeros_like(log_table))
    log_expected = torch.logsumexp(logits + log_table, -1) - torch.logsumexp(logits, -1)
    n = has_signal.sum() if signal_contexts is None else signal_contexts
    # With no signal anywhere the sum is 0 and any positive divisor gives the zero loss.
    return -torch.where(has_signal, log_expected, torch.zeros_like(log_expected)).sum() / n.clamp_min(1e-12)


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Teacher-forced cross-entropy: the supervised reference, fused by ``F.cross_entropy``.

    ``keep`` (shaped like ``targets``, 0/1) labels only some tokens: the loss is the kept tokens'
    summed negative log-likelihood over *all* tokens, the scale of a bandit update that learns
    from the contexts where a candidate hit, so the two differ only in which tokens they learn.
    """
    flat_logits, flat_targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    if keep is None:
        return F.cross_entropy(flat_logits, flat_targets)
    nll = F.cross_entropy(flat_logits, flat_targets, reduction="none")
    return (nll * keep.reshape(-1).to(nll.dtype)).sum() / nll.numel()
