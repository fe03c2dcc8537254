"""Group sampling: K candidate tokens per context, each scored by the reward plugin.

At every step the policy draws K candidates (with replacement, or distinct ones in the order
sequential draws without replacement make them), the env scores all of them at the current
state without advancing (``env.score``, the reward plugin's batched form), and the stream is
stepped with the first candidate (which the env shows as the next token with ``--feed
action``). This is still bandit feedback: the agent only learns the rewards of tokens it
proposed, never the target and never a reward table; it spends K reward queries per token
(fewer with ``stop_at_hit``).

Estimators (per context, weights on ∇log π(a_k)):

- ``rloo``: leave-one-out baseline, ``(R_k - mean_{j≠k} R_j) / K``; unbiased for ∇E[R] with
  replacement. Proposed with replacement at a temperature T other than 1, each weight is
  multiplied by π(a)/π_T(a), so that it stays so (and the same for ``grpo``); distinct
  candidates get no such weight, and no estimate of ∇E[R] without bias.
- ``grpo``: group-normalised, ``(R_k - mean R) / (std R) / K``.
- ``logexp``: the log-expected-reward objective E_context[log E_a R]:
  ``R_k / Σ_j R_j`` (zero when every R_k is 0). REINFORCE weights a context's target by π(y);
  this weights it by about min(1, K π(y)), so rare-but-right tokens are learnt as fast as common
  ones. With the 0/1 reward and distinct candidates that contain the target, the update on that
  context is exactly ∇log π(y), the supervised gradient, at any proposal temperature. With a
  graded reward it estimates ∇log E[R] only for candidates drawn with replacement at
  temperature 1: distinct candidates pull towards π ∝ R instead (exactly so at K = V).
  Negative rewards are refused: the weights would change sign with their sum.

Options that spend queries better (for the 0/1 reward, where at most one candidate can hit):

- ``stop_at_hit``: query the candidates in order and stop at the first positive reward; the
  remaining candidates' rewards are never used (the rollout scores all K in one batched
  ``env.score`` call, cheaper for the built-in rewards than sequential ones, and the update
  masks what a sequential querier would not have asked), so the mean queries per token drop to
  the expected position of the first hit.
- ``miss_weight``: on a context where every candidate missed, also maximise log(1 - π(S)) for the
  queried set S: the feedback says the target is none of them, so mass moves off them. Together
  with a hit's log π(y) this is the log-likelihood of the observed feedback; it needs distinct
  candidates.
- ``query_budget``: adaptive K. Candidates are queried in order and querying a context stops at
  the first hit, or as soon as the model's own chance that the next candidate is right, given
  that the earlier ones were wrong (``π(a_j) / (1 - Σ_{i<j} π(a_i))``), falls below a threshold.
  The threshold is tuned online so the mean queries per token settle at the budget, so queries
  go where the model is unsure between a few tokens rather than to contexts it already knows
  (which hit at once) or to flat ones where no candidate is likely; ``k`` caps a context.
- ``k_early`` / ``early_tokens``: a curriculum on K. Up to ``k_early`` candidates per context
  for the first ``early_tokens`` training tokens, then up to ``k``. The bandit agents' validation
  perplexity stops improving after the first few hundred thousand tokens, so queries spent
  before then go further than the same number spread over the run.
- ``truncate``: draw the distinct candidates from the M most probable tokens only (by Gumbel
  top-k; the far tail is never proposed).
- ``temperature``: 0 proposes the K most probable tokens (deterministic); higher explores.
- ``marginal_weight``: a label-free prior (:mod:`irlm_agents.native.marginal_prior`) that pulls
  the model's predicted distribution, averaged over contexts, towards the train split's word
  frequencies (the counts ``--unigram-init`` uses). The feedback's likelihood is indifferent to
  how a context's mass is shared among the tokens never proposed there; without it the model
  puts too much of it on rare words.
- ``marginal_unqueried``: the share of that prior kept off the tokens queried in each context
  (:func:`irlm_agents.native.marginal_prior.unqueried_share_terms`): their mass is the
  feedback's to set, and that share of the prior only sorts out the mass it says nothing about.
- ``marginal_smoothing``: the pseudo-count added to every word's train count in that prior's
  target. One, as ``--unigram-init`` adds, puts a few percent of the target on words the text
  hardly uses (10,000 pseudo-counts against 258,000 words on Tiny Shakespeare), and the prior
  holds the model's mean prediction there; 0.1 leaves a tenth of that.
- ``memory_context``: remember the answers per context of the last L observed tokens
  (:mod:`irlm_agents.native.answer_memory`): a context answered before proposes its known
  answer first, one not yet answered never proposes a token rejected there before, and its
  miss term counts every token rejected there so far. Over several passes through a corpus the
  same contexts come back, so queries go to what the agent has not been told yet.
- ``trust_memory``: where the memory knows a context's answer, train on it without asking the
  reward again. The context then costs no query, and the budget spends the queries saved where
  the answer is not known yet. The risk is the agent's own: where the same context is followed by
  another word elsewhere, it trains on the remembered one and is never told otherwise.

The update reuses the rollout's probabilities (see ``irlm_agents.native.gradients``), so a
group costs K samples and K reward queries, not K forward passes; and it backpropagates only
through the contexts with a non-zero weight (with ``logexp``: the contexts where a candidate
hit), so the update's vocabulary-sized matrix products shrink with the miss rate. With the 0/1
reward, ``logexp`` with replacement makes the same update on a context as distinct candidates
whenever the target is among the draws (all the weight lands on it), and K draws with
replacement cost one cumulative sum and one binary search, so ``--replacement`` with a large K
is the fast configuration.

    python -m irlm_agents.group --corpus grammar --k 8 --estimator logexp
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from irlm_agents.lm.model import RNNLanguageModel
from irlm_agents.lm.sampling import sample_candidates
from irlm_agents.native.answer_memory import AnswerMemory, Recall
from irlm_agents.native.distributed import Share
from irlm_agents.native.estimators import ESTIMATORS, group_weights, importance_ratios, miss_terms
from irlm_agents.native.gradients import Workspace, head_surrogate, policy_gradient_logits
from irlm_agents.native.marginal_prior import marginal_scores, unqueried_share_terms
from irlm_agents.native.rollout import Segment
from irlm_agents.native.training import (
    NativeArgs,
    Progress,
    Setup,
    build,
    finish_run,
    log_update,
    make_optimizer,
    open_run,
    optimise,
    seed_everything,
)
from irlm_agents.runs.args import TrainResult, unigram_frequencies
from irlm_env.errors import IrlmError, suggest
from irlm_env.options import check_int


@dataclass
class Args(NativeArgs):
    """Group-sampling settings."""

    k: int = field(default=8, metadata={"help": "candidate tokens scored per context (reward queries per token)"})
    estimator: str = field(default="logexp", metadata={"help": "rloo, grpo or logexp (log-expected-reward)"})
    replacement: bool = field(
        default=False,
        metadata={"help": "sample candidates with replacement (default: distinct, drawn without replacement)"},
    )
    temperature: float = field(
        default=1.0, metadata={"help": "propose from softmax(logits / temperature); 0 = the K most probable"}
    )
    truncate: int = field(
        default=0,
        metadata={"help": "distinct sampling only among the this many most probable tokens (0: whole vocabulary)"},
    )
    stop_at_hit: bool = field(
        default=False, metadata={"help": "query candidates in order and stop at the first positive reward"}
    )
    miss_weight: float = field(
        default=0.0, metadata={"help": "weight of log(1 - π(queried)) on contexts where every candidate missed"}
    )
    query_budget: float = field(
        default=0.0,
        metadata={
            "help": "adaptive K: mean reward queries per token to spend, k being the per-context cap "
            "(0: off); implies stop_at_hit"
        },
    )
    marginal_smoothing: float = field(
        default=1.0,
        metadata={
            "help": "pseudo-count added to each word's train count in the marginal prior's target frequencies "
            "(1: add-one, as --unigram-init; lower puts less of the target on words the text hardly uses)"
        },
    )
    memory_context: int = field(
        default=0,
        metadata={
            "help": "remember the answers per context of this many observed tokens: propose a known answer "
            "first, never a token rejected there before (0: off); needs stop_at_hit"
        },
    )
    trust_memory: bool = field(
        default=False,
        metadata={
            "help": "train a context with a known answer on it without asking the reward again (no query "
            "spent there); needs memory_context"
        },
    )
    ask_one_at_a_time: bool = field(
        default=False,
        metadata={
            "help": "call the reward one candidate at a time, stopping at the first hit, so it is called once per "
            "query rather than for all K (for a costly reward; slower with a cheap one); needs stop_at_hit"
        },
    )
    k_early: int = field(
        default=0,
        metadata={
            "help": "a curriculum on K: candidates per context during the first early_tokens training tokens, "
            "then k (0: off); needs stop_at_hit"
        },
    )
    early_tokens: int = field(default=0, metadata={"help": "training tokens proposed with k_early candidates"})
    entropy_coef: float = field(default=0.0, metadata={"help": "entropy bonus weight (exploration)"})
    marginal_weight: float = field(
        default=0.0,
        metadata={
            "help": "weight of a label-free term pulling the model's mean predicted distribution towards the "
            "train split's word frequencies (0: off)"
        },
    )
    marginal_unqueried: float = field(
        default=0.0,
        metadata={
            "help": "share (0 to 1) of the marginal term that moves mass only among the tokens not queried in "
            "a context, leaving the queried ones where the feedback put them (0: the whole term reaches every token)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("k", self.k)
        if self.estimator not in ESTIMATORS:
            raise IrlmError(f"unknown estimator {self.estimator!r}; {suggest(self.estimator, ESTIMATORS)}")
        if self.estimator in ("rloo", "grpo") and self.k < 2:  # with one candidate its weight is always 0
            raise IrlmError(f"the {self.estimator} estimator needs k >= 2 (it compares each candidate with the others)")
        check_int("truncate", self.truncate, minimum=0)
        if self.truncate and (self.replacement or self.truncate < self.k):
            raise IrlmError("truncate needs distinct candidates (no --replacement) and truncate >= k")
        if self.temperature < 0:
            raise IrlmError(f"temperature must be >= 0, got {self.temperature!r}")
        if self.temperature == 0 and self.replacement:
            raise IrlmError("temperature 0 proposes the K most probable tokens; it cannot sample with replacement")
        if self.stop_at_hit and self.estimator != "logexp":
            raise IrlmError("stop_at_hit needs the logexp estimator (rloo and grpo compare all K rewards)")
        if self.miss_weight and self.replacement:
            raise IrlmError("miss_weight needs distinct candidates; drop --replacement")
        if self.miss_weight < 0:
            raise IrlmError(f"miss_weight must be >= 0, got {self.miss_weight!r}")
        if self.query_budget:
            if not 1 <= self.query_budget <= self.k:
                fix = "raise it to at least 1" if self.query_budget < 1 else "raise --k or lower --query-budget"
                raise IrlmError(
                    f"query_budget must be between 1 and k={self.k} (k caps the queries of one context), "
                    f"got {self.query_budget!r}; {fix}"
                )
            if self.estimator != "logexp" or self.replacement:
                raise IrlmError("query_budget needs the logexp estimator and distinct candidates (no --replacement)")
            self.stop_at_hit = True
        check_int("k_early", self.k_early, minimum=0)
        check_int("early_tokens", self.early_tokens, minimum=0)
        if bool(self.k_early) != bool(self.early_tokens):
            raise IrlmError(
                "a curriculum on K needs both k_early (candidates early on) and early_tokens (for how many "
                "training tokens); set both, or neither"
            )
        if self.k_early:
            if not self.stop_at_hit or self.query_budget:
                raise IrlmError(
                    "k_early needs candidates queried until the first hit with a fixed cap: add --stop-at-hit "
                    "and drop --query-budget (it steers the spend its own way)"
                )
            if self.truncate and self.truncate < self.k_early:
                raise IrlmError(f"truncate must be >= k_early ({self.k_early}), got {self.truncate}")
        if self.marginal_weight < 0:  # NaN and inf: refused with every float option by TrainArgs
            raise IrlmError(f"marginal_weight must be >= 0, got {self.marginal_weight!r}")
        if not 0 <= self.marginal_unqueried <= 1:
            raise IrlmError(f"marginal_unqueried is a share between 0 and 1, got {self.marginal_unqueried!r}")
        if self.marginal_unqueried and (not self.marginal_weight or self.replacement):
            raise IrlmError(
                "marginal_unqueried shares out the marginal term over distinct candidates: set --marginal-weight "
                "above 0 and drop --replacement"
            )
        if self.marginal_smoothing <= 0:
            raise IrlmError(f"marginal_smoothing is a pseudo-count above 0, got {self.marginal_smoothing!r}")
        if self.marginal_smoothing != 1.0 and not self.marginal_weight:
            raise IrlmError("marginal_smoothing sets the marginal prior's target: set --marginal-weight above 0")
        check_int("memory_context", self.memory_context, minimum=0)
        if self.memory_context and (self.replacement or not self.stop_at_hit):
            raise IrlmError(
                "memory_context needs distinct candidates queried until the first hit: add --stop-at-hit "
                "(or --query-budget) and drop --replacement"
            )
        if self.trust_memory and not self.memory_context:
            raise IrlmError("trust_memory trusts the answer memory's known answers: set --memory-context above 0")
        if self.ask_one_at_a_time and not self.stop_at_hit:
            raise IrlmError("ask_one_at_a_time asks until the first hit: add --stop-at-hit (or --query-budget)")


def known_rewards(rewards: torch.Tensor, allowed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards a sequential querier would see when it stops at the first positive one.

    ``allowed`` (a prefix of each row, see :func:`budget_mask`) limits the candidates it may ask
    about. Returns the rewards with the unqueried candidates zeroed and the queried mask.
    """
    hit = rewards > 0
    before = torch.cumsum(hit.long(), -1) - hit.long()  # hits strictly before each candidate
    queried = before == 0
    if allowed is not None:
        queried &= allowed
    return rewards * queried, queried


