"""NextWordEnv: the Gymnasium contract, episode semantics, reproducibility and bad input."""

from __future__ import annotations

import pickle
import subprocess
import sys
import tracemalloc
import warnings
from copy import deepcopy
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import irlm_env
from irlm_env.corpus import Corpus, load_corpus
from irlm_env.envs.next_word import NextWordEnv
from irlm_env.errors import IrlmError

TEXT = """The quick brown fox jumps over the lazy dog.
A stitch in time saves nine, they say.
Rome was not built in a day, but it was built.
All that glitters is not gold, and all that wander are not lost.
"""


@pytest.fixture(scope="session")
def grammar() -> Corpus:
    return load_corpus("grammar")


@pytest.fixture(scope="session")
def pydocs() -> Corpus:
    # The first extraction reads the whole standard library; share it across the session.
    return load_corpus("pydocs", max_vocab=300)


@pytest.fixture(scope="session")
def text(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    path = tmp_path_factory.mktemp("text") / "proverbs.txt"
    path.write_text(TEXT * 30, encoding="utf-8")
    return load_corpus("text", path=str(path), max_vocab=100)


@pytest.fixture(params=["grammar", "text", "pydocs"])
def corpus(request: pytest.FixtureRequest) -> Corpus:
    return request.getfixturevalue(request.param)


def rollout(env: gym.Env, actions: list[int], seed: int | None) -> list:
    """Observations, rewards, flags and infos of a run that resets whenever an episode ends."""
    obs, _ = env.reset(seed=seed)
    record = [obs]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        record.append((obs.tolist(), reward, terminated, truncated, info))
        if terminated or truncated:
            record.append(env.reset()[0].tolist())
    return record


# --- Gymnasium and SB3 contracts --------------------------------------------------------------

@pytest.mark.parametrize("mode", ["window", "line"])
def test_gymnasium_and_sb3_check_env_pass_without_warnings(corpus: Corpus, mode: str) -> None:
    def make(**kwargs: object) -> gym.Env:
        # Through gym.make, so the env has a spec and the checker can try each render mode.
        return gym.make(irlm_env.ENV_ID, corpus=corpus, mode=mode, **kwargs).unwrapped

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(make(episode_length=16))
        sb3_check_env(make(episode_length=16))
        gym_check_env(make(context_length=1, render_mode="ansi"))
        sb3_check_env(make(context_length=1))


def test_gym_make_registered_by_import(grammar: Corpus) -> None:
    env = gym.make("irlm/NextWord-v0", corpus=grammar, context_length=5)
    assert isinstance(env.unwrapped, NextWordEnv)
    assert env.observation_space == gym.spaces.Box(0, len(grammar.vocab) - 1, (5,), np.int64)
    assert env.action_space == gym.spaces.Discrete(len(grammar.vocab))


def test_gym_make_with_module_prefix_needs_no_import(tmp_path: Path) -> None:
    code = (
        "import sys, gymnasium as gym\n"
        "assert 'irlm_env' not in sys.modules\n"
        "env = gym.make('irlm_env:irlm/NextWord-v0', corpus='grammar')\n"
        "obs, info = env.reset(seed=0)\n"
        "print(type(env.unwrapped).__name__, obs.shape, env.step(0)[4].keys())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "NextWordEnv (8,) dict_keys(['target', 'correct'])" in done.stdout


# --- Episode semantics --------------------------------------------------------------------------

@pytest.mark.parametrize("context_length", [1, 4])
def test_window_episode_follows_the_true_text_whatever_the_action(
    grammar: Corpus, context_length: int
) -> None:
    env = NextWordEnv(corpus=grammar, context_length=context_length, episode_length=12)
    tokens = grammar.split("train")
    vocab = len(grammar.vocab)
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        assert info == {} and obs.dtype == np.int64 and obs.shape == (context_length,)
        assert np.all(obs[:-1] == grammar.vocab.pad_id)
        seen = [int(obs[-1])]
        for step in range(12):
            action = (seed * 7 + step) % vocab  # mostly wrong: the text must not care
            obs, reward, terminated, truncated, info = env.step(action)
            assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
            assert info == {"target": info["target"], "correct": action == info["target"]}
            assert type(info["target"]) is int and type(info["correct"]) is bool
            assert reward == float(info["correct"])
            seen.append(info["target"])
            window = seen[-context_length:]
            assert obs.tolist() == [0] * (context_length - len(window)) + window
            assert not terminated and truncated == (step == 11)
        # The episode is a contiguous stretch of the split.
        starts = np.flatnonzero(tokens[: len(tokens) - 12] == seen[0])
        assert any(np.array_equal(tokens[s:s + 13], seen) for s in starts)


def test_line_episode_is_one_unit_ending_in_termination(grammar: Corpus) -> None:
    env = NextWordEnv(corpus=grammar, mode="line", episode_length=2)
    eos = grammar.vocab.eos_id
    lengths = set()
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        assert obs[-1] == eos and np.all(obs[:-1] == 0)
        steps = 0
        while True:
            _, _, terminated, truncated, info = env.step(0)
            steps += 1
            assert not truncated
            if terminated:
                assert info["target"] == eos
                break
            assert info["target"] != eos
        lengths.add(steps)
    assert max(lengths) > 2, "line episodes ignore episode_length"


def test_a_window_episode_may_span_the_whole_split(tmp_path: Path) -> None:
    """A split of ``episode_length + 1`` tokens is long enough, as the error below says: its one
    window is the whole split. One token fewer is refused up front, not at the first reset."""
    path = tmp_path / "tiny.txt"
    path.write_text("one two three\nfour five\nsix\nseven eight nine ten\n" * 2, encoding="utf-8")
    tiny = load_corpus("text", path=str(path))
    tokens = tiny.split("train")
    n = len(tokens)
    env = NextWordEnv(corpus=tiny, context_length=1, episode_length=n - 1)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        seen = [int(obs[-1])]
        for _ in range(n - 1):
            _, _, _, truncated, info = env.step(0)
            seen.append(info["target"])
        assert truncated and seen == tokens.tolist()
    with pytest.raises(IrlmError, match=rf"has {n} tokens, fewer than episode_length \+ 1 = {n + 1}"):
        NextWordEnv(corpus=tiny, episode_length=n)


def test_line_episodes_start_at_every_line_of_the_split(tmp_path: Path) -> None:
    """Every unit of the split, the last one included, is drawn as a line episode."""
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"first{i} middle end .\n" for i in range(20)), encoding="utf-8")
    corpus = load_corpus("text", path=str(path))
    tokens, starts = corpus.split("train"), corpus.line_starts("train")
    env = NextWordEnv(corpus=corpus, mode="line")
    env.reset(seed=0)
    drawn = set()
    for _ in range(400):
        drawn.add(env.step(0)[-1]["target"])
        env.reset()
    assert drawn == set(tokens[starts + 1].tolist()) and len(drawn) == len(starts)


