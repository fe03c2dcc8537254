"""``grammar``: a seeded synthetic English-like language whose best accuracy is known exactly.

The language is a probabilistic finite-state automaton over word classes. Every word belongs
to exactly one class, so the automaton's state is the class of the last token (``<eos>`` is the
start state), and the true next-token distribution depends on the last token alone. That makes
the Bayes-optimal predictor a bigram predictor, and its accuracy, ``best_accuracy``, can be
computed exactly from the expected state visits of the absorbing chain. Learning agents are
tested against that ceiling: a model that reaches it has learned everything there is to learn.

The design keeps learning fast (a few dozen words, short sentences, skewed Zipf-like word
choices with a clear favourite in every state, some deterministic transitions) while leaving
real uncertainty, so the ceiling is well below 1 and above what unigram guessing reaches.
The grammar is fixed; ``seed`` chooses the sampled sentences.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from irlm_env.corpora.source import CorpusSource
from irlm_env.options import check_int

START, END = "START", "END"
# Zipf exponent of the word choice inside a class: word k (1-based) has weight 1 / k**_ZIPF.
_ZIPF = 1.5

# Word classes, most likely word first. No word appears in two classes.
CLASSES: dict[str, tuple[str, ...]] = {
    "DET": ("the", "a", "every", "one"),
    "ADJ": ("old", "small", "happy", "quiet", "clever"),
    "NOUN": ("cat", "dog", "child", "farmer", "bird", "teacher"),
    "PRON": ("she", "he", "they", "we"),
    "NAME": ("alice", "bob", "carol"),
    "AUX": ("will", "can", "must"),
    "BASE": ("sleep", "sing", "wait", "run"),
    "TVERB": ("sees", "likes", "finds", "helps", "follows"),
    "IVERB": ("sleeps", "runs", "sings", "waits", "laughs"),
    "ODET": ("this", "that", "my"),
    "ONOUN": ("ball", "book", "apple", "song", "tree"),
    "OPRON": ("him", "her", "them"),
    "PREP": ("at", "in", "near"),
    "PLACE": ("home", "town", "school", "church"),
    "ADV": ("today", "again", "slowly"),
    "STOP": (".", "!"),
}

# Class transitions: state -> ((next class, probability), ...). END closes the sentence (<eos>).
TRANSITIONS: dict[str, tuple[tuple[str, float], ...]] = {
    START: (("DET", 0.6), ("PRON", 0.25), ("NAME", 0.15)),
    "DET": (("NOUN", 0.7), ("ADJ", 0.3)),
    "ADJ": (("NOUN", 1.0),),
    "NOUN": (("TVERB", 0.5), ("IVERB", 0.3), ("AUX", 0.2)),
    "PRON": (("TVERB", 0.4), ("AUX", 0.35), ("IVERB", 0.25)),
    "NAME": (("TVERB", 0.6), ("IVERB", 0.4)),
    "AUX": (("BASE", 1.0),),
    "BASE": (("STOP", 0.6), ("ADV", 0.4)),
    "TVERB": (("ODET", 0.7), ("OPRON", 0.3)),
    "IVERB": (("STOP", 0.5), ("PREP", 0.3), ("ADV", 0.2)),
    "ODET": (("ONOUN", 1.0),),
    "ONOUN": (("STOP", 0.7), ("PREP", 0.3)),
    "OPRON": (("STOP", 0.8), ("ADV", 0.2)),
    "PREP": (("PLACE", 1.0),),
    "PLACE": (("STOP", 0.8), ("ADV", 0.2)),
    "ADV": (("STOP", 1.0),),
    "STOP": ((END, 1.0),),
}


def _word_probabilities(words: tuple[str, ...]) -> tuple[float, ...]:
    weights = [1.0 / (k ** _ZIPF) for k in range(1, len(words) + 1)]
    total = sum(weights)
    return tuple(w / total for w in weights)


def _uniforms(rng: np.random.Generator, chunk: int = 1 << 16) -> Iterator[float]:
    """Endless uniform draws, fetched from numpy in chunks (one call per draw is slow)."""
    while True:
        yield from rng.random(chunk).tolist()


@dataclass(frozen=True)
class Grammar:
    """The automaton flattened to next-token distributions per state.

    ``next_tokens[state]`` lists ``(token, probability)``; the token ``END`` stands for
    ``<eos>``. ``state_of[word]`` is the class of a word, i.e. the state after emitting it.
    """

    next_tokens: dict[str, tuple[tuple[str, float], ...]]
    state_of: dict[str, str]

    @classmethod
    def default(cls) -> Grammar:
        next_tokens = {}
        for state, moves in TRANSITIONS.items():
            dist = []
            for klass, p_class in moves:
                if klass == END:
                    dist.append((END, p_class))
                    continue
                words = CLASSES[klass]
                dist.extend((w, p_class * p) for w, p in zip(words, _word_probabilities(words)))
            next_tokens[state] = tuple(dist)
        state_of = {w: klass for klass, words in CLASSES.items() for w in words}
        return cls(next_tokens=next_tokens, state_of=state_of)

    def predict(self, previous: str | None) -> str:
        """The Bayes-optimal next token after ``previous`` (None or END: sentence start)."""
        state = START if previous in (None, END) else self.state_of[previous]
        return max(self.next_tokens[state], key=lambda tp: (tp[1], tp[0]))[0]

    def best_accuracy(self) -> float:
        """Exact best next-token accuracy, over all predicted tokens including each ``<eos>``.

        Per sentence, each visit to a state makes one prediction, correct with probability
        ``max_w P(w | state)``. With ``N`` the expected visits to each transient state from
        START (the fundamental matrix row of the absorbing chain), the long-run accuracy is
        ``sum_s N_s * max_s / sum_s N_s`` (a ratio of expectations over i.i.d. sentences).
        """
        states = list(self.next_tokens)
        index = {s: i for i, s in enumerate(states)}
        q = np.zeros((len(states), len(states)))
        for s, dist in self.next_tokens.items():
            for token, p in dist:
                if token != END:
                    q[index[s], index[self.state_of[token]]] += p
        start = np.zeros(len(states))
        start[index[START]] = 1.0
        visits = np.linalg.solve((np.eye(len(states)) - q).T, start)
        best = np.array([max(p for _, p in self.next_tokens[s]) for s in states])
        return float(visits @ best / visits.sum())

    def sample(self, n_sentences: int, seed: int) -> list[str]:
        """``n_sentences`` sentences, words joined by spaces, reproducible for a given seed."""
        cumulative = {s: (tuple(t for t, _ in d), tuple(accumulate(p for _, p in d))) for s, d in self.next_tokens.items()}
        draws = _uniforms(np.random.Generator(np.random.PCG64(seed)))
        sentences = []
        for _ in range(n_sentences):
            state, words = START, []
            while True:
                tokens, cum = cumulative[state]
                token = tokens[min(bisect_right(cum, next(draws) * cum[-1]), len(tokens) - 1)]
                if token == END:
                    break
                words.append(token)
                state = self.state_of[token]
            sentences.append(" ".join(words))
        return sentences


def grammar_corpus(seed: int = 0, n_sentences: int = 20000) -> CorpusSource:
    """Sample ``n_sentences`` sentences of the built-in grammar with ``seed``."""
    n_sentences = check_int("grammar option n_sentences", n_sentences, minimum=3)
    seed = check_int("grammar option seed", seed, minimum=0)
    grammar = Grammar.default()
    return CorpusSource(units=grammar.sample(n_sentences, seed), best_accuracy=grammar.best_accuracy(),
                        best_accuracy_tokenizer="word")
