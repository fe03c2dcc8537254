"""Cost per token of the ``judge`` reward against the ``exact`` reward, as ratios from one process.

A group-sampling agent asks the reward twice per state: ``score()`` for its K candidates, then
``step()`` for the action it takes. This runs that loop on the native vector env (``--n-envs``
streams, ``context_length=1`` as the recurrent agents use it, ``--k`` random candidates) with
each reward in turn and prints the microseconds per token and the ratio to ``exact``. The
rewards are timed in interleaved rounds of a few seconds each and each keeps its fastest
round, so a busy machine slows them alike. The checkpoint judge is an untrained model of the
default sizes (its cost is that of a trained one) unless ``--checkpoint`` names a trained one.

    python bench/judge_cost.py                              # pydocs, 32 streams, K = 8
    python bench/judge_cost.py --checkpoint runs/judge/final.irlm --seconds 10
    python bench/judge_cost.py --torch-threads 1            # on a machine whose cores are busy

The plugin is used as installed (``pip install -e plugins/irlm-judge``), else from the source tree.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import irlm_env  # noqa: F401  (registers the env ids)
from irlm_agents.lm.checkpoints import save_model
from irlm_agents.lm.model import ModelConfig, RNNLanguageModel
from irlm_env import load_corpus, plugins
from irlm_env.corpus import Corpus
from irlm_env.errors import IrlmError
from irlm_env.rewards import CheckedReward, make_reward
from irlm_env.rewards.registry import reward_registry

ROOT = Path(__file__).resolve().parents[1]
#: Steps a timed round takes at least, however slow the reward.
MIN_STEPS = 5


def ensure_judge() -> None:
    """Register the judge from the source tree when no installed copy provides it."""
    if "judge" in reward_registry():
        return
    sys.path.insert(0, str(ROOT / "plugins" / "irlm-judge"))
    import irlm_judge

    plugins.register_plugin(irlm_judge, "irlm-judge")


def seconds_per_token(corpus: Corpus, reward: CheckedReward, n_envs: int, k: int, seconds: float, seed: int) -> float:
    """Wall seconds per env token of ``score()`` on K candidates and ``step()``, for about ``seconds``."""
    envs: Any = gym.make_vec("irlm/NextWord-v0", num_envs=n_envs, corpus=corpus, reward=reward, context_length=1)
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    steps, start = 0, time.perf_counter()
    while steps < MIN_STEPS or time.perf_counter() - start < seconds:
        candidates = rng.integers(0, len(corpus.vocab), size=(n_envs, k))
        envs.unwrapped.score(candidates)
        envs.step(candidates[:, 0])
        steps += 1
    elapsed = time.perf_counter() - start
    envs.close()
    return elapsed / (steps * n_envs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="pydocs", help="registered corpus name")
    parser.add_argument("--n-envs", type=int, default=32, help="vector env streams")
    parser.add_argument("--k", type=int, default=8, help="candidates scored per stream and step")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of a timed round per reward")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each reward keeps its fastest")
    parser.add_argument("--top-k", type=int, default=1, help="the judge pays for its top_k tokens")
    parser.add_argument("--history", type=int, default=32, help="checkpoint judge: tokens of history it reads")
    parser.add_argument(
        "--torch-threads", type=int, help="torch.set_num_threads for the checkpoint judge (default: torch's choice); "
        "1 on a machine whose cores are busy, where torch's threads wait on each other"
    )
    parser.add_argument("--checkpoint", type=Path, help="a trained .irlm judge (default: an untrained one of the default sizes)")
    args = parser.parse_args()
    for name in ("n_envs", "k", "rounds", "top_k", "history"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if not args.seconds > 0 or (args.torch_threads is not None and args.torch_threads < 1):
        parser.error("--seconds must be above 0 and --torch-threads at least 1")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no such file; pass a trained .irlm judge")

    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    ensure_judge()
    try:
        corpus = load_corpus(args.corpus)
    except IrlmError as error:
        parser.error(f"--corpus {args.corpus}: {error}")
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = Path(scratch) / "judge.irlm"
            model = RNNLanguageModel(ModelConfig(vocab_size=len(corpus.vocab)))
            save_model(model, checkpoint, corpus.vocab, corpus.tokenizer.config(), corpus_spec=corpus.spec)
        rewards = {
            "exact": make_reward("exact", corpus),
            "judge n-gram (order 4)": make_reward("judge", corpus, top_k=args.top_k),
            f"judge checkpoint (history {args.history})": make_reward(
                "judge", corpus, checkpoint=str(checkpoint), history=args.history, top_k=args.top_k
            ),
        }
    best = dict.fromkeys(rewards, float("inf"))
    for round_ in range(args.rounds):
        for name, reward in rewards.items():
            best[name] = min(best[name], seconds_per_token(corpus, reward, args.n_envs, args.k, args.seconds, round_))
    print(
        f"corpus {args.corpus} (V={len(corpus.vocab)}), {args.n_envs} streams, context_length=1, "
        f"score() of K={args.k} + step() per state, top_k={args.top_k}, {torch.get_num_threads()} torch threads, "
        f"fastest of {args.rounds} rounds of {args.seconds:g} s"
    )
    print(f"{'reward':<32} {'history':>7} {'us/token':>9} {'x exact':>8}")
    for name, reward in rewards.items():
        history = getattr(reward.inner, "history_length", None) or "-"
        print(f"{name:<32} {history!s:>7} {best[name] * 1e6:>9.1f} {best[name] / best['exact']:>8.1f}")


if __name__ == "__main__":
    main()