def test_same_seed_same_rollout_and_other_seed_differs(grammar: Corpus) -> None:
    actions = list(np.random.default_rng(0).integers(0, len(grammar.vocab), 300))
    for mode in ("window", "line"):
        one = rollout(NextWordEnv(corpus=grammar, mode=mode, episode_length=7), actions, 42)
        two = rollout(NextWordEnv(corpus=grammar, mode=mode, episode_length=7), actions, 42)
        other = rollout(NextWordEnv(corpus=grammar, mode=mode, episode_length=7), actions, 43)
        assert str(one) == str(two)
        assert str(one) != str(other)


def test_pickled_env_behaves_like_the_original(grammar: Corpus) -> None:
    env = NextWordEnv(corpus=grammar, mode="line")
    actions = list(np.random.default_rng(1).integers(0, len(grammar.vocab), 200))
    rollout(env, actions[:50], seed=3)
    clone = pickle.loads(pickle.dumps(env))
    for action in actions[50:]:  # across several resets: the generator state travels too
        got, want = clone.step(action), env.step(action)
        assert str(got) == str(want)
        if want[2] or want[3]:
            assert str(clone.reset()) == str(env.reset())


def test_setting_np_random_draws_the_next_episodes_from_it(grammar: Corpus) -> None:
    envs = [NextWordEnv(corpus=grammar, feed="action", feed_probability=0.5) for _ in range(2)]
    for seed, env in enumerate(envs):
        env.reset(seed=seed)
        env.np_random = np.random.default_rng(7)
    for _ in range(5):
        first, second = (env.reset()[0] for env in envs)
        assert np.array_equal(first, second)
        for _ in range(3):  # the feed draws from the new generator too
            assert np.array_equal(envs[0].step(1)[0], envs[1].step(1)[0])


def test_render_shows_a_pad_token_the_agent_fed_itself(grammar: Corpus) -> None:
    env = NextWordEnv(corpus=grammar, render_mode="ansi", context_length=6, feed="action")
    env.reset(seed=0)
    pad = grammar.vocab.pad_id
    for action in (pad, pad):
        env.step(action)
    assert env.render().startswith("context:    ") and env.render().count(grammar.vocab.token(pad)) == 2


def test_copied_env_reads_its_live_context(grammar: Corpus) -> None:
    # The context a reward and render() read is a view; a copy must view the copy's buffers.
    env = NextWordEnv(corpus=grammar, render_mode="ansi", context_length=4)
    env.reset(seed=0)
    for clone in (pickle.loads(pickle.dumps(env)), deepcopy(env)):
        for action in range(1, 6):
            clone.step(action)
            env.step(action)
            assert clone.render() == env.render()
        env.reset(seed=0)


