"""Drawing tokens from the language model's next-token distribution, fast on a large vocabulary.

Three ways, each for the case it is cheapest in:

- **Inverse CDF** (:func:`sample_from_cdf`): one cumulative sum over the vocabulary, then all
  draws by one batched binary search. Far cheaper than ``torch.multinomial`` or Gumbel noise
  over ten thousand tokens, and any number of draws with replacement cost the same single sum.
- **Inverse CDF without replacement** (:func:`sample_distinct_from_cdf`): K *distinct* tokens,
  in the order a sequential sampler without replacement draws them, from the same single sum
  and K binary searches; the draws are sequential, so it is for small K.
- **Gumbel top-k** (:func:`gumbel_perturbed`): the same distribution, for more than
  :data:`MAX_SEQUENTIAL_DRAWS` distinct tokens, and among the M most probable only
  (``truncate``), where the noise costs O(M).

:func:`sample_candidates` picks between them for the native agents' samplers; the SB3 policy
draws its one action per step with :func:`sample_from_cdf`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

#: ``uniform(rows, columns, device, dtype)``: a (rows, columns) tensor of independent U[0, 1)
#: numbers, one row per sampled distribution. The default is ``torch.rand``; data-parallel
#: training passes one that keeps a process's rows of the whole batch's draw, so a row's
#: samples do not depend on how the batch is split (``irlm_agents.native.distributed``).
Uniform = Callable[[int, int, torch.device, torch.dtype], torch.Tensor]


#: Up to this many distinct candidates, sequential inverse-CDF draws beat Gumbel noise over a
#: ten-thousand-token vocabulary on CPU (about six times faster at 8; slower from about 32).
MAX_SEQUENTIAL_DRAWS = 24


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


def sample_distinct_from_cdf(cdf: torch.Tensor, k: int, uniform: Uniform = uniform_draws) -> torch.Tensor:
    """``k`` distinct indices per row, as sequential draws without replacement from ``cdf`` (N, V) make them.

    Draw j is an inverse-CDF draw from the mass the first j draws left: a uniform number scaled
    to that mass is carried past the intervals of the tokens already drawn, then looked up by
    binary search. That is the distribution of Gumbel top-k, in the same order, for K uniform
    numbers per row where Gumbel noise needs a number and two logarithms per vocabulary entry.
    Use a float64 table: in float32 a number could land on the edge of a drawn token's interval.
    A row with fewer than ``k`` tokens of positive mass (or, in float64, a number landing on an
    edge after all) would repeat a token; such repeats are replaced by the row's most probable
    tokens not yet drawn, without a random number, so that every process of a data-parallel run
    keeps its generator in step. Returns (N, k) int64.
    """
    draws = uniform(cdf.shape[0], k, cdf.device, cdf.dtype)
    draw = _draw_distinct_numpy if cdf.device.type == "cpu" else _draw_distinct_torch
    chosen = draw(cdf, draws)
    repeated = (chosen[:, :, None] == chosen[:, None, :]).triu_(1).any(1)
    if bool(repeated.any()):
        _replace_repeats(chosen, repeated, cdf)
    return chosen


def _draw_distinct_torch(cdf: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """The draws of :func:`sample_distinct_from_cdf` on the table's own device (no copy to the host).

    The drawn intervals are sorted by position at each draw; the i-th starts at (its start - the
    widths of those before it) in the coordinates of the mass left, and a number passes it if
    beyond.
    """
    rows, k = draws.shape
    columns = cdf.shape[1]
    chosen = torch.empty((rows, k), dtype=torch.int64, device=cdf.device)
    starts = torch.empty((rows, k), dtype=cdf.dtype, device=cdf.device)
    widths = torch.empty_like(starts)
    left = cdf[:, -1].clone()
    for j in range(k):
        x = draws[:, j] * left
        if j:
            drawn_starts, order = starts[:, :j].sort(-1)
            drawn_widths = widths[:, :j].gather(1, order)
            passed = (drawn_starts - (drawn_widths.cumsum(-1) - drawn_widths)) < x[:, None]
            x = x + (drawn_widths * passed).sum(-1)
        index = torch.searchsorted(cdf, x[:, None]).clamp_(max=columns - 1)
        lower = cdf.gather(1, (index - 1).clamp_(min=0))[:, 0].masked_fill_(index[:, 0] == 0, 0.0)
        width = cdf.gather(1, index)[:, 0] - lower
        chosen[:, j], starts[:, j], widths[:, j] = index[:, 0], lower, width
        left -= width
    return chosen


def _draw_distinct_numpy(cdf: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """The same draws on CPU, with the small per-draw arithmetic in NumPy.

    With a few candidates over 32 rows, each torch call costs more than its arithmetic, and the
    loop of :func:`_draw_distinct_torch` took a tenth of the 8-query agent's training time;
    NumPy does it about 2.5 times faster. Each drawn interval's start in the coordinates of
    the mass left (``reduced``) is kept up to date as tokens are drawn instead of sorting, so
    the sums are taken in another order. The draws agree with the torch loop's (in all 1,000
    tables of ``tests/test_sampling.py``) except where a number lies within rounding of an
    interval's edge, or where the mass left is below the table's rounding: there both loops
    draw repeats, which are replaced. The binary search stays torch's: NumPy's searches one row.
    """
    rows, k = draws.shape
    columns = cdf.shape[1]
    uniforms = draws.numpy()
    flat = cdf.detach().numpy().ravel()
    row_start = np.arange(rows) * columns
    chosen = np.empty((rows, k), dtype=np.int64)
    starts = np.empty((rows, k), dtype=flat.dtype)
    reduced = np.empty_like(starts)
    widths = np.empty_like(starts)
    left = flat[row_start + columns - 1].copy()
    for j in range(k):
        x = uniforms[:, j] * left
        if j:
            x += (widths[:, :j] * (reduced[:, :j] < x[:, None])).sum(-1)
        index = torch.searchsorted(cdf, torch.from_numpy(x)[:, None]).numpy()[:, 0]
        np.minimum(index, columns - 1, out=index)
        at = row_start + index
        lower = flat[at - 1]
        lower[index == 0] = 0.0
        width = flat[at] - lower
        before = starts[:, :j] < lower[:, None]
        reduced[:, j] = lower - (widths[:, :j] * before).sum(-1)
        reduced[:, :j] -= width[:, None] * ~before
        chosen[:, j], starts[:, j], widths[:, j] = index, lower, width
        left -= width
    return torch.from_numpy(chosen)


def _replace_repeats(chosen: torch.Tensor, repeated: torch.Tensor, cdf: torch.Tensor) -> None:
    """Replace, in place, the marked repeats of each row by its most probable tokens not yet drawn."""
    for row in torch.nonzero(repeated.any(1))[:, 0].tolist():
        mass = torch.diff(cdf[row], prepend=cdf[row, :1].new_zeros(1))
        keep = chosen[row][~repeated[row]]
        mass[keep] = -1.0
        chosen[row, repeated[row]] = mass.topk(int(repeated[row].sum())).indices


def sample_candidates(
    logits: torch.Tensor,
    k: int,
    *,
    replacement: bool,
    temperature: float,
    truncate: int = 0,
    probs: torch.Tensor | None = None,
    uniform: Uniform = uniform_draws,
    exclude: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """K candidate tokens per row of ``logits`` (N, V) from ``softmax(logits / temperature)``.

    With replacement: inverse CDF; ``probs``, the softmax of ``logits`` when the caller already
    computed it, saves the softmax at temperature 1. Without replacement: inverse CDF without
    replacement, or Gumbel top-k for more than :data:`MAX_SEQUENTIAL_DRAWS` candidates; with
    ``truncate = M > 0``, Gumbel top-k among the M most probable tokens only, which never
    proposes tokens from the far tail.
    ``temperature = 0`` takes the K most probable tokens deterministically. ``exclude``, a pair
    of index tensors (rows, tokens), names tokens a row must not propose (an agent that already
    knows their reward there): they get no mass, as if the policy gave them none.
    Returns (N, K) int64.
    """
    if exclude is not None and exclude[0].numel():
        # A copy: the caller's logits (and the probabilities computed from them) stay intact.
        logits = logits.index_put(exclude, logits.new_tensor(float("-inf")))
        probs = None
    if temperature == 0:
        return logits.topk(k, dim=-1).indices
    scaled = logits / temperature if temperature != 1 else logits
    if not replacement and 0 < truncate < scaled.shape[-1]:
        top = scaled.topk(max(truncate, k), dim=-1)
        return top.indices.gather(-1, gumbel_perturbed(top.values, uniform).topk(k, dim=-1).indices)
    if not replacement and k > MAX_SEQUENTIAL_DRAWS:
        return gumbel_perturbed(scaled, uniform).topk(k, dim=-1).indices
    table = probs if probs is not None and temperature == 1 else F.softmax(scaled, -1)
    if replacement:
        return sample_from_cdf(table.cumsum(-1), k, uniform)
    return sample_distinct_from_cdf(table.double().cumsum_(-1), k, uniform)
