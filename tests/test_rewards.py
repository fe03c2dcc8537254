"""The reward protocol, the built-in ``exact`` reward and the checks ``make_reward`` adds."""

from __future__ import annotations

import math
import pickle
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from irlm_env import IrlmError, hookimpl, plugins
from irlm_env.corpus import Corpus, load_corpus
from irlm_env.rewards import make_reward
from irlm_env.rewards import Reward
from irlm_env.envs.next_word import NextWordEnv
from irlm_env.rewards.exact import ExactReward


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return load_corpus("grammar", n_sentences=300)


pytestmark = pytest.mark.usefixtures("fresh_plugins")


class Scalar(Reward):
    """Only the scalar form: the base class must supply the rest."""

    def __call__(self, action: int, target: int, context: np.ndarray) -> float:
        return float(action == target) + 0.1 * float(context[-1] == action)


def test_reward_base_needs_call() -> None:
    with pytest.raises(TypeError):
        Reward()  # type: ignore[abstract]


def test_default_batch_loops_over_the_scalar_form() -> None:
    reward = Scalar()
    actions = np.array([[1, 2, 3], [3, 4, 5]])
    targets = np.array([2, 5])
    contexts = np.array([[0, 1], [0, 4]])
    expected = [[reward(int(a), int(t), c) for a in row] for row, t, c in zip(actions, targets, contexts)]
    out = reward.batch(actions, targets, contexts)
    assert out.dtype == np.float64 and out.shape == (2, 3)
    assert out.tolist() == expected == [[0.1, 1.0, 0.0], [0.0, 0.1, 1.0]]
    assert reward.table(targets, contexts) is None and not reward.has_table


def test_exact_forms_agree(corpus: Corpus) -> None:
    reward = ExactReward(corpus)
    vocab = len(corpus.vocab)
    rng = np.random.default_rng(0)
    targets = rng.integers(vocab, size=50)
    actions = rng.integers(vocab, size=(50, 4))
    actions[::3, 0] = targets[::3]  # some hits
    contexts = rng.integers(vocab, size=(50, 8))
    batch = reward.batch(actions, targets, contexts)
    assert batch.dtype == np.float64
    assert batch.tolist() == [[reward(int(a), int(t), c) for a in row] for row, t, c in zip(actions, targets, contexts)]
    table = reward.table(targets, contexts)
    assert table.shape == (50, vocab) and reward.has_table
    assert np.array_equal(table.sum(axis=1), np.ones(50)) and np.array_equal(table.argmax(axis=1), targets)
    assert np.array_equal(np.take_along_axis(table, actions, axis=1), batch)


def test_make_reward_exact_returns_python_floats(corpus: Corpus) -> None:
    reward = make_reward("exact", corpus)
    assert reward.name == "exact" and reward.plugin_name == "irlm_env.rewards.exact" and reward.has_table
    hit, miss = reward(5, 5, np.zeros(8, np.int64)), reward(5, 6, np.zeros(8, np.int64))
    assert (hit, miss) == (1.0, 0.0) and type(hit) is float and type(miss) is float
    table = reward.table(np.array([3, 4]), np.zeros((2, 8), np.int64))
    assert table is not None and table.shape == (2, len(corpus.vocab))


def test_checked_reward_pickles(corpus: Corpus) -> None:
    reward = pickle.loads(pickle.dumps(make_reward("exact", corpus)))
    assert reward(2, 2, np.zeros(1, np.int64)) == 1.0
    assert reward.batch(np.array([[1, 2]]), np.array([2]), np.zeros((1, 1), np.int64)).tolist() == [[0.0, 1.0]]


def _install(name: str, factory: Callable[..., Any]) -> None:
    class Plugin:
        @hookimpl
        def irlm_register_rewards(self, register: Callable[..., None]) -> None:
            register(name, factory)

    plugins.register_plugin(Plugin(), f"{name}-plugin")


