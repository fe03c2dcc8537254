"""The next-token distribution both SB3 policies share, and its fast sampling and gradient.

``RNNLanguagePolicy`` (a context window, for PPO and A2C) and ``RecurrentLanguagePolicy`` (a
carried hidden state, for sb3-contrib's RecurrentPPO) differ only in how they reach the RNN
features; from the model's logits on, they use the functions here.
"""

from __future__ import annotations

from typing import Any

import torch
from stable_baselines3.common.distributions import CategoricalDistribution
from torch.distributions import Categorical

from irlm_agents.lm.sampling import sample_from_cdf
from irlm_env.errors import IrlmError


def token_ids(observations: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The observation as integer token ids, refused if any lies outside the vocabulary.

    SB3 stores observations as float in some code paths, so they are cast back to ids. An id
    out of range means the env speaks another vocabulary than the policy (a training and an
    evaluation env built with different corpus options, say); the embedding would otherwise
    fail deep inside torch with ``IndexError: index out of range in self``.
    """
    ids = observations.long()
    if observations.is_floating_point() and not torch.equal(ids.to(observations.dtype), observations):
        # VecNormalize (norm_obs=True) and its like turn ids into scaled floats; cast, they would
        # be a few small ids and train without an error.
        raise IrlmError(
            "the observation holds values that are not whole numbers, so not token ids: a wrapper scaled "
            "the env's observations. Token ids must reach the policy unchanged: build VecNormalize with "
            "norm_obs=False (normalising rewards is fine), or leave out the wrapper that changes them"
        )
    if ids.numel():
        low, high = torch.aminmax(ids)
        if low < 0 or high >= vocab_size:
            bad = int(high) if high >= vocab_size else int(low)
            source = (f"the env's vocabulary has at least {bad + 1} tokens" if bad >= 0
                      else "token ids are never negative, so this is not an irlm/NextWord-v0 observation")
            raise IrlmError(
                f"the observation holds token id {bad}, outside the policy's vocabulary of {vocab_size} "
                f"tokens (ids 0..{vocab_size - 1}); {source}. Build every env the policy sees (training "
                "and evaluation) with the same corpus options (with rl_zoo3: give them with --env-kwargs, "
                "which both envs get, not in the hyperparameter file)"
            )
    return ids


class TokenDistribution(CategoricalDistribution):
    """SB3's categorical distribution over next tokens, computed with fewer passes.

    At a 10,000-token vocabulary the distribution, not the network, was a large share of a
    rollout step: torch's ``Categorical`` validates its arguments, normalises the logits with
    ``logsumexp``, computes ``softmax`` again for sampling, and ``torch.multinomial`` is slow on
    the CPU. Here one ``log_softmax`` serves log-probabilities, entropy and sampling, and
    sampling is inverse-CDF (:func:`draw_tokens`), which draws exactly from the same
    distribution. ``log_probs`` holds the (batch, vocabulary) log-probabilities.
    """

    log_probs: torch.Tensor

    @property  # type: ignore[override]
    def distribution(self) -> Categorical:
        """torch's ``Categorical`` of the same log-probabilities, built only when asked for.

        SB3's ``kl_divergence`` (sb3-contrib's TRPO) and code reading ``.distribution.probs``
        use it; building it at every step is the cost this class avoids.
        """
        return Categorical(logits=self.log_probs, validate_args=False)

    @distribution.setter
    def distribution(self, value: None) -> None:
        # SB3's Distribution.__init__ sets None; every later value comes from log_probs.
        if value is not None:
            raise AttributeError("TokenDistribution.distribution follows log_probs; set those with proba_distribution")

    def proba_distribution(self, action_logits: torch.Tensor) -> TokenDistribution:  # type: ignore[override]
        self.log_probs = torch.log_softmax(action_logits, dim=-1)
        return self

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.log_probs.gather(-1, actions.long().reshape(-1, 1)).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        return -(self.log_probs.exp() * self.log_probs).sum(-1)

    def sample(self) -> torch.Tensor:
        return draw_tokens(self.log_probs.detach(), deterministic=False)[0]

    def mode(self) -> torch.Tensor:
        return self.log_probs.argmax(-1)


def draw_tokens(logits: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Actions (sampled, or argmax) and their log-probabilities, for the rollout hot path.

    Uses the unnormalised weights ``exp(logits - max)`` for everything: their running sum is
    the inverse-CDF table for :func:`irlm_agents.lm.sampling.sample_from_cdf` and its last column
    the normaliser, so no separate softmax or log-softmax pass over the vocabulary is needed.
    """
    top = logits.max(dim=-1, keepdim=True).values
    weights = (logits - top).exp_()
    if deterministic:
        actions = logits.argmax(dim=-1)
        total = weights.sum(dim=-1)
    else:
        cdf = weights.cumsum_(dim=-1)
        total = cdf[:, -1]
        actions = sample_from_cdf(cdf, 1).squeeze(-1)
    log_prob = logits.gather(-1, actions[:, None]).squeeze(-1) - top.squeeze(-1) - total.log()
    return actions, log_prob


class LogProbEntropy(torch.autograd.Function):
    """``log π(a)`` and the entropy of ``softmax(logits)`` with a hand-written backward.

    Autograd's version of ``log_softmax -> gather`` plus ``-(exp(lp) * lp).sum()`` keeps several
    (batch, vocabulary) intermediates and walks them all in backward; at a 10,000-token
    vocabulary those memory-bound passes cost more than the output layer's matrix products. The
    gradient has a closed form, ``-p * (c + g_ent * log p) + g_lp * onehot(a)`` with
    ``c = g_lp + g_ent * H``, which takes two passes given the saved ``log p`` and ``p``.
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs = torch.log_softmax(logits, dim=-1)
        probs = log_probs.exp()
        entropy = -torch.linalg.vecdot(probs, log_probs)
        index = actions.long().reshape(-1, 1)
        ctx.save_for_backward(log_probs, probs, index, entropy)
        return log_probs.gather(-1, index).squeeze(-1), entropy

    @staticmethod
    def backward(ctx: Any, grad_log_prob: torch.Tensor, grad_entropy: torch.Tensor) -> tuple[torch.Tensor, None]:
        log_probs, probs, index, entropy = ctx.saved_tensors
        shift = (grad_log_prob + grad_entropy * entropy).neg_()[:, None]
        grad = torch.addcmul(shift, log_probs, grad_entropy.neg()[:, None]).mul_(probs)
        grad.scatter_add_(-1, index, grad_log_prob[:, None])
        return grad, None


