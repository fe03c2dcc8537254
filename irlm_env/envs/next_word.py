"""Next-word prediction as a Gymnasium environment with an immediate reward per token."""

from __future__ import annotations

import inspect
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from irlm_env.corpus import Corpus
from irlm_env.corpus_spec import CorpusSpec
from irlm_env.envs.episodes import (
    FEED_BLOCK,
    EpisodeSetup,
    IrlmError,
    ResetNeededError,
    gather_history,
    read_only,
    reject_unknown,
    render_text,
)
from irlm_env.rewards import CheckedReward

def env_arguments(
    kwargs: dict[str, Any], extra: list[str], where: str
) -> dict[str, Any]:
    """NextWordEnv's arguments with its defaults filled in, for wrappers such as the vector
    env that accept the same keywords (plus ``extra`` ones of their own): NextWordEnv's
    signature stays the one source of the defaults."""
    signature = inspect.signature(NextWordEnv)
    names = [n for n, p in signature.parameters.items() if p.kind is not p.VAR_KEYWORD]
    reject_unknown({k: v for k, v in kwargs.items() if k not in names}, names + extra, where)
    bound = signature.bind(**kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.pop("unknown")
    return arguments


def check_render_mode(render_mode: str | None) -> str | None:
    """The render mode to keep: an unsupported one is warned about and dropped, not an error.

    That is what Gymnasium does, and what libraries that ask every env for frames rely on:
    SB3's ``make_vec_env`` passes ``render_mode="rgb_array"`` to any env it builds by name.
    """
    if render_mode not in (None, *NextWordEnv.metadata["render_modes"]):
        gym.logger.warn(
            f"irlm/NextWord-v0 does not support render_mode={render_mode!r} (only 'ansi', as text); "
            "rendering is off"
        )
        return None
    return render_mode


class NextWordEnv(gym.Env[np.ndarray, np.int64]):
    """
    ## Description

    Next-word prediction on a text corpus as a reinforcement-learning problem. The agent reads
    the last ``context_length`` tokens of a text and chooses the next token; it is rewarded at
    once, by a reward plugin (``exact`` by default: 1.0 for the true token, 0.0 otherwise).
    By default, whatever it chooses, the text goes on with the true token (teacher forcing),
    so every step is an independent, immediately rewarded prediction over the corpus. With
    ``feed="action"`` the agent reads its own predictions instead (free running), or, with a
    ``feed_probability`` below 1, each step shows its prediction with that probability and
    the true token otherwise (scheduled sampling, Bengio et al. 2015): the agent learns to
    continue from its own mistakes, as it must when it generates text. Either way every
    prediction is scored against the reference text at the same position.

    ## Action Space

    ``Discrete(V)``: the id of the predicted next token in the corpus vocabulary
    (``env.vocab``; ids 0, 1, 2 are ``<pad>``, ``<unk>``, ``<eos>``).

    ## Observation Space

    ``Box(0, V - 1, (context_length,), int64)``: the ids of the last ``context_length``
    shown tokens, oldest first: the true tokens with ``feed="truth"``, and with
    ``feed="action"`` the agent's own actions at the steps that fed them. At the start of an
    episode only the first (true) token is known, so the observation is left-padded with the
    pad id (0); the context never reaches back before the episode's start.

    ## Rewards

    The reward plugin's value for the chosen token given the true one (the reference text's
    token at that position, whatever was fed) and the context, a finite Python float. The
    context is the observation the agent saw, unless the reward declares a
    ``history_length`` H: then it is the H true tokens before the target (see
    :class:`irlm_env.rewards.Reward`). With ``exact`` the return of an episode is the number
    of correctly predicted tokens.

    ## Starting State

    ``mode="window"``: a uniformly random position among those that leave ``episode_length``
    predictions before the split's end. ``mode="line"``: the
    ``<eos>`` that opens a uniformly random line (unit) of the split. Starts come from
    ``self.np_random``, so ``reset(seed=...)`` makes episodes reproducible.

    ## Episode End

    ``mode="window"``: truncated after ``episode_length`` predictions. ``mode="line"``:
    terminated after the ``<eos>`` closing the line has been predicted, i.e. at the step whose
    reference token is that ``<eos>``, whatever was fed (``episode_length`` is not used).
    Call ``reset()`` after either; stepping an ended episode is an error.

    ## Information

    ``step`` returns ``{"target": int, "correct": bool}``: the true next token id (the
    reference text's, also when the observation shows the action) and whether the action
    equalled it (whatever the reward plugin pays). ``reset`` returns ``{}``.

    ## Arguments

    ```python
    import gymnasium as gym
    import irlm_env

    env = gym.make("irlm/NextWord-v0", corpus="grammar", context_length=8)
    ```

    - ``corpus``: a registered corpus name (``pydocs``, ``grammar``, ``text`` or a plugin's),
      a :class:`irlm_env.corpus_spec.CorpusSpec` or a loaded :class:`irlm_env.corpus.Corpus`
      (with either of the last two, ``tokenizer``, ``lowercase``, ``max_vocab`` and
      ``min_freq`` are the spec's own and not used, and ``corpus_options`` must be empty).
    - ``corpus_options``: options of the corpus source, e.g. ``{"path": "notes.txt"}``.
    - ``tokenizer`` (``"word"`` or ``"char"``), ``lowercase``, ``max_vocab``, ``min_freq``:
      how the text becomes token ids.
    - ``reward``, ``reward_options``: a registered reward name and its options, or a reward
      built once with :func:`irlm_env.rewards.make_reward` for this corpus (then
      ``reward_options`` must be empty), so that many envs and evaluators share one.
    - ``split``: ``"train"``, ``"validation"`` or ``"test"`` (disjoint parts of the corpus).
    - ``context_length``: tokens in the observation (>= 1).
    - ``mode``: ``"window"`` or ``"line"``; ``episode_length``: steps of a window episode.
    - ``feed``: what the next observation's newest token is: ``"truth"`` (teacher forcing)
      or ``"action"`` (the agent's own prediction).
    - ``feed_probability``: with ``feed="action"``, the probability that a step shows the
      action (default 1.0: always); drawn from ``self.np_random``. Not used with ``"truth"``.
    - ``render_mode``: ``None`` or ``"ansi"`` (context, prediction and truth as text).

    ## Vectorized Environment

    ``gym.make_vec("irlm/NextWord-v0", num_envs=N, ...)`` gives
    :class:`irlm_env.envs.vector.NextWordVectorEnv`, which steps N streams with whole-array
    numpy operations and returns exactly what ``vectorization_mode="sync"`` returns.

    ## Version History

    - v0: the first version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        corpus: str | CorpusSpec | Corpus = "pydocs",
        corpus_options: dict[str, Any] | None = None,
        tokenizer: str = "word",
        lowercase: bool = True,
        max_vocab: int | None = 10000,
        min_freq: int = 1,
        reward: str | CheckedReward = "exact",
        reward_options: dict[str, Any] | None = None,
        split: str = "train",
        context_length: int = 8,
        mode: str = "window",
        episode_length: int = 64,
        feed: str = "truth",
        feed_probability: float | None = None,
        render_mode: str | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            env_arguments(unknown, [], "NextWordEnv")
        self.render_mode = check_render_mode(render_mode)
        self.setup = EpisodeSetup.build(
            corpus, corpus_options, tokenizer, lowercase, max_vocab, min_freq, reward,
            reward_options, split, context_length, mode, episode_length, feed, feed_probability,
        )
        self.corpus = self.setup.corpus
        self.vocab = self.corpus.vocab
        self.reward_fn = self.setup.reward_fn
        vocab_size = len(self.vocab)
        self.observation_space = spaces.Box(
            0, vocab_size - 1, (self.setup.context_length,), np.int64
        )
        self.action_space = spaces.Discrete(vocab_size)
        self._tokens = self.setup.tokens
        self._eos = self.vocab.eos_id
        self._starts = np.empty(0, np.int64)
        self._next_start = 0
        self._feed_probability = self.setup.feed_probability
        self._feeds = np.empty(0, np.bool_)  # a block of draws; see FEED_BLOCK
        self._next_feed = FEED_BLOCK
        history = self.reward_fn.history_length
        self._history = None if history is None else np.arange(-history, 0)
        # The context lives in two buffers written alternately, each with a read-only view made
        # once: rewards see the view, so a reward that writes into its context raises instead of
        # changing the next observation, and a step allocates nothing but the returned copy.
        self._buffers = (np.zeros(self.setup.context_length, np.int64), np.zeros(self.setup.context_length, np.int64))
        self._views = tuple(read_only(buffer) for buffer in self._buffers)
        self._current = 0  # which buffer holds the current context
        self._cursor = -1  # position of the newest context token; -1 until reset
        self._end = -1  # cursor position at which a window episode is truncated
        self._done = True
        self._last: tuple[np.ndarray, int, int] | None = None  # context, action, target

    @property
    def np_random(self) -> np.random.Generator:
        return gym.Env.np_random.fget(self)  # type: ignore[attr-defined,no-any-return]

    @np_random.setter
    def np_random(self, value: np.random.Generator) -> None:
        # Starts and feeds are drawn in blocks; a new generator must draw the next ones itself.
        gym.Env.np_random.fset(self, value)  # type: ignore[attr-defined]
        self._next_start = len(self._starts)
        self._next_feed = FEED_BLOCK

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Pickle and deepcopy copy a view as an array of its own; rewards must see the live buffers.
        self.__dict__.update(state)
        self._views = tuple(read_only(buffer) for buffer in self._buffers)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if isinstance(seed, np.integer):  # as the vector env accepts; Gymnasium takes only int
            seed = int(seed)
        super().reset(seed=seed)
        if options:
            raise IrlmError(
                f"NextWordEnv.reset takes no options, got {sorted(options)}; pass None"
            )
        if seed is not None or self._next_start >= len(self._starts):
            self._starts = self.setup.draw_starts(self.np_random)
            self._next_start = 0
        if seed is not None:
            self._next_feed = FEED_BLOCK  # draws from the new generator, when a step needs one
        start = int(self._starts[self._next_start])
        self._next_start += 1
        self._cursor = start
        self._end = start + self.setup.episode_length
        self._done = False
        self._last = None
        obs = self._buffers[self._current]
        obs.fill(0)
        obs[-1] = self._tokens[start]
        return obs.copy(), {}

    def step(
        self, action: np.int64 | int
    ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._done:
            if self._cursor < 0:
                raise ResetNeededError("call reset() before step() on NextWordEnv")
            raise ResetNeededError(
                "the episode has ended (terminated or truncated); call reset() before step()"
            )
        if type(action) is not int:
            if isinstance(action, np.ndarray) and action.shape == ():
                action = action.item()
            if isinstance(action, bool) or not isinstance(action, (int, np.integer)):
                raise self.setup.action_error(action)
            action = int(action)
        if not 0 <= action < self.action_space.n:
            raise self.setup.action_error(action)
        old, new = self._current, 1 - self._current
        target = int(self._tokens[self._cursor + 1])
        if self._history is None:
            context = self._views[old]
        else:
            context = read_only(gather_history(
                self._tokens, np.int64(self._cursor + 1), self._history, self.vocab.pad_id
            ))
        reward = float(self.reward_fn(action, target, context))
        self._cursor += 1  # after the reward: a reward that raises leaves the episode where it was
        context, obs = self._buffers[old], self._buffers[new]
        obs[:-1] = context[1:]
        obs[-1] = action if self._feed_probability and self._fed() else target
        self._current = new
        if self.setup.line_starts is None:
            terminated, truncated = False, self._cursor == self._end
        else:
            terminated, truncated = target == self._eos, False
        self._done = terminated or truncated
        if self.render_mode is not None:
            self._last = (context.copy(), action, target)
        return obs.copy(), reward, terminated, truncated, {
            "target": target, "correct": action == target
        }

    def _fed(self) -> bool:
        """Whether this step shows the action: always at probability 1, which needs no draw."""
        if self._feed_probability == 1.0:
            return True
        if self._next_feed == FEED_BLOCK:
            self._feeds = self.setup.draw_feeds(self.np_random)
            self._next_feed = 0
        fed = self._feeds[self._next_feed]
        self._next_feed += 1
        return bool(fed)

    def render(self) -> str | None:
        if self.render_mode is None:
            gym.logger.warn("render() needs render_mode='ansi' when making the env")
            return None
        if self._cursor < 0:
            return "(call reset() first)"
        if self._last is None:
            return render_text(self.corpus, self._views[self._current], None, None)
        return render_text(self.corpus, *self._last)