def _constant(value: Any) -> Callable[..., Reward]:
    class Constant(Reward):
        def __init__(self, corpus: Corpus) -> None:
            pass

        def __call__(self, action: int, target: int, context: np.ndarray) -> Any:
            return value

    return Constant


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (math.nan, "returned nan"),
        (math.inf, "returned inf"),
        (-math.inf, "returned -inf"),
        (np.float32("nan"), "returned nan"),
        ("1.0", "returned '1.0' of type str"),
        (None, "returned None of type NoneType"),
        (1 + 2j, "of type complex"),
        (10**400, "returned an integer beyond float's range"),
        (np.array([1.0]), "of type ndarray"),
    ],
)
def test_bad_scalar_reward_names_reward_and_plugin(corpus: Corpus, value: Any, problem: str) -> None:
    _install("bad", _constant(value))
    reward = make_reward("bad", corpus)
    with pytest.raises(IrlmError, match=rf"reward 'bad' \(plugin 'bad-plugin'\) .*{problem}"):
        reward(1, 2, np.zeros(3, np.int64))
    with pytest.raises(IrlmError, match=r"reward 'bad' \(plugin 'bad-plugin'"):
        reward.batch(np.array([[1]]), np.array([2]), np.zeros((1, 3), np.int64))


@pytest.mark.parametrize("value", [1, np.int64(1), np.float32(1.0), True, np.bool_(True)])
def test_real_numbers_of_any_type_become_python_floats(corpus: Corpus, value: Any) -> None:
    _install("num", _constant(value))
    result = make_reward("num", corpus)(1, 2, np.zeros(3, np.int64))
    assert result == 1.0 and type(result) is float


class BadForms(Reward):
    """Fine scalar, broken fast forms (chosen by option) to exercise the array checks."""

    def __init__(self, corpus: Corpus, mode: str = "nan") -> None:
        self.mode = mode
        self.vocab = len(corpus.vocab)

    def __call__(self, action: int, target: int, context: np.ndarray) -> float:
        return 0.0

    def _make(self, shape: tuple[int, ...]) -> Any:
        out = np.zeros(shape)
        if self.mode == "nan":
            out.flat[-1] = np.nan
        elif self.mode == "inf":
            out.flat[0] = np.inf
        elif self.mode == "shape":
            out = out.ravel()
        elif self.mode == "list":
            out = out.tolist()
        elif self.mode == "dtype":
            out = out.astype(str)
        elif self.mode == "int":
            out = out.astype(np.int32)
        return out

    def batch(self, actions: np.ndarray, targets: np.ndarray, contexts: np.ndarray) -> Any:
        return self._make(actions.shape)

    def table(self, targets: np.ndarray, contexts: np.ndarray) -> Any:
        return self._make((len(targets), self.vocab))


@pytest.mark.parametrize(
    ("mode", "problem"),
    [
        ("nan", r"returned non-finite values \(e.g. nan\)"),
        ("inf", r"returned non-finite values \(e.g. inf\)"),
        ("shape", r"returned shape \(\d+,\), expected \(2, \d+\)"),
        ("list", "returned list, not a numpy array"),
        ("dtype", "returned an array of dtype <U"),
    ],
)
@pytest.mark.parametrize("method", ["batch", "table"])
def test_bad_batch_and_table_name_reward_and_plugin(corpus: Corpus, mode: str, problem: str, method: str) -> None:
    _install("forms", BadForms)
    reward = make_reward("forms", corpus, mode=mode)
    targets, contexts = np.array([1, 2]), np.zeros((2, 3), np.int64)
    with pytest.raises(IrlmError, match=rf"reward 'forms' \(plugin 'forms-plugin'.*\.{method}\(\) {problem}"):
        if method == "batch":
            reward.batch(np.array([[1, 2, 3], [4, 5, 6]]), targets, contexts)
        else:
            reward.table(targets, contexts)


def test_integer_arrays_are_converted_to_float64(corpus: Corpus) -> None:
    _install("ints", BadForms)
    reward = make_reward("ints", corpus, mode="int")
    out = reward.batch(np.array([[1, 2]]), np.array([1]), np.zeros((1, 3), np.int64))
    assert out.dtype == np.float64


def test_factory_must_return_a_callable(corpus: Corpus) -> None:
    _install("notcallable", lambda corpus: 42)
    with pytest.raises(IrlmError, match=r"reward 'notcallable' \(plugin 'notcallable-plugin'\) factory returned int"):
        make_reward("notcallable", corpus)


