"""N next-word streams stepped together with numpy: the fast path for training."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from irlm_env.envs.episodes import (
    FEED_BLOCK,
    START_BLOCK,
    EpisodeSetup,
    IrlmError,
    ResetNeededError,
    gather_history,
    read_only,
    render_text,
)
from irlm_env.envs.next_word import NextWordEnv, check_render_mode, env_arguments
from irlm_env.errors import suggest
from irlm_env.options import check_int

_OWN_KEYWORDS = ["num_envs", "autoreset_mode", "copy"]


class NextWordVectorEnv(VectorEnv):
    """
    ## Description

    ``num_envs`` independent :class:`~irlm_env.envs.next_word.NextWordEnv` streams in one
    object, stepped together with whole-array numpy operations: ``step`` has no Python loop
    over the streams and writes into buffers allocated once. For the same seeds it returns
    exactly what ``gym.make_vec(..., vectorization_mode="sync")`` of single envs returns
    (observations, rewards, flags and infos), in every autoreset mode and feed mode: with
    ``feed="action"`` and a ``feed_probability`` below 1 each stream draws whether a step
    shows its action from its own generator, as its single env would.

    ```python
    import gymnasium as gym
    import irlm_env

    envs = gym.make_vec("irlm/NextWord-v0", num_envs=1024, corpus="grammar")
    ```

    ## Action Space

    ``MultiDiscrete([V] * num_envs)``: one predicted token id per stream.

    ## Observation Space

    ``Box(0, V - 1, (num_envs, context_length), int64)``: each stream's context, as in the
    single env: its shown tokens, the true ones or (``feed="action"``) its own actions.

    ## Rewards

    ``(num_envs,)`` float64 from the reward plugin's batched form, the same values as the
    single env's: each action is scored against the reference text's token, given the
    observations or, for a reward with a ``history_length``, the true histories.

    ## Starting State

    As in the single env, each stream from its own generator: ``reset(seed=s)`` seeds stream
    ``i`` with ``s + i``.

    ## Episode End

    As in the single env; ended streams are reset automatically according to
    ``autoreset_mode`` (``metadata["autoreset_mode"]``):

    - ``NEXT_STEP`` (default, as Gymnasium's vector envs): the step after an episode ends
      resets that stream, ignores its action and returns reward 0 and no flags for it.
    - ``SAME_STEP`` (as Stable-Baselines3): the ending step resets the stream at once; its
      last observation and info are in ``info["final_obs"]`` / ``info["final_info"]`` (with
      ``_final_obs`` / ``_final_info`` masks), as in Gymnasium's same-step mode.
    - ``DISABLED``: nothing is reset automatically; call ``reset(options={"reset_mask": m})``
      for the ended streams before stepping them again.

    Building ``final_obs`` (an object array of per-stream rows, Gymnasium's format) and
    drawing a new block of random starts or feed draws when a stream has used up its block
    (every ``START_BLOCK`` episodes, every ``FEED_BLOCK`` steps) touch only the streams
    concerned, one by one; everything else in ``step`` is whole-array.

    ## Information

    ``step`` returns Gymnasium's vector form of the single env's info: ``"target"`` (int64,
    the reference tokens whatever was fed) and ``"correct"`` (bool) arrays with
    ``"_target"``/``"_correct"`` masks that are False for streams that were reset in that
    step (their info is the reset's, empty).

    For agents, without building anything per step:

    - ``targets()``: the true next token id of every stream, i.e. the target of the coming
      step (not meaningful for streams that the next step will reset, see below).
    - ``score(actions)``: the rewards that ``(num_envs, K)`` candidate actions would get now,
      without stepping; for group-sampling agents that compare several candidates.
    - ``reward_contexts()``: the contexts the reward gets at the coming step (the
      observations, or the true histories of a reward with a ``history_length``), for agents
      that call the reward's ``table`` or ``batch`` themselves.
    - ``episode_starts``: ``(num_envs,)`` bool, True where the last returned observation is
      the first of an episode (all True after ``reset``); recurrent agents reset their
      hidden state there.
    - ``pending_reset``: ``(num_envs,)`` bool, True for streams whose episode has ended and
      that the next ``step`` resets (``NEXT_STEP``) or that need a reset (``DISABLED``).

    ## Arguments

    ``num_envs``, the keyword arguments of ``NextWordEnv`` (among them ``feed`` and
    ``feed_probability``), and:

    - ``autoreset_mode``: an ``AutoresetMode`` or its value (``"NextStep"``, ``"SameStep"``,
      ``"Disabled"``).
    - ``copy``: return fresh arrays from ``reset``/``step`` (default, like Gymnasium's sync
      vector env). With ``copy=False`` the returned arrays are the env's own buffers, valid
      until the next ``step`` or ``reset`` overwrites them: faster, for loops that consume
      each step's results at once.
    """

    metadata = {**NextWordEnv.metadata, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        copy: bool = True,
        **env_kwargs: Any,
    ) -> None:
        num_envs = check_int("num_envs", num_envs)
        arguments = env_arguments(env_kwargs, _OWN_KEYWORDS, "NextWordVectorEnv")
        self.render_mode = check_render_mode(arguments.pop("render_mode"))
        self.autoreset_mode = _autoreset_mode(autoreset_mode)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.copy = bool(copy)
        self.setup = setup = EpisodeSetup.build(**arguments)
        self.corpus = setup.corpus
        self.vocab = setup.corpus.vocab
        self.reward_fn = setup.reward_fn
        self.num_envs = n = int(num_envs)
        vocab_size = len(self.vocab)
        context = setup.context_length
        self.single_observation_space = spaces.Box(0, vocab_size - 1, (context,), np.int64)
        self.single_action_space = spaces.Discrete(vocab_size)
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)

        self._tokens = setup.tokens
        self._line_mode = setup.line_starts is not None
        self._eos = self.vocab.eos_id
        # Per-stream random starts, drawn exactly as each single env draws its own.
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._blocks = np.zeros((n, START_BLOCK), np.int64)
        self._used = np.full(n, START_BLOCK, np.int64)  # starts taken from each block
        # Per-stream feed draws, likewise; allocated only when steps draw (0 < p < 1).
        self._feed_probability = p = setup.feed_probability
        drawn = FEED_BLOCK if 0.0 < p < 1.0 else 0
        self._feed_blocks = np.zeros((n, drawn), np.bool_)
        self._feed_used = np.full(n, FEED_BLOCK, np.int64)  # draws taken from each block
        self._feed_rows = np.arange(n, dtype=np.int64) * drawn  # where each block starts, flat
        self._feed_index = np.zeros(n, np.int64)
        self._fed = np.zeros(n, np.bool_)
        self._exhausted = np.zeros(n, np.bool_)
        self._stepping = np.zeros(n, np.bool_)
        history = self.reward_fn.history_length
        self._history = None if history is None else np.arange(-history, 0)
        # Episode state: the position of each stream's next target, where a window episode
        # is truncated, the contexts (two buffers, written alternately) and the targets.
        self._target_pos = np.zeros(n, np.int64)
        self._end_pos = np.zeros(n, np.int64)
        self._obs = np.zeros((n, context), np.int64)
        self._obs_next = np.zeros((n, context), np.int64)
        self._target = np.zeros(n, np.int64)
        self._target_next = np.zeros(n, np.int64)
        # np.take cannot cast into int64 (the corpus stores the smallest unsigned id type), so
        # it gathers into a buffer of the corpus's type, copied into the target with a cast.
        self._gathered = np.zeros(n, self._tokens.dtype)
        # Rewards get read-only views of these buffers, made once and swapped with them: a
        # reward that writes into its contexts or targets raises instead of corrupting streams.
        self._obs_view, self._obs_next_view = read_only(self._obs), read_only(self._obs_next)
        self._target_view, self._target_next_view = read_only(self._target), read_only(self._target_next)
        # Step results.
        self._rewards = np.zeros(n, np.float64)
        self._terminated = np.zeros(n, np.bool_)
        self._truncated = np.zeros(n, np.bool_)
        self._correct = np.zeros(n, np.bool_)
        self._ended = np.zeros(n, np.bool_)
        self._info_mask = np.ones(n, np.bool_)
        self._all_true = np.ones(n, np.bool_)
        self.pending_reset = np.zeros(n, np.bool_)
        self.episode_starts = np.zeros(n, np.bool_)
        self._any_pending = False
        self._started = False
        self._last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        # What score() was told at the current state: (streams, actions, rewards) per call.
        self._answers: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    # ----------------------------------------------------------------------------------
    def __setstate__(self, state: dict[str, Any]) -> None:
        # Pickle and deepcopy copy a view as an array of its own; rewards must see the live buffers.
        self.__dict__.update(state)
        self._obs_view, self._obs_next_view = read_only(self._obs), read_only(self._obs_next)
        self._target_view, self._target_next_view = read_only(self._target), read_only(self._target_next)

    def reset(
        self,
        *,
        seed: int | list[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            super().reset(seed=int(seed))
            seeds = [int(seed) + i for i in range(n)]
        elif isinstance(seed, (list, tuple, np.ndarray)):
            if len(seed) != n:
                raise IrlmError(
                    f"reset got {len(seed)} seeds for {n} envs; pass one seed per env, "
                    "an int (env i gets seed + i) or None"
                )
            seeds = [None if s is None else check_int(f"reset's seed for env {i}", s, minimum=0)
                     for i, s in enumerate(seed)]
        else:
            raise IrlmError(
                f"reset got seed={seed!r}; pass an int (env i gets seed + i), a list of {n} ints or "
                "Nones (one per env), or None"
            )
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if options:
            raise IrlmError(
                f"NextWordVectorEnv.reset takes only the 'reset_mask' option, got "
                f"{sorted(options)}"
            )
        if mask is None:
            streams = np.arange(n)
        else:
            if not isinstance(mask, np.ndarray) or mask.shape != (n,) or mask.dtype != bool:
                raise IrlmError(
                    f"options['reset_mask'] must be a bool numpy array of shape ({n},)"
                )
            if not self._started and not mask.all():
                raise ResetNeededError("the first reset() must reset every env")
            streams = np.flatnonzero(mask)
        for i in streams:
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i] = seeding.np_random(seeds[i])[0]
                self._used[i] = START_BLOCK  # a new generator starts new blocks
                self._feed_used[i] = FEED_BLOCK
        self._begin(streams)
        self._started = True
        self.pending_reset[streams] = False
        self._any_pending = bool(self.pending_reset.any())
        self.episode_starts[:] = False
        self.episode_starts[streams] = True
        self._answers.clear()
        return self._output(self._obs), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise ResetNeededError("call reset() before step() on NextWordVectorEnv")
        if self._any_pending and self.autoreset_mode is AutoresetMode.DISABLED:
            raise ResetNeededError(
                f"envs {np.flatnonzero(self.pending_reset).tolist()} have ended; with "
                "autoreset_mode DISABLED call reset(options={'reset_mask': ...}) for them "
                "before step()"
            )
        resetting = self.pending_reset if self._any_pending and self.autoreset_mode is AutoresetMode.NEXT_STEP else None
        actions = self._check_actions(actions, (self.num_envs,), resetting)
        obs, target = self._obs, self._target
        candidates = actions[:, None]  # a fresh view: making it read-only leaves the caller's array be
        candidates.flags.writeable = False
        if self._answers:
            self._reward_played(actions, resetting)
        else:
            np.copyto(self._rewards, self.reward_fn.batch(candidates, self._target_view, self._contexts())[:, 0])
        self._answers.clear()  # the state moves on: what score() was told holds no longer
        np.equal(actions, target, out=self._correct)
        # Every context moves on by the shown token: the true one (teacher forcing) or the
        # action. One contiguous copy shifted by one element moves every row left; each row's
        # last slot, which received the next row's first token, is then overwritten.
        new_obs = self._obs_next
        new_obs.reshape(-1)[:-1] = obs.reshape(-1)[1:]
        if not self._feed_probability:
            new_obs[:, -1] = target
        elif self._feed_probability == 1.0:
            new_obs[:, -1] = actions
        else:
            new_obs[:, -1] = target
            np.copyto(new_obs[:, -1], actions, where=self._draw_feeds())
        self._obs, self._obs_next = new_obs, obs
        self._obs_view, self._obs_next_view = self._obs_next_view, self._obs_view
        np.add(self._target_pos, 1, out=self._target_pos)
        # Streams past their end read a clipped position; they are reset before it counts.
        np.take(self._tokens, self._target_pos, out=self._gathered, mode="clip")
        np.copyto(self._target_next, self._gathered)
        self._target, self._target_next = self._target_next, target
        self._target_view, self._target_next_view = self._target_next_view, self._target_view
        if self._line_mode:
            np.equal(target, self._eos, out=self._terminated)
        else:
            np.equal(self._target_pos, self._end_pos, out=self._truncated)
        if self.render_mode is not None:
            self._last = (obs.copy(), actions.copy(), target.copy())

        info_mask = self._all_true
        extra: dict[str, Any] = {}
        if self.autoreset_mode is AutoresetMode.NEXT_STEP:
            if self._any_pending:
                resetting = self.pending_reset
                info_mask = np.logical_not(resetting, out=self._info_mask)
                streams = np.flatnonzero(resetting)
                self._begin(streams)
                self._rewards[streams] = 0.0
                self._terminated[streams] = False
                self._truncated[streams] = False
                self._correct[streams] = False
                target[streams] = 0
            np.copyto(self.episode_starts, self.pending_reset)
            np.logical_or(self._terminated, self._truncated, out=self.pending_reset)
            self._any_pending = bool(self.pending_reset.any())
        else:
            ended = np.logical_or(self._terminated, self._truncated, out=self._ended)
            if self.autoreset_mode is AutoresetMode.DISABLED:
                np.copyto(self.pending_reset, ended)
                self._any_pending = bool(ended.any())
                self.episode_starts.fill(False)
            else:
                np.copyto(self.episode_starts, ended)
                if ended.any():
                    streams = np.flatnonzero(ended)
                    extra = self._final(streams, ended, target)
                    info_mask = np.logical_not(ended, out=self._info_mask)
                    self._begin(streams)
                    self._correct[streams] = False
                    target[streams] = 0

        infos = self._infos(info_mask, target, self._correct)
        infos.update(extra)
        return (
            self._output(self._obs),
            self._output(self._rewards),
            self._output(self._terminated),
            self._output(self._truncated),
            infos,
        )

    # ----------------------------------------------------------------------------------
    def targets(self) -> np.ndarray:
        """The true next token id of every stream: what the coming ``step`` rewards."""
        self._require_started("targets()")
        return self._target.copy()

    def score(self, actions: np.ndarray, streams: np.ndarray | None = None) -> np.ndarray:
        """Rewards ``(num_envs, K)`` float64 that ``(num_envs, K)`` candidate actions would
        get at the current state, without stepping. Values for streams with
        ``pending_reset`` set are meaningless (their episode has ended). ``K = 0`` gives an
        empty ``(num_envs, 0)`` array, as numpy does for an empty axis, so a caller whose
        number of candidates varies (an adaptive query budget) needs no special case.

        ``streams`` (M distinct stream indices) asks about those streams only, with actions of
        shape ``(M, K)``: an agent that asks one candidate at a time, and stops where it is
        told yes, calls the reward only for what it asks. The answers are kept until the next
        ``step``, which pays a played action that was asked about with the answer given, without
        calling the reward again."""
        self._require_started("score()")
        actions = np.asarray(actions)
        rows = self.num_envs if streams is None else len(np.asarray(streams).reshape(-1))
        if actions.ndim != 2 or actions.shape[0] != rows:
            raise IrlmError(
                f"score() takes candidate actions of shape (num_envs, K) = ({self.num_envs}, K), or (M, K) for "
                f"M streams, got shape {actions.shape} for {rows} streams"
            )
        actions = self._check_actions(actions, actions.shape)
        if actions.shape[1] == 0:  # nothing to score, as numpy reduces an empty axis to empty
            return np.empty(actions.shape, np.float64)
        contexts = self._contexts()
        if streams is None:
            rewards = self.reward_fn.batch(read_only(actions), self._target_view, contexts)
            # Copies: the caller may reuse its arrays before the step these answers pay.
            self._answers.append((np.arange(self.num_envs), actions.copy(), rewards.copy()))
            return rewards
        chosen = self._check_streams(streams)
        rewards = self.reward_fn.batch(read_only(actions), read_only(self._target[chosen]), read_only(contexts[chosen]))
        self._answers.append((chosen.copy(), actions.copy(), rewards.copy()))
        return rewards

    def _check_streams(self, streams: Any) -> np.ndarray:
        chosen = np.asarray(streams)
        if chosen.ndim != 1 or chosen.dtype.kind not in "iu" or (
            chosen.size and (chosen.min() < 0 or chosen.max() >= self.num_envs or len(np.unique(chosen)) < chosen.size)
        ):
            raise IrlmError(f"streams must be distinct integer indices in [0, {self.num_envs}), got {chosen!r}")
        return chosen.astype(np.int64, copy=False)

    def _reward_played(self, actions: np.ndarray, resetting: np.ndarray | None) -> None:
        """The step's rewards into ``self._rewards``: the answers ``score()`` gave at this state
        for the played actions, and the reward's own for the others, asked once (none for the
        streams this step resets, which are paid 0)."""
        known = np.zeros(self.num_envs, np.bool_) if resetting is None else resetting.copy()
        for rows, asked, answers in self._answers:
            match = asked == actions[rows, None]
            found = match.any(1) & ~known[rows]
            self._rewards[rows[found]] = answers[found, match[found].argmax(1)]
            known[rows[found]] = True
        rest = np.flatnonzero(~known)
        if rest.size:
            contexts = self._contexts()
            self._rewards[rest] = self.reward_fn.batch(
                read_only(actions[rest, None]), read_only(self._target[rest]), read_only(contexts[rest])
            )[:, 0]

    def reward_contexts(self) -> np.ndarray:
        """What the reward gets as ``context`` at the coming step: the observations
        ``(num_envs, context_length)``, or for a reward with a ``history_length`` H the true
        histories ``(num_envs, H)``; for agents that call the reward's forms themselves.
        Rows of streams with ``pending_reset`` set are meaningless."""
        self._require_started("reward_contexts()")
        return self._obs.copy() if self._history is None else self._histories()

    def render(self) -> tuple[str, ...] | None:
        """One ``ansi`` frame per stream, like a sync vector env of single envs.

        A stream that has just begun an episode (``episode_starts``: reset, or autoreset at this
        step) shows its new context, as a single env does after ``reset()``; the others show
        their last step's context, prediction and truth.
        """
        if self.render_mode is None:
            return None
        self._require_started("render()")
        if self._last is None:
            return tuple(render_text(self.corpus, row, None, None) for row in self._obs)
        contexts, actions, targets = self._last
        return tuple(
            render_text(self.corpus, obs, None, None) if start else render_text(self.corpus, c, int(a), int(t))
            for obs, start, c, a, t in zip(self._obs, self.episode_starts, contexts, actions, targets, strict=True)
        )

    # ----------------------------------------------------------------------------------
    def _begin(self, streams: np.ndarray) -> None:
        """Start new episodes in ``streams``, taking each one's next start from its block."""
        used = self._used[streams]
        exhausted = used == START_BLOCK
        if exhausted.any():
            for i in streams[exhausted]:
                self._blocks[i] = self.setup.draw_starts(self._rngs[i])
            used[exhausted] = 0
        starts = self._blocks[streams, used]
        self._used[streams] = used + 1
        self._target_pos[streams] = starts + 1
        self._end_pos[streams] = starts + 1 + self.setup.episode_length
        self._obs[streams] = 0
        self._obs[streams, -1] = self._tokens[starts]
        self._target[streams] = self._tokens[starts + 1]

    def _contexts(self) -> np.ndarray:
        """What the reward gets as ``context`` now, read-only: the observations, or the true histories."""
        return self._obs_view if self._history is None else self._histories()

    def _histories(self) -> np.ndarray:
        """The true history before every stream's target, for a reward that asks for it."""
        return read_only(gather_history(self._tokens, self._target_pos, self._history, self.vocab.pad_id))

    def _draw_feeds(self) -> np.ndarray:
        """Which streams show their action in this step, each from its own block of draws.
        A stream that this step resets (next-step autoreset) takes no draw, as its single env
        is reset instead of stepped."""
        used = self._feed_used
        exhausted = np.equal(used, FEED_BLOCK, out=self._exhausted)
        stepping = None
        if self._any_pending:  # only with next-step autoreset: DISABLED refuses to step then
            stepping = np.logical_not(self.pending_reset, out=self._stepping)
            np.logical_and(exhausted, stepping, out=exhausted)
        if exhausted.any():
            for i in np.flatnonzero(exhausted):
                self._feed_blocks[i] = self.setup.draw_feeds(self._rngs[i])
            used[exhausted] = 0
        np.add(self._feed_rows, used, out=self._feed_index)
        # A resetting stream whose block is used up reads past it (clipped): the reset
        # replaces its observation anyway.
        np.take(self._feed_blocks.reshape(-1), self._feed_index, out=self._fed, mode="clip")
        np.add(used, 1 if stepping is None else stepping, out=used)
        return self._fed

    def _final(self, streams: np.ndarray, ended: np.ndarray, target: np.ndarray) -> dict:
        """Gymnasium's same-step record of the episodes that ended: their last observation
        and info, before the reset replaces them."""
        final_obs = np.full(self.num_envs, None, dtype=object)
        for i in streams:
            final_obs[i] = self._obs[i].copy()
        final_info = self._infos(ended, np.where(ended, target, 0), self._correct & ended)
        mask = ended.copy()
        return {"final_obs": final_obs, "_final_obs": mask, "final_info": final_info,
                "_final_info": mask.copy()}

    def _infos(self, mask: np.ndarray, target: np.ndarray, correct: np.ndarray) -> dict:
        # Gymnasium's sync vector env leaves out a key that no env reported.
        if mask is not self._all_true and not mask.any():
            return {}
        return {"target": self._output(target), "_target": mask.copy(),
                "correct": self._output(correct), "_correct": mask.copy()}

    def _check_actions(self, actions: Any, shape: tuple[int, ...], ignored: np.ndarray | None = None) -> np.ndarray:
        """``actions`` as int64 token ids; those of the ``ignored`` streams (being reset) become 0 unchecked."""
        array = np.asarray(actions)
        if array.shape != shape or array.dtype.kind not in "iu":
            raise IrlmError(
                f"actions must be integer token ids of shape {shape}, got "
                f"{array.dtype} array of shape {array.shape}"
            )
        if ignored is not None:  # as Gymnasium's vector envs, which never look at them
            array = np.where(ignored, 0, array)
        given, array = array, array.astype(np.int64, copy=False)
        # As unsigned, negative ids become huge: one comparison checks both bounds.
        if array.size and array.view(np.uint64).max() >= len(self.vocab):
            bad = given[(given < 0) | (given >= len(self.vocab))]  # as given: uint64 2**64-1 is not -1
            raise self.setup.action_error(int(bad[0]))
        return array

    def _output(self, array: np.ndarray) -> np.ndarray:
        return array.copy() if self.copy else array

    def _require_started(self, what: str) -> None:
        if not self._started:
            raise ResetNeededError(f"call reset() before {what} on NextWordVectorEnv")


def _autoreset_mode(mode: AutoresetMode | str) -> AutoresetMode:
    if isinstance(mode, AutoresetMode):
        return mode
    names = {m.value: m for m in AutoresetMode} | {m.name: m for m in AutoresetMode}
    if mode not in names:
        raise IrlmError(f"unknown autoreset_mode {mode!r}; {suggest(str(mode), names)}")
    return names[mode]
