"""Env steps per second: single env, Gymnasium's sync vector env, the native vector env.

Every rate is printed as a ratio to a bare numpy loop run in the same process, which does only
the work any next-word stepper must do (gather the targets, compare them with the actions,
advance the cursors, gather the context windows), so the figures survive noisy machines.

    python bench/env_throughput.py                       # tinyshakespeare, word tokens
    python bench/env_throughput.py --corpus grammar      # any registered corpus

Targets: native vector env at 4096 envs >= 30% of the bare loop and >= 50x the sync vector env.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np

import irlm_env
from irlm_env.corpus import Corpus, load_corpus

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
    actions = iter(np.random.default_rng(0).integers(0, len(corpus.vocab), 1 << 24).tolist())

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
    parser.add_argument("--corpus", default="text", help="registered corpus name")
    parser.add_argument("--path", default=str(SHAKESPEARE), help="file for the text corpus")
    parser.add_argument("--max-vocab", type=int, default=10000, help="vocabulary size")
    parser.add_argument("--context-length", type=int, default=8, help="tokens per observation")
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per measurement")
    args = parser.parse_args()

    options = {"path": args.path} if args.corpus == "text" else {}
    corpus = load_corpus(args.corpus, max_vocab=args.max_vocab, **options)
    tokens, context, seconds = corpus.split("train"), args.context_length, args.seconds
    print(f"corpus {corpus!r}, context_length={context}")

    bare = {n: bare_loop(tokens, n, context, seconds) for n in (64, 1024, 4096)}
    rows: list[tuple[str, float, int]] = [
        ("single env (gym.make)", single_env(corpus, context, seconds), 4096),
        ("sync vector env, 64 envs", vector_env(corpus, 64, context, seconds, "sync"), 4096),
    ]
    for n in (64, 1024, 4096):
        native = vector_env(corpus, n, context, seconds, "vector_entry_point")
        rows.append((f"native vector env, {n} envs", native, n))
    rows.append((
        "native, 4096 envs, copy=False",
        vector_env(corpus, 4096, context, seconds, "vector_entry_point", copy=False), 4096,
    ))
    rows.append((
        "native, 4096 envs, same-step",
        vector_env(corpus, 4096, context, seconds, "vector_entry_point",
                   autoreset_mode="SameStep"), 4096,
    ))
    for n, value in bare.items():
        rows.append((f"bare numpy loop, {n} streams", value, n))
    sliding = bare_loop(tokens, 4096, context, seconds, slide=True)
    rows.append(("bare loop sliding windows, 4096", sliding, 4096))

    print(f"{'':34} {'env steps/s':>14} {'/ bare 4096':>12} {'/ bare same N':>14}")
    for name, value, n in rows:
        print(f"{name:34} {value:14,.0f} {value / bare[4096]:12.3f} {value / bare[n]:14.3f}")

    native_4096 = rows[4][1]
    sync_64 = rows[1][1]
    print(f"\nnative 4096 / bare 4096 = {native_4096 / bare[4096]:.2f} (target >= 0.30)")
    print(f"native 4096 / sliding bare loop 4096 = {native_4096 / sliding:.2f}")
    print(f"native 4096 / sync 64   = {native_4096 / sync_64:.0f}x (target >= 50x)")


if __name__ == "__main__":
    main()