def budget_mask(candidate_probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """The candidates an adaptive querier may ask about: a prefix of each row.

    It goes on while the model's probability that the next candidate is right, given that the
    earlier ones were wrong, is at least ``threshold``. The first candidate is always asked: it
    is the action the env is stepped with.
    """
    before = torch.cumsum(candidate_probs, -1) - candidate_probs
    keep = candidate_probs >= threshold * (1 - before).clamp_min(1e-6)
    keep[:, 0] = True
    return keep.long().cumprod(-1).bool()


@dataclass
class QueryBudget:
    """The threshold of :func:`budget_mask`, steered so a run spends ``per_token`` on average.

    After each segment the threshold's logarithm moves by the relative error between the
    segment's spend and the spend still affordable per remaining token. It starts high, so
    little is spent while the model is flat and its chances mean little; what is saved then is
    spent later, when queries find more hits. Overspending is never planned: the affordable
    spend only falls below the budget when earlier segments went over it.
    """

    per_token: float
    total_tokens: int
    threshold: float = 0.1
    gain: float = 0.5
    floor: float = 1.0  # one query a token, or none where a trusted memory knows the answer
    tokens: int = 0
    queries: int = 0

    def affordable(self) -> float:
        """Queries per token the rest of the run may spend (never below ``floor``, the least a token costs)."""
        left = self.total_tokens - self.tokens
        if left <= 0:
            return self.per_token
        return max(self.floor, (self.per_token * self.total_tokens - self.queries) / left)

    def update(self, tokens: int, queries: int) -> None:
        target = self.affordable()
        self.tokens += tokens
        self.queries += queries
        if target <= 0:
            # Spent, which only a trusted memory's floor of 0 allows: from here on each context
            # not answered yet is asked about its first candidate only, the least it can cost.
            self.threshold = math.inf
            return
        try:
            self.threshold *= math.exp(self.gain * (queries / tokens - target) / target)
        except OverflowError:  # a spend far above a target near 0: as spent as can be
            self.threshold = math.inf


def group_loss(
    args: Args, model: RNNLanguageModel, segment: Segment, features: torch.Tensor,
    budget: QueryBudget | None, scratch: Workspace, share: Share, memory: AnswerMemory | None = None,
    unigram: torch.Tensor | None = None, ratios: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """The surrogate loss of one segment (its gradient is the estimator's) and the queries used.

    The query budget is steered by the whole batch's spend (all processes under torchrun), so
    its threshold is the same everywhere. With a ``memory`` the miss term's set also holds the
    tokens rejected at the same context before, and the memory then learns the segment's
    feedback. With the train split's ``unigram`` frequencies, the label-free marginal term of
    ``args.marginal_weight`` is added on every context.
    """
    probs = segment.probs.reshape(segment.num_tokens, -1)
    k = segment.actions.shape[-1]  # args.k, or args.k_early early in a curriculum
    actions = segment.actions.reshape(-1, k)
    rewards = segment.rewards.reshape(-1, k)
    if args.estimator == "logexp" and bool((rewards < 0).any()):
        raise IrlmError(
            f"the logexp estimator weighs candidates by R_k / sum_j R_j, which needs rewards >= 0, but reward "
            f"{args.reward!r} paid {float(rewards.min()):g}; use --estimator rloo or grpo for signed rewards"
        )
    check_yes_no(args, rewards)
    queried = None
    if args.stop_at_hit:
        if segment.allowed is not None:  # asked one at a time: what the rollout allowed itself to ask
            allowed = segment.allowed.reshape(-1, k)
        else:
            allowed = budget_mask(probs.gather(1, actions), budget.threshold) if budget else None
        rewards, queried = known_rewards(rewards, allowed)
        free = 0  # queried entries that cost no query: trusted known answers
        if memory is not None and args.trust_memory:
            # The known answer is first (see Recall.known_first); its remembered reward stands in
            # for the one the env gave, so the context costs no query: that answer is not used.
            trusted = memory.known_rows()
            rewards[trusted] = 0.0
            rewards[trusted, 0] = 1.0
            queried[trusted] = False
            queried[trusted, 0] = True
            free = int(trusted.sum())
        n_queries = int(queried.sum()) - free
        if budget:
            tokens, queries = share.sum(rewards.shape[0], n_queries)
            budget.update(int(tokens), int(queries))
    else:
        n_queries = rewards.numel()
    earlier = memory.rejected_before() if memory is not None and args.miss_weight else None
    if memory is not None:
        memory.learn(segment.actions, rewards.reshape(segment.rewards.shape), queried.reshape(segment.rewards.shape))
    weights = group_weights(args.estimator, rewards)
    if ratios is not None:
        weights = weights * ratios.reshape(-1, k)
    coefficient = weights.sum(-1)
    if args.miss_weight:
        if earlier is not None:
            # Rejected before, they were kept out of this segment's draws, so the set stays distinct,
            # unless a small vocabulary left fewer than K tokens to draw: a token drawn again is
            # counted once.
            tokens, known = earlier
            known = known & ~((tokens[:, :, None] == actions[:, None, :]) & queried[:, None, :]).any(-1)
            actions = torch.cat([actions, tokens], 1)
            queried = torch.cat([queried, known], 1)
            weights = torch.cat([weights, torch.zeros_like(tokens, dtype=weights.dtype)], 1)
        miss_w, miss_c = miss_terms(probs, actions, rewards, queried)
        weights = weights + args.miss_weight * miss_w
        coefficient = coefficient + args.miss_weight * miss_c
    contexts = actions.shape[0]
    features = features.reshape(contexts, -1)
    out = scratch.rows(contexts)
    scores = None if unigram is None else marginal_scores(probs, unigram, args.marginal_weight, 1 / contexts)
    if scores is not None and args.marginal_unqueried:
        prior_w, prior_c = unqueried_share_terms(probs, scores, actions, queried, args.marginal_unqueried, 1 / contexts)
        weights = weights + prior_w
        coefficient = coefficient + prior_c
    if not args.entropy_coef and scores is None:
        # Contexts whose weights are all zero (with logexp: every candidate missed) add
        # nothing to the gradient; the backward matrix products run on the others only. Their
        # probabilities are copied into the scratch, and the direction overwrites them there.
        rows = torch.nonzero((weights != 0).any(-1) | (coefficient != 0))[:, 0]
        if rows.numel() < contexts:
            probs = out = torch.index_select(probs, 0, rows, out=scratch.rows(rows.numel()))
            actions, weights, coefficient = actions[rows], weights[rows], coefficient[rows]
            features = features[rows]
    direction = policy_gradient_logits(
        probs, actions, weights, coefficient, entropy_coef=args.entropy_coef, scale=1 / contexts,
        scores=scores, out=out,
    )
    return -head_surrogate(model, features, direction), n_queries


def check_vocabulary(args: Args, setup: Setup) -> None:
    """Refuse, before the run starts, more distinct candidates than the corpus has tokens."""
    vocab = len(setup.corpus.vocab)
    most = max(args.k, args.k_early)
    if not args.replacement and most > vocab:
        over = " and ".join(flag for flag, k in (("--k", args.k), ("--k-early", args.k_early)) if k > vocab)
        raise IrlmError(f"k={most} distinct candidates cannot be drawn from a vocabulary of {vocab} tokens; "
                        f"lower {over} to at most {vocab}")


def yes_no_settings(args: Args) -> list[str]:
    """The options set that read each reward as a yes or no about one right token."""
    return [flag for flag, on in (("--stop-at-hit (or --query-budget)", args.stop_at_hit),
                                  ("--memory-context", args.memory_context), ("--miss-weight", args.miss_weight)) if on]


def check_yes_no(args: Args, rewards: torch.Tensor, where: str = "") -> None:
    """Refuse a reward that is not a yes or no about one right token, where the settings read it so.

    ``stop_at_hit`` (so the query budget and the answer memory) and the miss term read each reward
    as a yes or no answer, with at most one yes per context: a graded reward would stop at its
    first positive value and train towards the model's own sample. ``rewards`` is (contexts, K).
    """
    yes_no = yes_no_settings(args)
    if not yes_no:
        return
    graded = (rewards != 0) & (rewards != 1) & ~rewards.isnan()  # NaN: a candidate nobody scored
    # Drawn with replacement, the right token can be a context's candidate twice, each a yes.
    several = torch.zeros_like(graded[:, 0]) if args.replacement else (rewards == 1).sum(1) > 1
    if bool(graded.any() | several.any()):  # one device sync a segment where all is well
        found = (f"a reward of {float(rewards[graded][0]):g}" if bool(graded.any())
                 else f"1 to several candidates in {int(several.sum())} contexts")
        raise IrlmError(
            f"{' and '.join(yes_no)} read the reward as a yes or no answer about one right token, but reward "
            f"{args.reward!r} gave {found}{where}; leave them out for this reward (the logexp estimator weighs all "
            "K candidates by their rewards), or use a reward that pays 1 for one token and 0 otherwise"
        )


def check_yes_no_first(args: Args, setup: Setup) -> int:
    """:func:`check_yes_no` before the run starts, on the first stream's first context scored
    with the 64 most frequent words as candidates; the reward queries it spent.

    Every segment's answers are checked as well, but a reward caught there has already left a run
    directory. These queries teach the model nothing and are counted like the others.
    """
    if not yes_no_settings(args):
        return 0
    frequent = np.argsort(-unigram_frequencies(setup.corpus), kind="stable")[:min(64, len(setup.corpus.vocab))]
    rewards = setup.rollout.env.score(frequent[None, :], streams=np.zeros(1, np.int64))
    check_yes_no(args, torch.from_numpy(rewards), " on the first context")
    return len(frequent)


def train(args: Args) -> TrainResult:
    seed_everything(args.seed)
    setup = build(args)
    check_vocabulary(args, setup)
    checked = check_yes_no_first(args, setup)
    model, rollout = setup.model, setup.rollout
    optimizer = make_optimizer(model.parameters(), args)
    scratch = Workspace(model.config.vocab_size, setup.device)
    # Aim a little under the budget, so the last segments' swings cannot push the mean over it.
    budget = (
        QueryBudget(0.98 * args.query_budget, args.total_tokens, floor=0.0 if args.trust_memory else 1.0)
        if args.query_budget else None
    )
    progress = Progress(args.total_tokens, args.eval_every, setup.share)
    memory = AnswerMemory(rollout.num_envs, args.memory_context, setup.device) if args.memory_context else None
    unigram = None
    if args.marginal_weight:  # converted once to the probabilities' dtype, not at every update
        frequencies = unigram_frequencies(setup.corpus, args.marginal_smoothing)
        unigram = torch.from_numpy(frequencies).to(setup.device, model.decoder.weight.dtype)

    def candidates_now() -> int:
        return args.k_early if progress.tokens < args.early_tokens else args.k

    recalled: list[Recall | None] = [None]  # the memory's recall at the step being played

    # π(a)/π_T(a) of each step's candidates: rloo and grpo proposing with replacement at T != 1.
    ratios: list[torch.Tensor] = []
    tempered = args.estimator != "logexp" and args.replacement and args.temperature != 1

    def sampler(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        recall = memory.recall(rollout.shown, rollout.starting) if memory else None
        recalled[0] = recall
        candidates = sample_candidates(
            logits, candidates_now(), replacement=args.replacement, temperature=args.temperature,
            truncate=args.truncate, probs=probs, uniform=setup.share.uniform, exclude=recall.exclude if recall else None,
        )
        if tempered:
            ratios.append(importance_ratios(logits, candidates, args.temperature))
        return recall.known_first(candidates) if recall else candidates

    def asker(candidates: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """What group_loss will count as queried, before the answers: the budget's prefix, and
        nothing where a trusted memory knows the answer."""
        allowed = (budget_mask(probs.gather(1, candidates), budget.threshold) if budget
                   else torch.ones_like(candidates, dtype=torch.bool))
        recall = recalled[0]
        if args.trust_memory and recall is not None:
            allowed[torch.from_numpy(recall.known >= 0).to(allowed.device)] = False
        return allowed

    with open_run("group", args, setup) as run:
        while progress.tokens < args.total_tokens:
            with progress.timed():
                segment = rollout.collect(args.rollout_steps, sampler, score=candidates_now() > 1,
                                          ask=asker if args.ask_one_at_a_time else None)
                features = rollout.features(segment)
                loss, queries = group_loss(
                    args, model, segment, features, budget, scratch, setup.share, memory, unigram,
                    torch.stack(ratios, 1) if ratios else None,
                )
                ratios.clear()
                optimise(optimizer, loss, args.max_grad_norm, setup)
            reward = float(segment.rewards[..., 0].mean())
            progress.add(segment.num_tokens, queries + checked, reward=reward, accuracy=segment.accuracy)
            checked = 0
            if memory is not None and run is not None:
                run.log_scalars("memory_contexts", progress.tokens, memory.stats())
            log_update(run, progress, setup, args)
        return finish_run(run, progress, setup, args)


if __name__ == "__main__":
    from irlm_agents.cli import run_agent

    run_agent("group")