def test_render_ansi_shows_context_prediction_and_truth(grammar: Corpus) -> None:
    env = NextWordEnv(corpus=grammar, render_mode="ansi", context_length=3)
    assert env.metadata["render_modes"] == ["ansi"]
    assert env.render() == "(call reset() first)"
    obs, _ = env.reset(seed=0)
    first = grammar.vocab.token(int(obs[-1]))
    assert env.render() == f"context:    {grammar.tokenizer.join([first])}\n"
    _, _, _, _, info = env.step(info_target := int(grammar.split("train")[0]))
    frame = env.render()
    truth = grammar.vocab.token(info["target"])
    assert frame.startswith(f"context:    {grammar.tokenizer.join([first])}\n")
    assert f"prediction: {grammar.vocab.token(info_target)}" in frame
    assert f"truth:      {truth}\n" in frame
    assert ("(correct)" in frame) == info["correct"]


def test_no_memory_growth_over_many_episodes(grammar: Corpus) -> None:
    env = NextWordEnv(corpus=grammar, mode="window", episode_length=5)
    rollout(env, [3] * 2000, seed=0)  # warm up: caches, the first start block
    env.reset()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(20_000):  # 4000 episodes, many start blocks
        if env.step(3)[3]:
            env.reset()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert growth < 16 * 1024, f"memory grew by {growth} bytes"


# --- Bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"context_length": 0}, "context_length must be a positive integer, got 0"),
        ({"context_length": 2.5}, "context_length must be a positive integer, got 2.5"),
        ({"episode_length": 0}, "episode_length must be a positive integer, got 0"),
        ({"mode": "sentence"}, "unknown episode mode 'sentence'.*available: line, window"),
        ({"split": "valid"}, "unknown split 'valid'.*did you mean 'validation'"),
        ({"split": ["train"]}, r"unknown split \['train'\].*available: test, train, validation"),
        ({"reward": "exakt"}, "exakt.*did you mean 'exact'"),
        ({"corpus_options": {"seed": 1}}, "corpus_options only apply when corpus is a name"),
    ],
)
def test_bad_arguments_raise_clear_errors(grammar: Corpus, kwargs: dict, match: str) -> None:
    with pytest.raises(IrlmError, match=match):
        NextWordEnv(**{"corpus": grammar, **kwargs})


def test_unknown_keyword_names_it_with_a_suggestion(grammar: Corpus) -> None:
    for make in (NextWordEnv, lambda **kw: gym.make(irlm_env.ENV_ID, **kw)):
        with pytest.raises(TypeError, match="__init__\\(\\) got an unexpected keyword argument 'context_len'; did you mean "
                           "'context_length'\\? available: .*episode_length") as caught:
            make(corpus=grammar, context_len=4)
        assert isinstance(caught.value, IrlmError)


def test_corpus_shorter_than_context_states_both_numbers(tmp_path: Path) -> None:
    path = tmp_path / "tiny.txt"
    path.write_text("one two three\nfour five\nsix\nseven eight nine ten\n" * 2, encoding="utf-8")
    tiny = load_corpus("text", path=str(path))
    n = len(tiny.split("train"))
    with pytest.raises(IrlmError, match=rf"has {n} tokens, fewer than context_length \+ 1 = 51"):
        NextWordEnv(corpus=tiny, context_length=50)
    with pytest.raises(IrlmError, match=rf"has {n} tokens, fewer than episode_length \+ 1 = 101"):
        NextWordEnv(corpus=tiny, context_length=2, episode_length=100)


def test_step_before_reset_and_after_the_end(grammar: Corpus) -> None:
    env = NextWordEnv(corpus=grammar, episode_length=1)
    with pytest.raises(gym.error.ResetNeeded, match=r"call reset\(\) before step\(\)") as caught:
        env.step(0)
    assert isinstance(caught.value, IrlmError)
    with pytest.raises(gym.error.ResetNeeded):
        gym.make(irlm_env.ENV_ID, corpus=grammar).step(0)
    env.reset(seed=0)
    assert env.step(0)[3]
    with pytest.raises(gym.error.ResetNeeded, match="episode has ended"):
        env.step(0)


@pytest.mark.parametrize("action", [-1, "vocab", 1.0, "3", True, np.array([1, 2])])
def test_action_outside_the_space(grammar: Corpus, action: object) -> None:
    env = NextWordEnv(corpus=grammar)
    env.reset(seed=0)
    vocab = len(grammar.vocab)
    if isinstance(action, str) and action == "vocab":
        action = vocab
    named = "" if isinstance(action, int) and not isinstance(action, bool) else rf" \({type(action).__name__}, not an integer\)"
    with pytest.raises(IrlmError, match=rf"action .*{named} is outside the action space: use an integer "
                       rf"token id in \[0, {vocab - 1}\]"):
        env.step(action)
    # Integer-valued numpy scalars and 0-d arrays are fine.
    env.step(np.int32(3))
    env.step(np.array(4))


def test_reset_rejects_unknown_options(grammar: Corpus) -> None:
    env = NextWordEnv(corpus=grammar)
    with pytest.raises(IrlmError, match=r"takes no options, got \['start'\]"):
        env.reset(options={"start": 0})
