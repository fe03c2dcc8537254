"""The hook specifications of irlm_env: the whole plugin contract, in one place.

A plugin is a module (or object) with functions marked ``@irlm_env.hookimpl`` whose names match
the specs below. Third-party plugins are found through the ``irlm_env`` entry-point group::

    [project.entry-points.irlm_env]
    my_plugin = "my_package.irlm_plugin"

The built-in rewards and corpora are registered through these same hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pluggy

PROJECT_NAME = "irlm_env"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    """The callback handed to each registration hook.

    ``register(name, factory, description="")`` validates at once and records which plugin
    registered the item: the name must be 1-64 lowercase letters, digits, ``_``, ``-`` or
    ``.`` starting with a letter and not taken by another plugin (a clash names both), the
    factory callable with the shape its hook describes. Options reach the factory as keyword
    arguments; unknown ones are rejected with the accepted names, and strings (from a command
    line) are converted to the ``int``, ``float`` or ``bool`` the parameter is annotated with.
    """

    def __call__(self, name: str, factory: Callable[..., Any], description: str = "") -> None: ...


@hookspec
def irlm_register_rewards(register: Register) -> None:
    """Register reward functions by name.

    ``factory(corpus, **options)`` is called when an environment is built. It receives the
    bound :class:`irlm_env.corpus.Corpus` (so a reward can use the vocabulary or statistics
    of the text) and the user's ``reward_options``, and returns a reward object:

    - ``reward(action: int, target: int, context: np.ndarray) -> float`` (required): the
      immediate reward of choosing ``action`` when the true next token is ``target`` after
      ``context`` (the observation, token ids, left-padded).
    - ``reward.batch(actions, targets, contexts) -> np.ndarray`` (optional): ``actions`` is
      ``(N, K)`` int64 (K candidate tokens per stream), ``targets`` ``(N,)``, ``contexts``
      ``(N, C)``; returns ``(N, K)`` float64. The vector env and candidate scoring use it;
      without it the scalar form is looped.
    - ``reward.table(targets, contexts) -> np.ndarray | None`` (optional): the ``(N, V)``
      reward of every vocabulary token, for exact-gradient agents. Return ``None`` or omit
      it when the reward cannot be tabulated.
    - ``reward.history_length: int | None`` (optional, default ``None``): with ``None`` every
      form gets the observation the agent saw as ``context``; an int ``H`` asks for the last
      ``H`` tokens of the true text before the target instead (``(H,)`` / ``(N, H)``, padded
      only at the split's start), whatever the agent's ``context_length`` and feed mode: what
      a judge model needs.

    Subclassing :class:`irlm_env.rewards.Reward` provides the optional forms (``batch``
    loops over the scalar form; ``has_table`` tells whether ``table`` is implemented). Every
    value must be a finite real number (ints, bools and numpy scalars become floats); NaN,
    infinity, a non-number, or an array of the wrong shape is reported as an error naming the
    reward and its plugin.

    ``register`` also takes the reward itself instead of a factory: a callable whose first
    three parameters are named ``action``, ``target`` and ``context`` (a plain function, or a
    ``Reward`` instance) is used as is, for every corpus, and takes no options. Anything else
    is a factory. Example::

        class Half(irlm_env.Reward):
            def __init__(self, corpus, credit: float = 0.5):
                self.credit = credit
            def __call__(self, action, target, context):
                return 1.0 if action == target else self.credit

        @irlm_env.hookimpl
        def irlm_register_rewards(register):
            register("half", Half, "half credit for every miss")
            register("naive", lambda action, target, context: float(action == target))
    """


@hookspec
def irlm_register_corpora(register: Register) -> None:
    """Register text corpora by name.

    ``factory(**options)`` receives the user's ``corpus_options`` and returns a
    :class:`irlm_env.corpora.CorpusSource`: the text as a sequence of units (lines or
    sentences; a ``line`` episode is one unit), and optionally the best achievable
    next-token accuracy when it is known (with ``best_accuracy_tokenizer`` naming the
    tokenizer it holds for). Tokenization, vocabulary, splits and the on-disk cache are
    handled by irlm_env, identically for every corpus, keyed by the content of the units.
    """
