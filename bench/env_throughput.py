"""Env steps per second: single env, Gymnasium's sync vector env, the native vector env.

Every rate is printed as a ratio to a bare numpy loop run in the same process, which does only
the work any next-word stepper must do (gather the targets, compare them with the actions,
advance the cursors, gather the context windows), so the figures survive noisy machines. Every
configuration is measured once per round, all of them in turn, and the ratios are the medians
over rounds of the ratios within each round.

    python bench/env_throughput.py                       # tinyshakespeare, word tokens
    python bench/env_throughput.py --corpus grammar      # any registered corpus

Targets: native vector env at 4096 envs >= 30% of the bare loop and >= 50x the sync vector env.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np

import irlm_env
from irlm_env.corpus import Corpus, load_corpus
from irlm_env.errors import IrlmError

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinyshakespeare.txt"


def rate(step: Callable[[], None], env_steps_per_call: int, seconds: float) -> float:
    """Env steps per second of ``step``, timed for about ``seconds`` after a warm-up."""
    for _ in range(20):
        step()
    calls, start = 0, time.perf_counter()
    batch = 1
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            step()
        calls += batch
        batch = min(batch * 2, 1024)
    return calls * env_steps_per_call / elapsed


def bare_loop(
    tokens: np.ndarray, num_envs: int, context: int, seconds: float, slide: bool = False
) -> float:
    """The essential work per step, with preallocated buffers and nothing else. ``slide``
    moves each window on by one token instead of gathering it again, as the native env
    does: the stricter reference."""
    rng = np.random.default_rng(0)
    position = rng.integers(context, len(tokens) - 1, num_envs)
    actions = rng.integers(0, int(tokens.max()) + 1, num_envs)
    targets = np.empty(num_envs, np.int64)
    correct = np.empty(num_envs, np.bool_)
    offsets = np.arange(-context + 1, 1)
    index = np.empty((num_envs, context), np.int64)
    windows = np.empty((num_envs, context), np.int64)
    previous = np.zeros((num_envs, context), np.int64)
    # np.take cannot cast into int64 from the corpus's smallest id type: gather, then copy.
    gathered = np.empty(num_envs, tokens.dtype)
    gathered_windows = np.empty((num_envs, context), tokens.dtype)

    def slide_step() -> None:
        nonlocal windows, previous
        np.take(tokens, position, out=gathered, mode="clip")
        np.copyto(targets, gathered)
        np.equal(actions, targets, out=correct)
        np.add(position, 1, out=position)
        windows.reshape(-1)[:-1] = previous.reshape(-1)[1:]  # all rows left by one
        windows[:, -1] = targets
        windows, previous = previous, windows

    def step() -> None:
        np.take(tokens, position, out=gathered, mode="clip")
        np.copyto(targets, gathered)
        np.equal(actions, targets, out=correct)
        np.add(position, 1, out=position)
        np.add(position[:, None], offsets, out=index)
        np.take(tokens, index, out=gathered_windows, mode="clip")
        np.copyto(windows, gathered_windows)

    return rate(slide_step if slide else step, num_envs, seconds)


def single_env(corpus: Corpus, context: int, seconds: float) -> float:
    env = gym.make(irlm_env.ENV_ID, corpus=corpus, context_length=context)
    env.reset(seed=0)
    # Drawn once, outside the timing; cycled, so that no --seconds runs out of them.
    actions = itertools.cycle(np.random.default_rng(0).integers(0, len(corpus.vocab), 1 << 20).tolist())

    def step() -> None:
        if env.step(next(actions))[3]:
            env.reset()

    return rate(step, 1, seconds)


def vector_env(
    corpus: Corpus, num_envs: int, context: int, seconds: float, mode: str, **kwargs: object
) -> float:
    envs = gym.make_vec(
        irlm_env.ENV_ID, num_envs=num_envs, vectorization_mode=mode, corpus=corpus,
        context_length=context, **kwargs,
    )
    envs.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, len(corpus.vocab), num_envs)
    return rate(lambda: envs.step(actions), num_envs, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="text", help="registered corpus name (text: the file of --path)")
    parser.add_argument("--path", default=str(SHAKESPEARE), help="file for the text corpus")
    parser.add_argument("--max-vocab", type=int, default=10000, help="vocabulary size")
    parser.add_argument("--context-length", type=int, default=8, help="tokens per observation")
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="times every configuration is measured, all of them in turn; medians are reported")
    args = parser.parse_args()
    for name in ("max_vocab", "context_length", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if not args.seconds > 0:
        parser.error(f"--seconds must be above 0, got {args.seconds}")
    options = {"path": args.path} if args.corpus == "text" else {}
    try:
        corpus = load_corpus(args.corpus, max_vocab=args.max_vocab, **options)
    except IrlmError as error:
        parser.error(f"--corpus {args.corpus}: {error}")
    tokens, context, seconds = corpus.split("train"), args.context_length, args.seconds
    print(f"corpus {corpus!r}, context_length={context}, {args.rounds} rounds of {seconds:g} s per measurement")

    # (name, streams, the bare loop of the same number of streams or None, measure)
    configurations: list[tuple[str, int, str | None, Callable[[], float]]] = [
        ("single env (gym.make)", 1, None, lambda: single_env(corpus, context, seconds)),
        ("sync vector env, 64 envs", 64, "bare numpy loop, 64 streams",
         lambda: vector_env(corpus, 64, context, seconds, "sync")),
        *((f"native vector env, {n} envs", n, f"bare numpy loop, {n} streams",
           lambda n=n: vector_env(corpus, n, context, seconds, "vector_entry_point")) for n in (64, 1024, 4096)),
        ("native, 4096 envs, copy=False", 4096, "bare numpy loop, 4096 streams",
         lambda: vector_env(corpus, 4096, context, seconds, "vector_entry_point", copy=False)),
        ("native, 4096 envs, same-step", 4096, "bare numpy loop, 4096 streams",
         lambda: vector_env(corpus, 4096, context, seconds, "vector_entry_point", autoreset_mode="SameStep")),
        *((f"bare numpy loop, {n} streams", n, f"bare numpy loop, {n} streams",
           lambda n=n: bare_loop(tokens, n, context, seconds)) for n in (64, 1024, 4096)),
        ("bare loop sliding windows, 4096", 4096, "bare numpy loop, 4096 streams",
         lambda: bare_loop(tokens, 4096, context, seconds, slide=True)),
    ]
    rounds: list[dict[str, float]] = []
    for index in range(args.rounds):  # every configuration once per round: a drift hits them all
        rounds.append({name: measure() for name, _, _, measure in configurations})
        print(f"round {index + 1} of {args.rounds} done", flush=True)

    def ratio(name: str, reference: str) -> float:
        """The median over rounds of the ratio within each round."""
        return statistics.median(r[name] / r[reference] for r in rounds)

    bare = "bare numpy loop, 4096 streams"
    print(f"{'':34} {'env steps/s':>14} {'/ bare 4096':>12} {'/ bare same N':>14}")
    for name, _, same, _ in configurations:
        steps = statistics.median(r[name] for r in rounds)
        own = f"{ratio(name, same):14.3f}" if same else f"{'-':>14}"
        print(f"{name:34} {steps:14,.0f} {ratio(name, bare):12.3f} {own}")
    native = "native vector env, 4096 envs"
    by_round = " ".join(f"{r[native] / r[bare]:.2f}" for r in rounds)
    print(f"\nnative 4096 / bare 4096 = {ratio(native, bare):.2f} (rounds: {by_round}; target >= 0.30)")
    print(f"native 4096 / sliding bare loop 4096 = {ratio(native, 'bare loop sliding windows, 4096'):.2f}")
    print(f"native 4096 / sync 64   = {ratio(native, 'sync vector env, 64 envs'):.0f}x (target >= 50x)")


if __name__ == "__main__":
    main()