def test_duck_typed_reward_gets_the_default_forms(corpus: Corpus) -> None:
    _install("duck", lambda corpus: (lambda action, target, context: 2.0 if action == target else 0.5))
    reward = make_reward("duck", corpus)
    assert reward.batch(np.array([[1, 2]]), np.array([2]), np.zeros((1, 3), np.int64)).tolist() == [[0.5, 2.0]]
    assert not reward.has_table and reward.table(np.array([1]), np.zeros((1, 3), np.int64)) is None


def test_checks_keep_the_exact_batch_fast(corpus: Corpus) -> None:
    """The vector env calls batch every step with (N, 1) actions: the checks must stay small."""
    bare = ExactReward(corpus)
    checked = make_reward("exact", corpus)
    rng = np.random.default_rng(0)
    actions = rng.integers(len(corpus.vocab), size=(4096, 1))
    targets = rng.integers(len(corpus.vocab), size=4096)
    contexts = np.zeros((4096, 8), np.int64)
    t_bare = min(timeit.repeat(lambda: bare.batch(actions, targets, contexts), number=200, repeat=5))
    t_checked = min(timeit.repeat(lambda: checked.batch(actions, targets, contexts), number=200, repeat=5))
    assert t_checked < 2.0 * t_bare + 200 * 5e-6, (t_bare, t_checked)


# --- Plain reward functions (issue 10.6) ------------------------------------------------------


def naive(action: int, target: int, context: np.ndarray) -> float:
    """A newcomer's first reward: the reward function itself, no factory."""
    return 1.0 if action == target else 0.1


def test_a_plain_reward_function_is_the_reward(corpus: Corpus) -> None:
    _install("naive", naive)
    reward = make_reward("naive", corpus)
    assert reward.inner is naive and not reward.has_table
    assert (reward(3, 3, np.zeros(2, np.int64)), reward(3, 4, np.zeros(2, np.int64))) == (1.0, 0.1)
    assert reward.batch(np.array([[3, 4]]), np.array([3]), np.zeros((1, 2), np.int64)).tolist() == [[1.0, 0.1]]
    assert pickle.loads(pickle.dumps(reward))(3, 4, np.zeros(2, np.int64)) == 0.1
    env = NextWordEnv(corpus=corpus, reward="naive")
    env.reset(seed=0)
    assert env.step(3)[1] in (1.0, 0.1)
    with pytest.raises(IrlmError, match=r"reward 'naive' \(plugin 'naive-plugin'\) has no option 'scale'; it takes no options"):
        make_reward("naive", corpus, scale=2)


def test_a_ready_reward_instance_keeps_its_fast_forms(corpus: Corpus) -> None:
    instance = ExactReward(corpus)
    _install("ready", instance)
    reward = make_reward("ready", corpus)
    assert reward.inner is instance and reward.has_table


def test_a_reward_function_with_other_parameter_names_gets_the_fix(corpus: Corpus) -> None:
    def guess(a: int, t: int, c: np.ndarray) -> float:
        return float(a == t)

    _install("guess", guess)
    with pytest.raises(IrlmError, match=r"requires the option\(s\) t, c.*name its parameters \(action, target, "
                       r"context\), or register `lambda corpus: guess`: register\(\) takes such a function, or a "
                       r"factory f\(corpus, \*\*options\)"):
        make_reward("guess", corpus)
    class Guess:
        def __call__(self, a: int, t: int, c: np.ndarray) -> float:
            return float(a == t)

    for anonymous in (lambda a, t, c: float(a == t), Guess()):  # no name to write the fix with
        _install("anonymous", anonymous)
        with pytest.raises(IrlmError, match="or register `lambda corpus: the_function`"):
            make_reward("anonymous", corpus)


def test_a_reward_function_with_a_required_extra_parameter_is_refused_at_registration() -> None:
    def needy(action: int, target: int, context: np.ndarray, scale: float) -> float:
        return scale

    with pytest.raises(IrlmError, match=r"registers reward 'needy' as a reward\(action, target, context\) that also requires scale"):
        _install("needy", needy)
