"""The ``arithmetic`` corpus: seeded sentences such as ``three plus four is seven .``

A test bed with a known ceiling: the operands and the operation are random, but every word
after ``is`` follows from them. An agent that learns to add earns the deterministic half of
the tokens, one that only learns the sentence shape earns far less, and
:func:`best_accuracy` says exactly how much is achievable. Generated offline, no licensed text.
"""

from __future__ import annotations

import functools
import operator
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from irlm_env import IrlmError, hookimpl
from irlm_env.corpora import CorpusSource
from irlm_env.hookspecs import Register
from irlm_env.options import check_int

OPERATIONS: dict[str, Callable[[int, int], int]] = {
    "plus": operator.add,
    "minus": operator.sub,
    "times": operator.mul,
}
MAX_OPERAND = 100  # keeps results below 10,001 and best_accuracy's enumeration cheap

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> list[str]:
    """English words for ``0 <= n <= 10000``, one token per word (``twenty one``, no hyphen)."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [_ONES[n // 100], "hundred"] + (number_words(n % 100) if n % 100 else [])
    return number_words(n // 1000) + ["thousand"] + (number_words(n % 1000) if n % 1000 else [])


def _sentence(name: str, a: int, b: int) -> list[str]:
    if name == "minus" and a < b:
        a, b = b, a  # results stay non-negative
    return [*number_words(a), name, *number_words(b), "is", *number_words(OPERATIONS[name](a, b)), "."]


def _parse_operations(operations: str) -> list[str]:
    names = [item.strip() for item in operations.split(",") if item.strip()]
    unknown = [name for name in names if name not in OPERATIONS]
    if len(set(names)) < len(names):
        raise IrlmError(
            f"arithmetic corpus option operations={operations!r} names an operation twice, which would draw it "
            "more often; name each once."
        )
    if not names or unknown:
        raise IrlmError(
            f"arithmetic corpus option operations={operations!r} must be a comma-separated list of "
            f"{', '.join(OPERATIONS)}."
        )
    return names


@functools.cache
def best_accuracy(max_operand: int, operations: tuple[str, ...]) -> float:
    """Expected next-token accuracy of the Bayes-optimal predictor that sees the whole sentence.

    Sentences are independent, so the previous sentence never helps; each word and the
    closing end-of-sentence token is one prediction. Enumerates every (operation, a, b)
    with its probability and sums, over all sentence prefixes, the mass of the likeliest
    next token.
    """
    weight = 1.0 / (len(operations) * (max_operand + 1) ** 2)
    next_mass: dict[tuple[str, ...], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for name in operations:
        for a in range(max_operand + 1):
            for b in range(max_operand + 1):
                words = _sentence(name, a, b)
                for i in range(len(words)):
                    next_mass[tuple(words[:i])][words[i]] += weight
                next_mass[tuple(words)]["<eos>"] += weight
    correct = sum(max(options.values()) for options in next_mass.values())
    predictions = sum(sum(options.values()) for options in next_mass.values())
    return correct / predictions


def arithmetic_corpus(
    seed: int = 0, n_sentences: int = 20000, max_operand: int = 12, operations: str = "plus,minus,times"
) -> CorpusSource:
    """``n_sentences`` sentences with operands drawn uniformly from 0..max_operand."""
    seed = check_int("arithmetic corpus option seed", seed, 0, 2**63 - 1)
    # Three sentences at least: one for each split.
    n_sentences = check_int("arithmetic corpus option n_sentences", n_sentences, 3, 10_000_000)
    max_operand = check_int("arithmetic corpus option max_operand", max_operand, 1, MAX_OPERAND)
    names = _parse_operations(operations)
    rng = np.random.default_rng(seed)
    ops = rng.integers(len(names), size=n_sentences)
    lefts = rng.integers(max_operand + 1, size=n_sentences)
    rights = rng.integers(max_operand + 1, size=n_sentences)
    units = [
        " ".join(_sentence(names[op], a, b)) for op, a, b in zip(ops.tolist(), lefts.tolist(), rights.tolist())
    ]
    return CorpusSource(
        units=units, best_accuracy=best_accuracy(max_operand, tuple(names)), best_accuracy_tokenizer="word"
    )


@hookimpl
def irlm_register_corpora(register: Register) -> None:
    register(
        "arithmetic", arithmetic_corpus, "seeded sentences like 'three plus four is seven .' (known best accuracy)"
    )
