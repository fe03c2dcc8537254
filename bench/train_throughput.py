"""Training throughput of SB3 A2C, PPO and sb3-contrib's RecurrentPPO, against cross-entropy.

One corpus and one model for all four (word tokens, max_vocab=10000, GRU, embedding 128,
hidden 256, 256 envs):

* ``supervised``: teacher-forced cross-entropy, 32 streams x 35 steps per update (truncated
  backpropagation through time, hidden state carried), Adam: the reference;
* ``a2c``: ``A2C(RNNLanguagePolicy, make_vec_env(..., n_envs=256))``, context window 8;
* ``ppo``: the same with ``PPO(..., n_epochs=4)``;
* ``recurrent-ppo``: ``RecurrentPPO(RecurrentLanguagePolicy, ...)`` with ``n_epochs=4`` on an env
  of ``context_length=1``: one token per step, the hidden state carried.

Rates are env tokens (steps x envs, or predicted tokens for supervised) per second of
training, printed as ratios to the supervised run of the same process. The phases are
interleaved in rounds so machine noise hits all of them alike. Peak memory is the maximum
resident set size of a fresh process running only that phase (``--no-memory`` skips it).

    python bench/train_throughput.py                      # tinyshakespeare
    python bench/train_throughput.py --seconds 60 --rounds 3

Targets: A2C >= 40% of supervised tokens/s; PPO >= 15%; recurrent PPO >= 20%.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sb3_contrib import RecurrentPPO
from stable_baselines3 import A2C, PPO

from irlm_env.corpus import Corpus, load_corpus
from irlm_env.errors import IrlmError
from irlm_agents.lm.model import ModelConfig, RNNLanguageModel
from irlm_agents.sb3 import RNNLanguagePolicy, make_vec_env
from irlm_agents.sb3.recurrent_policy import RecurrentLanguagePolicy

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinyshakespeare.txt"
PHASES = ("supervised", "a2c", "ppo", "recurrent-ppo")
TARGETS = {"a2c": 0.40, "ppo": 0.15, "recurrent-ppo": 0.20}
N_ENVS, CONTEXT = 256, 8
MODEL = {"cell": "gru", "embedding_dim": 128, "hidden_size": 256}
BATCH, BPTT = 32, 35
#: Rollout sizes: A2C's default n_steps; PPO with 32 steps x 256 envs = 8192 tokens per rollout,
#: split into 4 minibatches of 2048 (SB3's default of 64-sample minibatches would mostly
#: measure Python overhead).
A2C_KWARGS = {"n_steps": 5}
PPO_KWARGS = {"n_steps": 32, "batch_size": 2048, "n_epochs": 4}
#: Recurrent PPO: the same rollouts, replayed as minibatches of 16 sequences x 32 steps. At 512
#: tokens the (batch, vocabulary) float tensors of the update are 20 MB; at 2048 they are 80 MB,
#: which glibc maps afresh on every allocation (past its 32 MB mmap threshold), so each pass over
#: them page-faults and misses the cache: 512 measured about 1.25x faster than 2048.
RECURRENT_KWARGS = {"n_steps": 32, "batch_size": 512, "n_epochs": 4}

#: Runs one unit of training and returns the tokens it consumed.
Unit = Callable[[], int]


def supervised_unit(corpus: Corpus, seed: int) -> Unit:
    """Minimal cross-entropy reference: 32 contiguous streams over the train split."""
    torch.manual_seed(seed)
    model = RNNLanguageModel(ModelConfig(vocab_size=len(corpus.vocab), **MODEL))  # type: ignore[arg-type]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    text = torch.from_numpy(np.array(corpus.split("train"), dtype=np.int64))
    length = (len(text) - 1) // BATCH
    inputs = text[: BATCH * length].view(BATCH, length)
    targets = text[1 : BATCH * length + 1].view(BATCH, length)
    state = {"position": 0, "hidden": model.initial_hidden(BATCH)}

    def unit() -> int:
        start = state["position"]
        if start + BPTT > length:
            start, state["hidden"] = 0, model.initial_hidden(BATCH)
        x, y = inputs[:, start : start + BPTT], targets[:, start : start + BPTT]
        logits, hidden = model(x, state["hidden"])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        state["hidden"] = model.detach_hidden(hidden)
        state["position"] = start + BPTT
        return x.numel()

    return unit


def sb3_unit(name: str, corpus: Corpus, seed: int) -> Unit:
    recurrent = name == "recurrent-ppo"
    env = make_vec_env(n_envs=N_ENVS, seed=seed, corpus=corpus, context_length=1 if recurrent else CONTEXT)
    common = {"seed": seed, "device": "cpu", "policy_kwargs": MODEL}
    agent: A2C | PPO | RecurrentPPO
    if name == "a2c":
        agent = A2C(RNNLanguagePolicy, env, **A2C_KWARGS, **common)
        per_update = A2C_KWARGS["n_steps"] * N_ENVS
        updates = 8
    elif recurrent:
        agent = RecurrentPPO(RecurrentLanguagePolicy, env, **RECURRENT_KWARGS, **common)
        per_update = RECURRENT_KWARGS["n_steps"] * N_ENVS
        updates = 1
    else:
        agent = PPO(RNNLanguagePolicy, env, **PPO_KWARGS, **common)
        per_update = PPO_KWARGS["n_steps"] * N_ENVS
        updates = 1

    def unit() -> int:
        before = agent.num_timesteps
        agent.learn(updates * per_update, reset_num_timesteps=False)
        return agent.num_timesteps - before

    return unit


def make_unit(name: str, corpus: Corpus, seed: int) -> Unit:
    return supervised_unit(corpus, seed) if name == "supervised" else sb3_unit(name, corpus, seed)


def timed(unit: Unit, seconds: float) -> tuple[int, float]:
    """Tokens and seconds of whole units run for about ``seconds``."""
    tokens, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        tokens += unit()
    return tokens, time.perf_counter() - start


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter (Linux >= 4.0), so a phase's peak excludes the
    corpus loading before it. Returns False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """Peak resident set size since the last reset (VmHWM), else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_phase_alone(name: str, corpus_path: Path, seconds: float) -> dict[str, float]:
    """This phase in a fresh process, so its peak memory is its own."""
    out = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--corpus-path", str(corpus_path), "--seconds", str(seconds),
         "--threads", str(torch.get_num_threads())],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def load(corpus_path: Path) -> Corpus:
    return load_corpus("text", path=str(corpus_path), tokenizer="word", max_vocab=10000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-path", type=Path, default=SHAKESPEARE)
    parser.add_argument("--seconds", type=float, default=30.0, help="timed seconds per phase (all rounds)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per phase")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-memory", action="store_true", help="skip the per-phase peak-memory processes")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for every phase (1: steadiest on a shared 2-core machine)")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()
    if args.threads < 1 or args.rounds < 1 or not args.seconds > 0:
        parser.error("--threads and --rounds must be at least 1 and --seconds above 0")
    if not args.corpus_path.is_file():
        parser.error(f"--corpus-path {args.corpus_path}: no such file; pass a text file")
    torch.set_num_threads(args.threads)

    try:
        corpus = load(args.corpus_path)
    except IrlmError as error:
        parser.error(f"--corpus-path {args.corpus_path}: {error}")
    if args.phase:
        reset_peak_rss()
        unit = make_unit(args.phase, corpus, args.seed)
        unit()  # warm-up
        tokens, elapsed = timed(unit, args.seconds)
        print(json.dumps({"tokens_per_s": tokens / elapsed, "peak_rss_mb": peak_rss_mb()}))
        return

    print(f"corpus {args.corpus_path.name}: {len(corpus.split('train')):,} train tokens, vocabulary "
          f"{len(corpus.vocab):,}; model {MODEL}, context {CONTEXT}, {N_ENVS} envs; "
          f"torch threads {torch.get_num_threads()}")
    units = {name: make_unit(name, corpus, args.seed) for name in PHASES}
    for unit in units.values():
        unit()  # warm-up: first-call allocations and lazy initialisation
    totals = {name: [0, 0.0] for name in PHASES}
    for _ in range(args.rounds):
        for name, unit in units.items():
            tokens, elapsed = timed(unit, args.seconds / args.rounds)
            totals[name][0] += tokens
            totals[name][1] += elapsed
    rates = {name: tokens / elapsed for name, (tokens, elapsed) in totals.items()}
    memory = {} if args.no_memory else {
        name: run_phase_alone(name, args.corpus_path, min(5.0, args.seconds / 4))["peak_rss_mb"] for name in PHASES
    }
    print(f"{'phase':<15}{'tokens/s':>10}{'ratio':>8}{'target':>8}{'peak RSS MB':>13}")
    for name in PHASES:
        ratio = rates[name] / rates["supervised"]
        target = f">={TARGETS[name]:.2f}" if name in TARGETS else "ref"
        mem = f"{memory[name]:.0f}" if name in memory else "-"
        print(f"{name:<15}{rates[name]:>10.0f}{ratio:>8.2f}{target:>8}{mem:>13}")
    print(f"settings: A2C {A2C_KWARGS}; PPO {PPO_KWARGS} (window {CONTEXT}); recurrent PPO {RECURRENT_KWARGS} "
          f"(one token per step); supervised batch {BATCH} x {BPTT}")


if __name__ == "__main__":
    main()
