"""What the single env and the native vector env share, so both build episodes, draw starts
and feeds, check arguments and render in exactly one way: the validated episode setup, the
errors they raise, the read-only views rewards get, the true history a reward may ask for, and
the text frame of ``render_mode="ansi"``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any

import gymnasium as gym
import numpy as np

from irlm_env.corpus import Corpus, load_corpus
from irlm_env.corpus_spec import CorpusSpec
from irlm_env.errors import IrlmError, suggest
from irlm_env.options import check_int
from irlm_env.rewards import CheckedReward, make_reward

MODES = ("window", "line")
FEEDS = ("truth", "action")

# Episode starts are drawn from the env's generator this many at a time. Drawing in blocks is
# what lets NextWordVectorEnv reproduce a sync vector env of NextWordEnvs exactly while
# drawing for all of its streams at once: both consume the same per-env block, one start per
# reset, and draw a new block only when one is used up (once every BLOCK episodes).
START_BLOCK = 128

# With 0 < feed_probability < 1, whether a step shows the action is drawn from the env's
# generator in blocks of this many steps, for the same reason as START_BLOCK: the vector env
# then reproduces single envs exactly while looking its streams' draws up in one gather.
FEED_BLOCK = 1024


class UnknownOptionError(IrlmError, TypeError):
    """An unknown keyword argument: a ``TypeError`` as Python callers expect, and an
    ``IrlmError`` so the command line reports it as a user mistake."""


class ResetNeededError(IrlmError, gym.error.ResetNeeded):
    """``step`` without a running episode; also a Gymnasium ``ResetNeeded``, which is what
    ``gym.make``'s order-enforcing wrapper raises in the same situation."""


def reject_unknown(unknown: dict[str, Any], valid: list[str], where: str) -> None:
    """Fail on misspelt keywords instead of ignoring them, which would silently train on
    defaults the user did not ask for."""
    if unknown:
        name = sorted(unknown)[0]
        raise UnknownOptionError(
            f"{where}.__init__() got an unexpected keyword argument {name!r}; {suggest(name, valid)}"
        )


@dataclass(frozen=True, eq=False)
class EpisodeSetup:
    """The validated configuration shared by the single and the vector env, so both build
    episodes, draw starts and check arguments in exactly one way."""

    corpus: Corpus
    reward_fn: CheckedReward
    split: str
    tokens: np.ndarray
    context_length: int
    mode: str
    episode_length: int
    line_starts: np.ndarray | None
    feed: str
    feed_probability: float  # of showing the action; 0.0 with feed="truth"

    @classmethod
    def build(
        cls,
        corpus: str | CorpusSpec | Corpus,
        corpus_options: dict[str, Any] | None,
        tokenizer: str,
        lowercase: bool,
        max_vocab: int | None,
        min_freq: int,
        reward: str | CheckedReward,
        reward_options: dict[str, Any] | None,
        split: str,
        context_length: int,
        mode: str,
        episode_length: int,
        feed: str,
        feed_probability: float | None,
    ) -> EpisodeSetup:
        context_length = check_int("context_length", context_length)
        episode_length = check_int("episode_length", episode_length)
        if mode not in MODES:
            raise IrlmError(f"unknown episode mode {mode!r}; {suggest(str(mode), MODES)}")
        probability = _feed_probability(feed, feed_probability)
        if isinstance(corpus, (Corpus, CorpusSpec)):
            if corpus_options:
                raise IrlmError(
                    f"corpus_options only apply when corpus is a name, but a "
                    f"{type(corpus).__name__} was given; put the options in its CorpusSpec instead"
                )
            data = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
        else:
            spec = CorpusSpec(corpus, corpus_options or {}, tokenizer, lowercase, max_vocab, min_freq)
            data = load_corpus(spec)
        tokens = data.split(split)
        if len(tokens) < context_length + 1:
            raise IrlmError(
                f"the {split!r} split of corpus {data.name!r} has {len(tokens)} tokens, fewer "
                f"than context_length + 1 = {context_length + 1}; use a longer text or a "
                "smaller context_length"
            )
        line_starts = None
        if mode == "window":
            if len(tokens) < episode_length + 1:
                raise IrlmError(
                    f"the {split!r} split of corpus {data.name!r} has {len(tokens)} tokens, "
                    f"fewer than episode_length + 1 = {episode_length + 1} needed for a "
                    "window episode; use a smaller episode_length, mode='line' or a longer text"
                )
        else:
            line_starts = data.line_starts(split)
        reward_fn = _reward_for(reward, reward_options, data)
        return cls(data, reward_fn, split, tokens, context_length, mode, episode_length,
                   line_starts, feed, probability)

    def draw_starts(self, rng: np.random.Generator) -> np.ndarray:
        """A block of START_BLOCK episode start positions (the position of the first context
        token); see START_BLOCK for why starts come in blocks."""
        if self.line_starts is None:
            return rng.integers(0, len(self.tokens) - self.episode_length, size=START_BLOCK)
        return self.line_starts[rng.integers(0, len(self.line_starts), size=START_BLOCK)]

    def draw_feeds(self, rng: np.random.Generator) -> np.ndarray:
        """A block of FEED_BLOCK bools, True where a step shows the agent's action instead of
        the true token; see FEED_BLOCK for why they come in blocks."""
        return rng.random(FEED_BLOCK) < self.feed_probability

    def action_error(self, action: object) -> IrlmError:
        integer = isinstance(action, (int, np.integer)) and not isinstance(action, (bool, np.bool_))
        what = f"action {action!r}" if integer else f"action {action!r} ({type(action).__name__}, not an integer)"
        return IrlmError(
            f"{what} is outside the action space: use an integer token id in [0, {len(self.corpus.vocab) - 1}]"
        )


