"""The envs take a reward by name or as an object built once with ``make_reward``."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import irlm_env
from irlm_env.corpus import Corpus, load_corpus
from irlm_env.envs.next_word import NextWordEnv
from irlm_env.envs.vector import NextWordVectorEnv
from irlm_env.errors import IrlmError
from irlm_env.rewards import Reward, make_reward


@pytest.fixture(scope="module")
def grammar() -> Corpus:
    return load_corpus("grammar", n_sentences=400)


def test_one_built_reward_is_shared_by_every_env(grammar: Corpus) -> None:
    reward = make_reward("exact", grammar)
    single = NextWordEnv(corpus=grammar, reward=reward)
    vector = NextWordVectorEnv(4, corpus=grammar, reward=reward)
    made = gym.make(irlm_env.ENV_ID, corpus=grammar, reward=reward)
    assert single.reward_fn is reward and vector.reward_fn is reward
    assert made.unwrapped.reward_fn is reward


def test_built_reward_gives_what_the_name_gives(grammar: Corpus) -> None:
    by_name, built = NextWordEnv(corpus=grammar), NextWordEnv(corpus=grammar, reward=make_reward("exact", grammar))
    for env in (by_name, built):
        env.reset(seed=3)
    for action in [5, 6, 7, 8] * 10:
        assert by_name.step(action)[1:4] == built.step(action)[1:4]


def test_reward_options_with_a_built_reward_is_an_error(grammar: Corpus) -> None:
    reward = make_reward("exact", grammar)
    for make in (NextWordEnv, lambda **kw: NextWordVectorEnv(2, **kw)):
        with pytest.raises(IrlmError, match="reward_options only apply when reward is a name"):
            make(corpus=grammar, reward=reward, reward_options={"scale": 1})


def test_a_reward_for_another_vocabulary_is_refused(grammar: Corpus) -> None:
    other = load_corpus("grammar", n_sentences=400, tokenizer="char")
    with pytest.raises(IrlmError, match="built for a corpus with another vocabulary"):
        NextWordEnv(corpus=grammar, reward=make_reward("exact", other))


def test_an_unchecked_reward_object_is_refused(grammar: Corpus) -> None:
    class Raw(Reward):
        def __call__(self, action: int, target: int, context: np.ndarray) -> float:
            return 0.0

    with pytest.raises(IrlmError, match=r"reward must be a registered reward name or what .*make_reward returns, got Raw"):
        NextWordEnv(corpus=grammar, reward=Raw())
