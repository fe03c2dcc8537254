"""Drawing tokens from the language model's next-token distribution, fast on a large vocabulary.

Two ways, each for the case it is cheapest in:

- **Inverse CDF** (:func:`sample_from_cdf`): one cumulative sum over the vocabulary, then all
  draws by one batched binary search. Far cheaper than ``torch.multinomial`` or Gumbel noise
  over ten thousand tokens, and any number of draws with replacement cost the same single sum.
- **Gumbel top-k** (:func:`gumbel_perturbed`): K *distinct* tokens, in the order a sequential
  sampler without replacement would draw them.

:func:`sample_candidates` picks between them for the native agents' samplers; the SB3 policy
draws its one action per step with :func:`sample_from_cdf`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

#: ``uniform(rows, columns, device, dtype)``: a (rows, columns) tensor of independent U[0, 1)
#: numbers, one row per sampled distribution. The default is ``torch.rand``; data-parallel
#: training passes one that keeps a process's rows of the whole batch's draw, so a row's
#: samples do not depend on how the batch is split (``irlm_agents.native.distributed``).
Uniform = Callable[[int, int, torch.device, torch.dtype], torch.Tensor]


def uniform_draws(rows: int, columns: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.rand(rows, columns, device=device, dtype=dtype)


def sample_from_cdf(cdf: torch.Tensor, k: int, uniform: Uniform = uniform_draws) -> torch.Tensor:
    """``k`` indices per row drawn with replacement from a cumulative table ``cdf`` (N, V).

    The table need not be normalised: each draw is a uniform number scaled by the row's total
    (its last column), so the running sum of unnormalised weights ``exp(logits - max)`` serves
    as well as that of probabilities, and no softmax pass is needed. Returns (N, k) int64.
    """
    draws = uniform(cdf.shape[0], k, cdf.device, cdf.dtype) * cdf[:, -1:]
    # Only a row holding NaN (a diverged model) sends the search past the last entry; clamped,
    # the index is still a token id rather than an out-of-range index into the embedding.
    return torch.searchsorted(cdf, draws).clamp_(max=cdf.shape[-1] - 1)


def gumbel_perturbed(scores: torch.Tensor, uniform: Uniform = uniform_draws) -> torch.Tensor:
    """``scores`` plus independent Gumbel(0, 1) noise, as ``-log(-log U)`` in place on one buffer.

    The top k of the result are k distinct draws from ``softmax(scores)`` without replacement.
    On CPU, ``Tensor.exponential_`` took about three times as long as a uniform draw and two
    logarithms; over a whole vocabulary it was the largest cost of a distinct-candidate rollout.
    """
    rows, columns = scores.shape
    return uniform(rows, columns, scores.device, scores.dtype).log_().neg_().log_().neg_().add_(scores)


def sample_candidates(
    logits: torch.Tensor,
    k: int,
    *,
    replacement: bool,
    temperature: float,
    truncate: int = 0,
    probs: torch.Tensor | None = None,
    uniform: Uniform = uniform_draws,
) -> torch.Tensor:
    """K candidate tokens per row of ``logits`` (N, V) from ``softmax(logits / temperature)``.

    With replacement: inverse CDF; ``probs``, the softmax of ``logits`` when the caller already
    computed it, saves the softmax at temperature 1. Without replacement: Gumbel top-k; with
    ``truncate = M > 0`` only the M most probable tokens are candidates, which makes the draw
    cost O(M) instead of O(V) and never proposes tokens from the far tail.
    ``temperature = 0`` takes the K most probable tokens deterministically. Returns (N, K) int64.
    """
    if temperature == 0:
        return logits.topk(k, dim=-1).indices
    scaled = logits / temperature if temperature != 1 else logits
    if replacement:
        cdf = probs.cumsum(-1) if probs is not None and temperature == 1 else F.softmax(scaled, -1).cumsum_(-1)
        return sample_from_cdf(cdf, k, uniform)
    if 0 < truncate < scaled.shape[-1]:
        top = scaled.topk(max(truncate, k), dim=-1)
        return top.indices.gather(-1, gumbel_perturbed(top.values, uniform).topk(k, dim=-1).indices)
    return gumbel_perturbed(scaled, uniform).topk(k, dim=-1).indices
