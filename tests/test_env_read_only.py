"""Rewards see the env's state read-only: one that writes into it raises (issue 10.5)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from irlm_env import hookimpl, plugins
from irlm_env.corpus import Corpus, load_corpus
from irlm_env.envs.next_word import NextWordEnv
from irlm_env.envs.vector import NextWordVectorEnv
from irlm_env.errors import IrlmError
from irlm_env.rewards import Reward


class Vandal(Reward):
    """Writes into whichever argument it is told to; otherwise the exact reward."""

    def __init__(self, corpus: Corpus, into: str = "context") -> None:
        self.where = into

    def __call__(self, action: int, target: int, context: np.ndarray) -> float:
        if self.where == "context":
            context[:] = 1
        return float(action == target)

    def batch(self, actions: np.ndarray, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        {"context": contexts, "targets": targets, "actions": actions}[self.where][...] = 1
        return (actions == targets[:, None]).astype(np.float64)


class Plugin:
    @hookimpl
    def irlm_register_rewards(self, register: object) -> None:
        register("vandal", Vandal)  # type: ignore[operator]


@pytest.fixture(autouse=True)
def vandal() -> Iterator[None]:
    plugins.reset_plugins()
    plugins.register_plugin(Plugin(), "vandal-plugin")
    yield
    plugins.reset_plugins()


@pytest.fixture(scope="module")
def grammar() -> Corpus:
    return load_corpus("grammar", n_sentences=400)


WROTE = r"reward 'vandal' \(plugin 'vandal-plugin'\) wrote into an argument of .*read-only"


def test_single_env_context_is_read_only(grammar: Corpus) -> None:
    env = NextWordEnv(corpus=grammar, reward="vandal", context_length=4)
    obs, _ = env.reset(seed=0)
    before = obs.copy()
    with pytest.raises(IrlmError, match=WROTE):
        env.step(3)
    assert np.array_equal(env._views[env._current], before), "the context was changed"


@pytest.mark.parametrize("where", ["context", "targets", "actions"])
def test_vector_env_state_is_read_only_in_step(grammar: Corpus, where: str) -> None:
    env = NextWordVectorEnv(3, corpus=grammar, reward="vandal", reward_options={"into": where}, context_length=4)
    obs, _ = env.reset(seed=0)
    targets = env.targets()
    actions = np.array([5, 6, 7])
    with pytest.raises(IrlmError, match=WROTE):
        env.step(actions)
    assert np.array_equal(env._obs, obs) and np.array_equal(env._target, targets)
    assert actions.tolist() == [5, 6, 7] and actions.flags.writeable  # the caller's array is untouched


@pytest.mark.parametrize("where", ["context", "targets", "actions"])
def test_score_hands_read_only_views(grammar: Corpus, where: str) -> None:
    env = NextWordVectorEnv(3, corpus=grammar, reward="vandal", reward_options={"into": where})
    obs, _ = env.reset(seed=0)
    targets = env.targets()
    candidates = np.array([[1, 2], [3, 4], [5, 6]])
    with pytest.raises(IrlmError, match=WROTE):
        env.score(candidates)
    assert np.array_equal(env._obs, obs) and np.array_equal(env.targets(), targets)
    assert candidates.flags.writeable and candidates.tolist() == [[1, 2], [3, 4], [5, 6]]


def test_a_well_behaved_reward_can_still_copy_and_change(grammar: Corpus) -> None:
    class Copier(Reward):
        def __call__(self, action: int, target: int, context: np.ndarray) -> float:
            mine = np.array(context)
            mine[:] = 0
            return float(action == target)

    plugins.register_plugin(type("P", (), {"irlm_register_rewards": staticmethod(hookimpl(
        lambda register: register("copier", lambda corpus: Copier())))})(), "copier-plugin")
    env = NextWordEnv(corpus=grammar, reward="copier")
    env.reset(seed=0)
    env.step(3)
