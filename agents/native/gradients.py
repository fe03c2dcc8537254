"""From an estimator's weights to parameter gradients, without running the output layer again.

The bandit estimators (:mod:`irlm_agents.native.estimators`) give, per context, a few sampled
tokens ``a_k`` with scalar weights ``w_k``. Their ascent direction in logit space is
``Σ_k w_k (onehot(a_k) - π)``, the gradient of ``Σ_k w_k log π(a_k)``:
:func:`policy_gradient_logits` builds it densely (M, V) from the probabilities the rollout
already computed. :func:`head_surrogate` then backpropagates that direction through the model's
head at the recomputed RNN features (see :meth:`irlm_agents.native.rollout.Rollout.features`):
parameters do not change between rollout and update, so the rollout's π is the π of the
update, and the vocabulary-sized logits are computed once per token, not twice (with dropout,
whose masks differ between the two passes, ``Rollout.features`` recomputes π once more).

Vocabulary-sized arrays are the update's main cost, and allocating a fresh one costs page
faults comparable to a matrix product, so the direction is written into a :class:`Workspace`
the agent keeps from one update to the next.
"""

from __future__ import annotations

import torch

from irlm_agents.lm.model import RNNLanguageModel


class Workspace:
    """A vocabulary-wide float buffer an update writes its scratch into, reused across updates.

    Owned by the agent's update, never by a segment: the segment's probabilities stay as the
    rollout computed them.
    """

    def __init__(self, columns: int, device: torch.device) -> None:
        self.columns = columns
        self.device = device
        self._buffer: torch.Tensor | None = None

    def rows(self, count: int) -> torch.Tensor:
        """A (count, columns) view, valid until the next call; grown only when too small."""
        if self._buffer is None or self._buffer.shape[0] < count:
            self._buffer = torch.empty((count, self.columns), device=self.device)
        return self._buffer[:count]


def policy_gradient_logits(
    probs: torch.Tensor,
    actions: torch.Tensor,
    weights: torch.Tensor,
    coefficient: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
    *,
    scale: float = 1.0,
    scores: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Ascent direction on the logits: ``scale·(scatter(w) - c·π)`` (+ entropy, + scores terms), (B, V).

    ``c`` defaults to ``Σ_k w_k``, which makes this exactly ``∇_z Σ_k w_k log π(a_k)``. With
    ``entropy_coef = β`` it adds ``β ∇_z H(π) = -β π (log π + H)``. With per-word ``scores`` ρ
    (V,), already scaled, it adds ``∇_z Σ_v ρ_v π_v = π (ρ - π·ρ)``: a term that reaches every
    word (:mod:`irlm_agents.native.marginal_prior`) costs one more multiplication by π, not a
    second (B, V) direction. ``scale`` (e.g. one over the number of contexts) is folded into the
    small factors rather than applied to the (B, V) result, and ``out`` receives the result (it
    may be ``probs`` itself when there is neither an entropy nor a scores term): every fresh
    vocabulary-sized array costs page faults comparable to a matrix product.
    """
    if out is probs and (entropy_coef or scores is not None):
        raise ValueError("the entropy and scores terms need probs intact; pass an out buffer other than probs")
    if coefficient is None:
        coefficient = weights.sum(-1)
    coefficient = coefficient.to(probs.dtype)[:, None] * scale
    if scores is not None:
        coefficient = coefficient + (probs @ scores)[:, None]
    if entropy_coef:
        direction = torch.log(probs, out=out).clamp_min_(-69.0)  # log π, finite where π underflowed
        entropy = -torch.bmm(probs.unsqueeze(1), direction.unsqueeze(2))[:, 0]
        direction.add_(entropy).mul_(probs).mul_(-entropy_coef * scale).addcmul_(probs, -coefficient)
        if scores is not None:
            direction.addcmul_(probs, scores)
    elif scores is not None:
        direction = torch.sub(scores, coefficient, out=out).mul_(probs)
    else:
        direction = torch.mul(probs, -coefficient, out=out)
    direction.scatter_add_(1, actions, weights.to(probs.dtype) * scale)
    return direction


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