def _feed_probability(feed: str, probability: float | None) -> float:
    """The probability that a step shows the agent's action: 0.0 for teacher forcing, 1.0 for
    free running, in between for scheduled sampling."""
    if feed not in FEEDS:
        raise IrlmError(f"unknown feed mode {feed!r}; {suggest(str(feed), FEEDS)}")
    if feed == "truth":
        if probability is not None:
            raise IrlmError(
                f"feed_probability={probability!r} only applies to fed actions; pass "
                "feed='action' with it, or leave feed_probability out for teacher forcing"
            )
        return 0.0
    if probability is None:
        return 1.0
    # NaN fails the range comparison too.
    if isinstance(probability, bool) or not isinstance(probability, Real) or not 0.0 <= probability <= 1.0:
        raise IrlmError(
            f"feed_probability must be a real number in [0, 1], got {probability!r}; pass "
            "e.g. feed_probability=0.25"
        )
    return float(probability)


def _reward_for(
    reward: str | CheckedReward, reward_options: dict[str, Any] | None, corpus: Corpus
) -> CheckedReward:
    """The env's reward: built here from a name, or one that the caller built once with
    ``make_reward`` and shares between envs and evaluators."""
    if isinstance(reward, str):
        if reward_options is not None and not isinstance(reward_options, Mapping):
            raise IrlmError(
                f"reward_options must be a mapping of option names to values, got {reward_options!r}; "
                "pass e.g. reward_options={'option_name': value}"
            )
        return make_reward(reward, corpus, **(reward_options or {}))
    if not isinstance(reward, CheckedReward):
        raise IrlmError(
            f"reward must be a registered reward name or what irlm_env.rewards.make_reward "
            f"returns, got {type(reward).__name__}; register it in a plugin, or build it with "
            "make_reward(name, corpus, **options)"
        )
    if reward_options:
        raise IrlmError(
            "reward_options only apply when reward is a name, but a built reward was given; "
            "pass the options to make_reward instead"
        )
    if reward.vocab != corpus.vocab:
        raise IrlmError(
            f"reward {reward.name!r} was built for a corpus with another vocabulary than "
            f"corpus {corpus.name!r}; build it with make_reward(name, corpus) for this corpus"
        )
    return reward


def read_only(array: np.ndarray) -> np.ndarray:
    """A view of ``array`` that cannot be written through: what rewards are handed."""
    view = array.view()
    view.flags.writeable = False
    return view


def history_windows(
    tokens: np.ndarray, positions: np.ndarray | int, length: int, pad_id: int = 0
) -> np.ndarray:
    """The ``length`` tokens of ``tokens`` before each of ``positions`` (oldest first),
    left-padded with ``pad_id`` where a window reaches back before the array's start.

    This is the ``context`` a reward that declares ``history_length = length`` gets for the
    target at each position (``tokens`` being the split's token array), so evaluation code
    that scores arbitrary positions follows the envs' rule exactly. ``positions`` is an int or
    an integer array of any shape, each in ``[0, len(tokens)]``; the result has its shape plus
    ``(length,)``: a fresh int64 array.
    """
    length = check_int("history length", length)
    index = np.asarray(positions)
    if index.dtype.kind not in "iu":
        raise IrlmError(
            f"positions must be integer positions in the token array, got {positions!r}"
        )
    if index.size and (index.min() < 0 or index.max() > len(tokens)):
        bad = index[(index < 0) | (index > len(tokens))].flat[0]
        raise IrlmError(
            f"position {int(bad)} is outside the token array; use positions in "
            f"[0, {len(tokens)}]"
        )
    return gather_history(tokens, index.astype(np.int64, copy=False), np.arange(-length, 0), pad_id)


def gather_history(
    tokens: np.ndarray, positions: np.ndarray, offsets: np.ndarray, pad_id: int
) -> np.ndarray:
    """:func:`history_windows` without the checks, for the envs' positions, which are valid
    by construction; ``offsets`` is ``np.arange(-length, 0)``, made once."""
    index = positions[..., None] + offsets
    windows = tokens.take(index, mode="clip").astype(np.int64)
    windows[index < 0] = pad_id
    return windows


def render_text(
    corpus: Corpus, context: np.ndarray, action: int | None, target: int | None
) -> str:
    """The ``ansi`` frame: the context and, once a prediction was made, it and the truth."""
    vocab = corpus.vocab

    def text(ids: np.ndarray) -> str:
        # An episode's first token comes from the text, never the pad id, so the left padding is
        # the pads before the first other id; a pad the agent fed itself later is shown.
        shown = np.flatnonzero(ids != vocab.pad_id)
        return corpus.tokenizer.join(vocab.decode(ids[shown[0]:].tolist() if shown.size else []))

    frame = f"context:    {text(context)}\n"
    if action is None or target is None:
        return frame
    mark = "correct" if action == target else "wrong"
    return (
        f"{frame}prediction: {vocab.token(action)}  ({mark})\n"
        f"truth:      {vocab.token(target)}\n"
    )

