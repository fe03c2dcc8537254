"""Building a reward plugin's reward, and the checks that guard every value it returns.

``make_reward`` is the one way a reward is built: runs build it once and hand the same object
to every env and evaluator, so a costly reward (word vectors, a learned judge) is built once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from numbers import Integral
from typing import Any

import numpy as np

from irlm_env.corpus import Corpus
from irlm_env.errors import IrlmError
from irlm_env.options import bind_options
from irlm_env.plugins import Entry
from irlm_env.rewards.base import Reward
from irlm_env.rewards.registry import factory_hint, reward_registry
from irlm_env.vocabulary import Vocabulary

_FLOAT64 = np.dtype(np.float64)


def bound_reward_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Reward ``name``'s options as its factory takes them: text from a command line converted
    to the annotated types (what a run records, so that ``scale=0.5`` is saved as 0.5)."""
    return _bound(reward_registry().get(name), name, options)


def _bound(entry: Entry, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    label = f"reward {name!r} (plugin {entry.plugin_name!r})"
    try:
        return bind_options(label, entry.factory, options, skip=1, kind="reward")
    except IrlmError as exc:
        raise IrlmError(f"{exc}{factory_hint(entry.factory)}") from None


def make_reward(name: str, corpus: Corpus, **options: Any) -> CheckedReward:
    """Build reward ``name`` for ``corpus``, wrapped so that every value it returns is checked."""
    entry = reward_registry().get(name)
    if not isinstance(corpus, Corpus):
        raise IrlmError(
            f"make_reward needs the Corpus the reward will judge, got {type(corpus).__name__} {corpus!r}; "
            "pass load_corpus(...)'s result, e.g. make_reward(name, load_corpus('pydocs'))"
        )
    reward = entry.factory(corpus, **_bound(entry, name, options))
    if not callable(reward):
        raise IrlmError(
            f"reward {name!r} (plugin {entry.plugin_name!r}) factory returned {type(reward).__name__}, "
            "which is not callable; return an irlm_env.Reward (reward(action, target, context) -> float)."
        )
    return CheckedReward(reward, entry, corpus.vocab)


class CheckedReward(Reward):
    """A plugin's reward behind checks that turn a bad value into an error naming the plugin.

    The env trusts what this returns: a finite Python float from the scalar form, finite
    float64 arrays of the right shape from ``batch`` and ``table``. An array check costs one
    vectorized sum (a few microseconds for 4096 streams), so fast rewards stay fast.
    """

    def __init__(self, reward: Callable[..., Any], entry: Entry, vocab: Vocabulary) -> None:
        self.inner = reward
        self.name = entry.name
        self.plugin_name = entry.plugin_name
        self.vocab = vocab  # an env checks that the reward was built for its vocabulary
        self._vocab_size = len(vocab)
        version = "" if entry.plugin_version is None else f" {entry.plugin_version}"
        self._label = f"reward {entry.name!r} (plugin {entry.plugin_name!r}{version})"
        self.history_length = _history_length(reward, self._label)
        self._scalar = reward
        # The base class's loop would call the unchecked scalar form: loop here instead.
        batch = getattr(reward, "batch", None)
        self._batch = None if getattr(batch, "__func__", None) is Reward.batch else batch
        table = getattr(reward, "table", None)
        self._table = table if callable(table) and getattr(reward, "has_table", True) else None

    @property
    def has_table(self) -> bool:
        return self._table is not None

    def _fail(self, problem: str) -> IrlmError:
        return IrlmError(f"{self._label} {problem}; fix the plugin so that every reward is a finite float.")

    def _wrote(self, exc: ValueError, method: str) -> IrlmError:
        """The envs hand rewards read-only views of their state: say so when one wrote into it."""
        return IrlmError(
            f"{self._label} wrote into an argument of {method} ({exc}); the context, targets and "
            "actions are the env's own state, read-only: copy them first (np.array(context)) to change them"
        )

    def __call__(self, action: int, target: int, context: np.ndarray) -> float:
        try:
            value = self._scalar(action, target, context)
        except ValueError as exc:
            if "read-only" not in str(exc):
                raise
            raise self._wrote(exc, "reward()") from exc
        if type(value) is not float:
            if isinstance(value, (bool, int, np.integer, np.floating, np.bool_)):
                try:
                    value = float(value)
                except OverflowError:  # a Python int beyond float's range
                    raise self._fail(f"returned an integer beyond float's range ({int(value).bit_length()} bits) "
                                     f"for action {action}, target {target}") from None
            else:
                kind = type(value).__name__
                raise self._fail(f"returned {value!r} of type {kind} for action {action}, target {target}")
        if not math.isfinite(value):
            raise self._fail(f"returned {value} for action {action}, target {target}")
        return value

    def _check_array(self, values: Any, shape: tuple[int, ...], method: str) -> np.ndarray:
        if type(values) is not np.ndarray or values.shape != shape or values.dtype is not _FLOAT64:
            values = self._conform(values, shape, method)
        # One reduction, no temporary: NaN or inf anywhere makes the sum non-finite. Only an
        # overflowing sum of finite values needs the element-wise look.
        if not math.isfinite(np.add.reduce(values, axis=None)) and not np.isfinite(values).all():
            bad = values[~np.isfinite(values)][0]
            raise self._fail(f".{method}() returned non-finite values (e.g. {bad})")
        return values

    def _conform(self, values: Any, shape: tuple[int, ...], method: str) -> np.ndarray:
        if not isinstance(values, np.ndarray):
            kind = type(values).__name__
            raise self._fail(f".{method}() returned {kind}, not a numpy array of shape {shape}")
        if values.shape != shape:
            raise self._fail(f".{method}() returned shape {values.shape}, expected {shape}")
        if values.dtype.kind not in "biuf":
            raise self._fail(f".{method}() returned an array of dtype {values.dtype}")
        return values.astype(np.float64)

    def batch(self, actions: np.ndarray, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        if self._batch is None:
            return super().batch(actions, targets, contexts)
        try:
            values = self._batch(actions, targets, contexts)
        except ValueError as exc:
            if "read-only" not in str(exc):
                raise
            raise self._wrote(exc, ".batch()") from exc
        return self._check_array(values, actions.shape, "batch")

    def table(self, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray | None:
        if self._table is None:
            return None
        try:
            values = self._table(targets, contexts)
        except ValueError as exc:
            if "read-only" not in str(exc):
                raise
            raise self._wrote(exc, ".table()") from exc
        if values is None:
            return None
        return self._check_array(values, (len(targets), self._vocab_size), "table")


def _history_length(reward: Callable[..., Any], label: str) -> int | None:
    """The reward's ``history_length`` (see :class:`Reward`); a plain function has none."""
    length = getattr(reward, "history_length", None)
    if length is not None and (isinstance(length, bool) or not isinstance(length, Integral) or length < 1):
        raise IrlmError(
            f"{label} has history_length={length!r}; set it to None (the reward gets the "
            "observation) or to an int >= 1 (that many true tokens before the target)"
        )
    return None if length is None else int(length)
