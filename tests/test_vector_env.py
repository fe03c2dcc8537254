"""The native vector env: exactly the sync vector env's rollouts, in one numpy call per step."""

from __future__ import annotations

import pickle
import re

import tracemalloc
from copy import deepcopy
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import irlm_env
from irlm_env.corpus import Corpus, load_corpus
from irlm_env.envs.episodes import START_BLOCK
from irlm_env.envs.vector import NextWordVectorEnv
from irlm_env.errors import IrlmError


@pytest.fixture(scope="module")
def grammar() -> Corpus:
    return load_corpus("grammar")


def make_pair(
    corpus: Corpus, num_envs: int, autoreset_mode: AutoresetMode, **kwargs: Any
) -> tuple[gym.vector.VectorEnv, gym.vector.VectorEnv]:
    native = gym.make_vec(
        irlm_env.ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point",
        corpus=corpus, autoreset_mode=autoreset_mode, **kwargs,
    )
    sync = gym.make_vec(
        irlm_env.ENV_ID, num_envs=num_envs, vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": autoreset_mode}, corpus=corpus, **kwargs,
    )
    return native, sync


def assert_same(a: Any, b: Any, where: str) -> None:
    """Exact equality of step results, including dtypes and the infos' nesting and masks."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: {a.keys()} != {b.keys()}"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, np.ndarray) and a.dtype == object:
        assert isinstance(b, np.ndarray) and b.dtype == object and a.shape == b.shape, where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert (x is None) == (y is None), f"{where}[{i}]"
            if x is not None:
                assert_same(x, y, f"{where}[{i}]")
    else:
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert (a.dtype, a.shape) == (b.dtype, b.shape), f"{where}: {a.dtype} {b.dtype}"
        assert np.array_equal(a, b), f"{where}: {a} != {b}"


def rollout_both(
    native: gym.vector.VectorEnv, sync: gym.vector.VectorEnv, steps: int, seed: Any
) -> dict[str, int]:
    """Step both with the same actions (half of them correct) and compare every result."""
    seen = {"terminated": 0, "truncated": 0, "final": 0}
    assert_same(native.reset(seed=seed), sync.reset(seed=seed), "reset")
    rng = np.random.default_rng(0)
    n, vocab = native.num_envs, native.single_action_space.n
    for step in range(steps):
        guesses = rng.integers(0, vocab, n)
        actions = np.where(rng.random(n) < 0.5, native.unwrapped.targets(), guesses)
        got, want = native.step(actions), sync.step(actions)
        assert_same(got, want, f"step {step}")
        seen["terminated"] += int(got[2].sum())
        seen["truncated"] += int(got[3].sum())
        seen["final"] += int("final_obs" in got[4])
    return seen


@pytest.mark.parametrize("mode", ["window", "line"])
@pytest.mark.parametrize("autoreset", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_env_reproduces_sync_vector_env(
    grammar: Corpus, mode: str, autoreset: AutoresetMode
) -> None:
    # Short window episodes: each stream uses up its block of starts, so refills are covered.
    native, sync = make_pair(grammar, 6, autoreset, mode=mode, episode_length=3, context_length=3)
    assert isinstance(native.unwrapped, NextWordVectorEnv)
    assert native.metadata["autoreset_mode"] is autoreset
    steps = 4 * (START_BLOCK + 10) if mode == "window" else 600
    seen = rollout_both(native, sync, steps, seed=7)
    ended = seen["truncated"] if mode == "window" else seen["terminated"]
    assert ended > 6 * START_BLOCK if mode == "window" else ended > 6 * 20
    assert (seen["final"] > 0) == (autoreset is AutoresetMode.SAME_STEP)
    # Unseeded resets continue each env's generator, in both.
    rollout_both(native, sync, 40, seed=None)
    rollout_both(native, sync, 40, seed=[3, None, 5, None, 9, 1])


def test_vector_env_disabled_autoreset_matches_sync_with_reset_mask(grammar: Corpus) -> None:
    native, sync = make_pair(grammar, 4, AutoresetMode.DISABLED, mode="line")
    assert_same(native.reset(seed=1), sync.reset(seed=1), "reset")
    rng = np.random.default_rng(1)
    resets = 0
    for step in range(200):
        actions = rng.integers(0, native.single_action_space.n, 4)
        got, want = native.step(actions), sync.step(actions)
        assert_same(got, want, f"step {step}")
        ended = got[2] | got[3]
        if ended.any():
            resets += 1
            assert_same(native.reset(options={"reset_mask": ended}),
                        sync.reset(options={"reset_mask": ended.copy()}), f"reset {step}")
    assert resets > 5


def test_stepping_an_ended_stream_without_autoreset_is_an_error(grammar: Corpus) -> None:
    env = NextWordVectorEnv(2, corpus=grammar, mode="window", episode_length=1,
                            autoreset_mode="Disabled")
    env.reset(seed=0)
    env.step(np.zeros(2, np.int64))
    with pytest.raises(gym.error.ResetNeeded, match=r"envs \[0, 1\] have ended.*reset_mask"):
        env.step(np.zeros(2, np.int64))


def test_targets_score_and_episode_starts(grammar: Corpus) -> None:
    env = NextWordVectorEnv(5, corpus=grammar, mode="line", context_length=4)
    obs, _ = env.reset(seed=3)
    assert env.episode_starts.all() and not env.pending_reset.any()
    vocab = len(env.vocab)
    for _ in range(100):
        targets = env.targets()
        candidates = np.stack([targets, (targets + 1) % vocab, np.zeros_like(targets)], axis=1)
        scores = env.score(candidates)
        assert scores.shape == (5, 3) and scores.dtype == np.float64
        live = ~env.pending_reset
        assert np.array_equal(scores[live], (candidates == targets[:, None])[live].astype(float))
        assert np.array_equal(env.targets(), targets), "score() must not advance the env"
        was_pending = env.pending_reset.copy()
        obs, rewards, terminated, truncated, info = env.step(candidates[:, 0])
        # The step after an episode's end resets that stream (next-step autoreset).
        assert np.array_equal(env.episode_starts, was_pending)
        assert np.array_equal(env.pending_reset, terminated | truncated)
        assert np.all(rewards[~was_pending] == 1.0) and np.all(rewards[was_pending] == 0.0)
        assert np.all(obs[was_pending, -1] == env.vocab.eos_id)
        if info:
            assert np.array_equal(info["_target"], ~was_pending)
            assert np.array_equal(info["target"][~was_pending], obs[~was_pending, -1])
    with pytest.raises(IrlmError, match=r"shape \(num_envs, K\) = \(5, K\)"):
        env.score(np.zeros(5, np.int64))
    with pytest.raises(IrlmError, match="outside the action space"):
        env.score(np.full((5, 2), vocab))


@pytest.mark.parametrize("clone", ["deepcopy", "pickle"])
@pytest.mark.parametrize("reset_first", [True, False])
def test_copied_vector_env_pays_the_live_targets(grammar: Corpus, clone: str, reset_first: bool) -> None:
    # AsyncVectorEnv, SubprocVecEnv and Ray ship envs pickled, before or after a reset.
    env = NextWordVectorEnv(4, corpus=grammar, mode="line", context_length=4)
    if reset_first:
        env.reset(seed=0)
        env.step(env.targets())
    copy = pickle.loads(pickle.dumps(env)) if clone == "pickle" else deepcopy(env)
    if not reset_first:
        copy.reset(seed=0)
    for _ in range(20):
        live = ~copy.pending_reset
        _, rewards, _, _, _ = copy.step(copy.targets())
        assert np.all(rewards[live] == 1.0)


def test_score_some_streams_and_a_step_pays_what_score_answered(grammar: Corpus) -> None:
    judged: list[int] = []

    def counting(action: int, target: int, context: np.ndarray) -> float:
        judged.append(action)
        return float(action == target)

    class Plugin:
        @irlm_env.hookimpl
        def irlm_register_rewards(self, register: Any) -> None:
            register("counting", lambda corpus: counting)

    irlm_env.plugins.register_plugin(Plugin(), "counting-test")
    try:
        reward = irlm_env.make_reward("counting", grammar)
    finally:
        irlm_env.plugins.reset_plugins()
    env = NextWordVectorEnv(4, corpus=grammar, mode="line", context_length=4, reward=reward)
    reference = NextWordVectorEnv(4, corpus=grammar, mode="line", context_length=4)
    env.reset(seed=1)
    reference.reset(seed=1)
    for _ in range(30):
        targets = env.targets()
        candidates = np.stack([targets, (targets + 1) % len(env.vocab)], axis=1)
        some = np.array([2, 0])
        judged.clear()
        part = env.score(candidates[some], some)
        assert np.array_equal(part, reference.score(candidates)[some]) and len(judged) == 4
        played = np.where(np.arange(4) % 2 == 0, candidates[:, 1], candidates[:, 0])
        judged.clear()
        fresh = [i for i in (1, 3) if not env.pending_reset[i]]  # 0 and 2 were answered; a restart pays 0
        got, want = env.step(played), reference.step(played)
        assert all(np.array_equal(a, b) for a, b in zip(got[:4], want[:4]))
        assert sorted(judged) == sorted(played[fresh].tolist())
    with pytest.raises(IrlmError, match=r"streams must be distinct integer indices in \[0, 4\)"):
        env.score(np.zeros((2, 1), np.int64), np.array([1, 1]))
    with pytest.raises(IrlmError, match=r"shape \(num_envs, K\) = \(4, K\), or \(M, K\) for M streams"):
        env.score(np.zeros((3, 1), np.int64), np.array([0, 1]))


def test_a_step_after_score_pays_the_played_column_of_the_answers(grammar: Corpus) -> None:
    """The step pays a scored action with the answer score() gave for that very candidate, in
    whichever column it was; checked against the rewards score() returned, not against another
    env that would take the same shortcut."""
    env = NextWordVectorEnv(4, corpus=grammar, mode="line", context_length=4)
    env.reset(seed=2)
    vocab = len(env.vocab)
    rng = np.random.default_rng(0)
    paid_later_columns = 0
    for _ in range(40):
        targets = env.targets()
        candidates = np.stack([(targets + 1) % vocab, targets, (targets + 2) % vocab], axis=1)
        scores = env.score(candidates)
        column = rng.integers(0, 3, 4)
        live = ~env.pending_reset
        rewards = env.step(candidates[np.arange(4), column])[1]
        assert np.array_equal(rewards[live], scores[live, column[live]])
        assert np.all(rewards[~live] == 0.0)  # a stream the step restarts is paid 0
        paid_later_columns += int((rewards[live & (column > 0)] == 1.0).sum())
    assert paid_later_columns > 5


def test_copy_false_returns_reused_buffers_and_copy_true_fresh_arrays(grammar: Corpus) -> None:
    actions = np.zeros(3, np.int64)
    fast = NextWordVectorEnv(3, corpus=grammar, copy=False)
    safe = NextWordVectorEnv(3, corpus=grammar)
    fast.reset(seed=0)
    safe.reset(seed=0)
    first_fast, first_safe = fast.step(actions)[0], safe.step(actions)[0]
    kept = first_safe.copy()
    for _ in range(2):
        now_fast, now_safe = fast.step(actions)[0], safe.step(actions)[0]
        assert np.array_equal(now_fast, now_safe)
    assert first_fast is now_fast  # two buffers, written alternately
    assert np.array_equal(first_safe, kept)
    first_safe[:] = 0  # a caller changing its copy changes nothing in the env
    assert np.array_equal(safe.step(actions)[0], fast.step(actions)[0])


def test_render_gives_one_ansi_frame_per_stream(grammar: Corpus) -> None:
    env = NextWordVectorEnv(2, corpus=grammar, render_mode="ansi")
    env.reset(seed=0)
    assert all(frame.startswith("context:") for frame in env.render())
    targets = env.targets()
    env.step(targets)
    frames = env.render()
    assert len(frames) == 2
    for frame, target in zip(frames, targets, strict=True):
        assert f"truth:      {env.vocab.token(int(target))}" in frame and "(correct)" in frame


@pytest.mark.parametrize("mode", ["NextStep", "SameStep", "Disabled"])
def test_render_around_resets_matches_a_sync_vector_env(mode: str) -> None:
    # Sentences of different lengths: streams end, and restart, at different steps.
    settings = {"corpus": "grammar", "mode": "line", "render_mode": "ansi"}
    native = gym.make_vec("irlm/NextWord-v0", num_envs=3, autoreset_mode=mode, **settings)
    sync = gym.make_vec("irlm/NextWord-v0", num_envs=3, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": mode}, **settings)
    native.reset(seed=0)
    sync.reset(seed=0)
    for t in range(40):
        ended = native.unwrapped.pending_reset.copy()
        if mode == "Disabled" and ended.any():  # only those restart; the others keep their frames
            native.reset(options={"reset_mask": ended.copy()})
            sync.reset(options={"reset_mask": ended.copy()})
        else:
            actions = native.unwrapped.targets()
            native.step(actions)
            sync.step(actions)
        assert native.render() == sync.render(), f"{mode} at call {t}"


def test_next_step_ignores_the_actions_of_streams_it_resets_as_gymnasium_does(grammar: Corpus) -> None:
    env = NextWordVectorEnv(2, corpus=grammar, episode_length=1)
    env.reset(seed=0)
    env.step(env.targets())
    assert env.pending_reset.all()
    _, rewards, _, _, _ = env.step(np.array([-1, len(env.vocab)]))  # never looked at: both streams restart
    assert np.array_equal(rewards, [0.0, 0.0]) and env.episode_starts.all()
    with pytest.raises(IrlmError, match="outside the action space"):
        env.step(np.array([-1, 0]))  # a live stream's action is checked


def test_no_memory_growth_over_many_episodes(grammar: Corpus) -> None:
    env = NextWordVectorEnv(64, corpus=grammar, mode="line", autoreset_mode="SameStep")
    env.reset(seed=0)
    actions = np.zeros(64, np.int64)

    def run(steps: int) -> None:
        for _ in range(steps):
            env.step(actions)

    run(300)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    run(2000)  # thousands of episodes end, with refills of the start blocks
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert growth < 64 * 1024, f"memory grew by {growth} bytes"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_envs": 0}, IrlmError, "num_envs must be a positive integer, got 0"),
        ({"autoreset_mode": "next"}, IrlmError, "unknown autoreset_mode 'next'.*NextStep"),
        ({"contxt_length": 4}, TypeError,
         "got an unexpected keyword argument 'contxt_length'.*did you mean 'context_length'"),
        ({"context_length": 0}, IrlmError, "context_length must be a positive integer"),
        ({"mode": "lines"}, IrlmError, "unknown episode mode 'lines'.*did you mean 'line'"),
    ],
)
def test_bad_vector_arguments(grammar: Corpus, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        NextWordVectorEnv(**{"num_envs": 2, "corpus": grammar, **kwargs})


def test_bad_vector_calls(grammar: Corpus) -> None:
    env = NextWordVectorEnv(3, corpus=grammar)
    vocab = len(env.vocab)
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        env.step(np.zeros(3, np.int64))
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        env.targets()
    with pytest.raises(IrlmError, match=r"3 seeds for 2 envs|2 seeds for 3 envs"):
        env.reset(seed=[1, 2])
    for seed in (True, "3", 1.5):
        with pytest.raises(IrlmError, match=rf"reset got seed={re.escape(repr(seed))}; pass an int"):
            env.reset(seed=seed)  # type: ignore[arg-type]
    with pytest.raises(IrlmError, match=r"reset's seed for env 1 must be a non-negative integer, got 'a'"):
        env.reset(seed=[1, "a", None])  # type: ignore[list-item]
    from_array = env.reset(seed=np.array([4, 5, 6]))[0]
    assert np.array_equal(from_array, env.reset(seed=[4, 5, 6])[0])
    env.reset(seed=0)
    with pytest.raises(IrlmError, match=r"shape \(3,\), got int64 array of shape \(2,\)"):
        env.step(np.zeros(2, np.int64))
    with pytest.raises(IrlmError, match="integer token ids.*float64"):
        env.step(np.zeros(3))
    with pytest.raises(IrlmError, match=rf"action -1 is outside.*\[0, {vocab - 1}\]"):
        env.step(np.array([0, -1, 0]))
    with pytest.raises(IrlmError, match=rf"action {vocab} is outside"):
        env.step(np.array([0, 1, vocab]))
    with pytest.raises(IrlmError, match="only the 'reset_mask' option"):
        env.reset(options={"start": 3})
