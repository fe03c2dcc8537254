"""The reward plugin kind: what ``register`` accepts for a reward, and the registry of rewards.

``register(name, obj)`` takes one of two things, told apart by ``obj``'s parameters:

- a **reward**, ready to use: a callable whose first three parameters are named ``action``,
  ``target`` and ``context`` (a plain function, or a :class:`~irlm_env.rewards.Reward`
  instance). It takes no options and is shared by every env.
- a **factory** ``f(corpus, **options)`` returning the reward (a function, or a ``Reward``
  subclass whose ``__init__`` takes the corpus): called once per ``make_reward``, with the
  corpus the reward is for and the user's reward options.

Names are the test because nothing else separates ``naive(action, target, context)`` from a
factory with two required options; a factory's first parameter is the corpus.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from irlm_env.errors import IrlmError
from irlm_env.plugins import PluginKind, Registry, declare_kind, registry
from irlm_env.rewards import exact

#: The parameter names that mark a callable as the reward itself rather than a factory.
REWARD_PARAMETERS = ("action", "target", "context")
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class ReadyReward:
    """The factory of a reward registered as itself: every corpus gets that same reward."""

    def __init__(self, reward: Callable[..., Any]) -> None:
        self.reward = reward

    def __call__(self, corpus: object) -> Callable[..., Any]:
        return self.reward


def is_reward_itself(obj: Callable[..., Any]) -> bool:
    """Whether ``obj`` is a reward (first parameters ``action, target, context``), not a factory."""
    params = _parameters(obj)
    if params is None or inspect.isclass(obj):
        return False
    head = params[: len(REWARD_PARAMETERS)]
    return tuple(p.name for p in head) == REWARD_PARAMETERS and all(p.kind in _POSITIONAL for p in head)


def prepare_reward(obj: Callable[..., Any], where: str) -> Callable[..., Any]:
    """Check a registered reward or reward factory; a reward comes back wrapped as a factory.

    Rewards are called as ``reward(action, target, context)`` and factories as
    ``factory(corpus, **options)``; options may be required, so only the positional shape is
    checked.
    """
    params = _parameters(obj)
    if params is None:  # some builtins and C callables have no signature
        return obj
    if is_reward_itself(obj):
        extra = [p.name for p in params[len(REWARD_PARAMETERS):] if p.default is p.empty and p.kind in _POSITIONAL]
        if extra:
            raise IrlmError(
                f"{where} as a reward(action, target, context) that also requires {', '.join(extra)}; "
                "give them defaults, or register a factory f(corpus, **options) that returns the reward"
            )
        return ReadyReward(obj)
    first = params[0] if params else None
    if first is None or first.kind not in (*_POSITIONAL, inspect.Parameter.VAR_POSITIONAL):
        raise IrlmError(
            f"{where} with a factory that takes no positional corpus argument; it is called as "
            "factory(corpus, **options), so make the corpus its first parameter"
        )
    positional_only = [p.name for p in params[1:] if p.kind is p.POSITIONAL_ONLY and p.default is p.empty]
    if positional_only:
        raise IrlmError(
            f"{where} with a factory whose parameter(s) {', '.join(positional_only)} are positional-only; "
            "options are passed by keyword, so make them ordinary parameters"
        )
    return obj


def factory_hint(factory: Callable[..., Any]) -> str:
    """A hint for a factory with required positional parameters after the corpus: most likely
    a reward function whose parameters are not named ``action, target, context``."""
    params = _parameters(factory) or []
    required = [p for p in params[1:] if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty]
    if len(required) < 2:
        return ""
    name = getattr(factory, "__name__", "")
    if not name.isidentifier():  # a lambda or a callable object: no name to write the fix with
        name = "the_function"
    return (
        " If it is the reward function itself, name its parameters (action, target, context), or register "
        f"`lambda corpus: {name}`: register() takes such a function, or a factory f(corpus, **options) that "
        "returns the reward."
    )


def _parameters(obj: Callable[..., Any]) -> list[inspect.Parameter] | None:
    try:
        return list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return None


REWARDS = declare_kind(PluginKind("reward", "irlm_register_rewards", exact, prepare_reward))


def reward_registry() -> Registry:
    """All rewards, by name (IrlmError with a suggestion on unknown names)."""
    return registry(REWARDS)
