"""The ``judge`` reward: a language model scores the guess, never the answer key.

Learning from rewards only pays off where the reward can be computed without the answer: a
judge that reads the true text so far and says how plausible the guess is as its next token.
This reward is such a judge. It never looks at ``target``; it pays from its own next-token
distribution given the last ``history_length`` tokens of the true text: 1.0 when the action is
among its ``top_k`` most likely tokens, or the probability it gives the action. The judge is
a Witten-Bell n-gram fitted on the corpus's training split, or any trained ``.irlm``
checkpoint, so a student can be distilled from a teacher through rewards alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from irlm_agents.lm.ngram import WittenBellModel
from irlm_env import IrlmError, hookimpl
from irlm_env.errors import suggest
from irlm_env.hookspecs import Register
from irlm_env.options import check_int
from irlm_env.rewards import Reward

if TYPE_CHECKING:
    from irlm_agents.lm.model import RNNLanguageModel
    from irlm_env.corpus import Corpus
    from irlm_env.corpus_spec import CorpusSpec

#: How the judge's view becomes a reward.
PAYS = ("top_k", "probability")
#: Orders of the n-gram judge: its context keys must stay below 2**63 (see irlm_agents.lm.ngram).
MAX_ORDER = 4
DEFAULT_ORDER = 4
DEFAULT_TOP_K = 1
DEFAULT_HISTORY = 32
#: The longest history a checkpoint judge reads: every step gathers it for every stream.
MAX_HISTORY = 4096
#: Judge outputs per pass, (rows x vocabulary): bounds memory when a caller scores a whole
#: split at once; a state of up to this many rows is judged in one pass and memoised.
PASS_ELEMENTS = 2**24

#: Next-token distributions ``(N, V)`` float64 from ``(N, H)`` histories.
Judge = Callable[[np.ndarray], np.ndarray]


def top_k_mask(probs: np.ndarray, k: int) -> np.ndarray:
    """``(N, V)`` bool: exactly the ``k`` most likely tokens of each row, ties to the lower id.

    A partition finds the k-th largest value in linear time; tokens tied with it fill the
    remaining places in id order, so the judge always pays for exactly ``k`` tokens.
    """
    if k == 1:  # the default, without the partition: argmax already takes the lowest tied id
        mask = np.zeros(probs.shape, dtype=bool)
        mask[np.arange(len(probs)), probs.argmax(axis=1)] = True
        return mask
    threshold = np.partition(probs, -k, axis=1)[:, -k, None]
    above = probs > threshold
    tied = probs == threshold
    room = k - above.sum(axis=1, keepdims=True)
    return above | (tied & (np.cumsum(tied, axis=1) <= room))


class JudgeReward(Reward):
    """Pays from the judge's distribution after the true history; ``target`` is never read.

    ``history_length`` asks the env for that many tokens of true text before the target as
    ``context``; a wider context is cut to its last ``history_length`` tokens. The judge's
    payoffs for the last contexts seen are kept, so the env's ``score()`` and ``step()`` on the
    same state run the judge once.
    """

    name = "judge"

    def __init__(self, judge: Judge, vocab_size: int, history_length: int, top_k: int | None) -> None:
        self.judge = judge
        self.vocab_size = vocab_size
        self.history_length = history_length
        self.top_k = top_k  # None: pay the probability
        self._last_contexts: np.ndarray | None = None
        self._last_payoffs: np.ndarray | None = None

    def payoffs(self, contexts: np.ndarray) -> np.ndarray:
        """``(N, V)`` payoff of every token after each history: bool for top_k, float64 probabilities."""
        probs = self.judge(contexts)
        return probs if self.top_k is None else top_k_mask(probs, self.top_k)

    def _memoised(self, contexts: np.ndarray) -> np.ndarray:
        if self._last_payoffs is None or not np.array_equal(self._last_contexts, contexts):
            self._last_payoffs = self.payoffs(contexts)
            self._last_contexts = np.array(contexts)
        return self._last_payoffs

    def _passes(self, contexts: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
        """(rows, payoffs) per judge pass; a state that fits in one pass is memoised."""
        contexts = contexts[:, -self.history_length :]
        rows = max(1, PASS_ELEMENTS // self.vocab_size)
        if len(contexts) <= rows:
            yield slice(0, len(contexts)), self._memoised(contexts)
            return
        for start in range(0, len(contexts), rows):
            piece = slice(start, start + rows)
            yield piece, self.payoffs(contexts[piece])

    def __call__(self, action: int, target: int, context: np.ndarray) -> float:
        ((_, payoffs),) = self._passes(np.asarray(context)[None])
        return float(payoffs[0, action])

    def batch(self, actions: np.ndarray, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        out = np.empty(actions.shape, dtype=np.float64)
        for rows, payoffs in self._passes(contexts):
            out[rows] = np.take_along_axis(payoffs, actions[rows], axis=1)
        return out

    def table(self, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        out = np.empty((len(contexts), self.vocab_size), dtype=np.float64)
        for rows, payoffs in self._passes(contexts):
            out[rows] = payoffs
        return out


def _describe(spec: CorpusSpec | dict[str, object] | None) -> str:
    if spec is None:
        return "not recorded"
    fields = spec if isinstance(spec, dict) else spec.to_dict()
    return " ".join(f"{key}={value}" for key, value in fields.items())


def checkpoint_judge(corpus: Corpus, path: str, device: str) -> Judge:
    """The next-token distribution of a trained checkpoint run over each history from a zero state."""
    # Imported here: every process that loads the plugins imports this module, and only a
    # checkpoint judge needs torch (seconds to import), which the checkpoint loader brings.
    from irlm_agents.lm.checkpoints import load_model
    from irlm_agents.lm.devices import resolve_device

    try:
        target = resolve_device(device)
    except IrlmError as error:
        raise IrlmError(f"judge reward option device={device!r}: {error}") from None
    try:
        checkpoint = load_model(path, target)
    except IrlmError as error:
        raise IrlmError(f"judge reward option checkpoint={path!r}: {error}") from None
    try:
        checkpoint.check_vocabulary(corpus.vocab)
        checkpoint.check_tokenizer(corpus.tokenizer)
    except IrlmError as error:
        raise IrlmError(
            f"judge reward option checkpoint={path!r} does not fit the env's corpus: {error}. Train the judge "
            f"on the same corpus settings as the env (judge: {_describe(checkpoint.corpus)}; env: "
            f"{_describe(corpus.spec)})"
        ) from None
    return ModelJudge(checkpoint.model.eval())


class ModelJudge:
    """A model as a :data:`Judge`: picklable, unlike a closure, so the reward can go to worker processes."""

    def __init__(self, model: RNNLanguageModel) -> None:
        self.model = model

    def __call__(self, contexts: np.ndarray) -> np.ndarray:
        import torch  # already imported by the checkpoint loader: a dictionary look-up

        device = next(self.model.parameters()).device
        with torch.inference_mode():
            # A copy: the env's contexts are read-only views, which torch will not share.
            tokens = torch.from_numpy(np.array(contexts, dtype=np.int64)).to(device)
            features, _ = self.model.features(tokens)
            logits = self.model.head(features[:, -1])  # only the last position: the head dominates the cost
            return torch.softmax(logits.double(), dim=-1).cpu().numpy()


def judge(
    corpus: Corpus,
    checkpoint: str | None = None,
    order: int | None = None,
    top_k: int | None = None,
    pay: str = "top_k",
    history: int | None = None,
    device: str | None = None,
) -> JudgeReward:
    """Build the judge reward for ``corpus``; options that do not apply to the chosen judge are refused.

    ``checkpoint``: a trained ``.irlm`` model as the judge (``history`` tokens, default 32, on
    ``device``, default cpu); without it, an interpolated Witten-Bell n-gram of ``order``
    (2..4, default 4) fitted on the training split. ``pay``: ``top_k`` (1.0 for the judge's
    ``top_k`` most likely tokens, default 1) or ``probability`` (the judge's probability).
    """
    label = "judge reward option"
    vocab_size = len(corpus.vocab)
    if pay not in PAYS:
        raise IrlmError(f"{label} pay={pay!r} is unknown; {suggest(str(pay), PAYS)}")
    if pay == "top_k":
        top_k = check_int(f"{label} top_k", DEFAULT_TOP_K if top_k is None else top_k, 1, vocab_size)
    elif top_k is not None:
        raise IrlmError(f"{label} top_k={top_k!r} applies to pay=top_k only; drop it or set pay=top_k")
    if checkpoint is None:
        for name, value in (("history", history), ("device", device)):
            if value is not None:
                raise IrlmError(
                    f"{label} {name}={value!r} applies to a checkpoint judge only; drop it or pass checkpoint=PATH"
                )
        order = check_int(f"{label} order", DEFAULT_ORDER if order is None else order, 2, MAX_ORDER)
        model = WittenBellModel(corpus.split("train"), order, vocab_size)
        return JudgeReward(model.distributions, vocab_size, order - 1, top_k)
    if order is not None:
        raise IrlmError(
            f"{label} order={order!r} applies to the n-gram judge only; drop it (a checkpoint judge reads "
            "`history` tokens)"
        )
    history = check_int(f"{label} history", DEFAULT_HISTORY if history is None else history, 1, MAX_HISTORY)
    model_judge = checkpoint_judge(corpus, checkpoint, device or "cpu")
    return JudgeReward(model_judge, vocab_size, history, top_k)


@hookimpl
def irlm_register_rewards(register: Register) -> None:
    register(
        "judge",
        judge,
        "pays from a judge's next-token view of the true history (n-gram or a .irlm checkpoint), never the target",
    )
