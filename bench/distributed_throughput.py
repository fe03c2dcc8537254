"""Training tokens per second of the native agents in one process and in two under torchrun.

The same run (agent, corpus, model, ``--n-envs`` streams in all, the same budget) is trained
three ways, in interleaved rounds so machine noise hits them alike:

* ``1 process, 1 thread``: the reference;
* ``1 process, 2 threads``: the other way to use a second core;
* ``2 processes``: ``torchrun --standalone --nproc_per_node 2``, one thread each, each
  process stepping half of the streams (gloo on the CPU).

Tokens per second are the run's own figure (env tokens over the time spent in rollouts and
updates, validation excluded; under torchrun rank 0's, which includes waiting for the other
process at each all-reduce). Printed as medians over the rounds, with ratios to the reference.

    python bench/distributed_throughput.py
    python bench/distributed_throughput.py --agent group --option k=8 --total-tokens 40000 --rounds 3
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
#: (label, processes, threads per process)
SETUPS = (("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2), ("2 processes", 2, 1))


def worker(out: str, agent: str, options: dict[str, Any]) -> None:
    """Train once (every process under torchrun); rank 0 writes the metrics."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    module = importlib.import_module(f"irlm_agents.{agent}")
    result = module.train(module.Args(**options))
    if int(os.environ.get("RANK", "0")) == 0:
        Path(out).write_text(json.dumps(result.metrics))


def measure(agent: str, options: dict[str, Any], processes: int, threads: int, folder: Path, tag: str) -> float | None:
    """The run's tokens/s, or None when it failed (reported on stderr, its last lines)."""
    out = folder / f"{tag}.json"
    run_options = {**options, "run_dir": str(folder / tag)}
    command = [str(SCRIPT), "--worker", str(out), agent, json.dumps(run_options)]
    if processes > 1:
        command = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), *command]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{agent} with {processes} process(es) failed:\n{done.stderr[-1500:]}", file=sys.stderr)
        return None
    return float(json.loads(out.read_text())["tokens_per_second"])


def parse_option(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def preflight(parser: argparse.ArgumentParser, agents: list[str], base: dict[str, Any], rounds: int) -> None:
    """What would fail every run, as one parser error before the first: agents, options, corpus."""
    from irlm_agents.train_command import AGENTS
    from irlm_env.corpus import load_corpus
    from irlm_env.errors import IrlmError

    if rounds < 1:
        parser.error(f"--rounds must be at least 1, got {rounds}")
    if not isinstance(base["n_envs"], int) or base["n_envs"] < 2 or base["n_envs"] % 2:
        parser.error(f"--n-envs {base['n_envs']}: the two-process runs split the streams evenly between them; "
                     "pass an even number, 2 or more")
    native = ("supervised", "reinforce", "group", "expected", "mixer")
    for agent in agents:
        if agent not in native:
            parser.error(f"--agent {agent}: not a native agent; choose from {', '.join(native)}")
        module = importlib.import_module(AGENTS[agent])
        try:
            spec = module.Args(**base).corpus_spec()  # the corpus the runs will load, options included
        except (IrlmError, TypeError) as error:
            parser.error(f"--agent {agent} with these options: {error}")
    try:
        load_corpus(spec)
    except IrlmError as error:
        parser.error(f"--corpus {base['corpus']}: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", action="append", help="native agent (repeatable; default supervised, reinforce)")
    parser.add_argument("--corpus", default="pydocs")
    parser.add_argument("--n-envs", type=int, default=64, help="streams in all (each of 2 processes steps half)")
    parser.add_argument("--total-tokens", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="agent argument (repeatable)")
    options = parser.parse_args()
    agents = options.agent or ["supervised", "reinforce"]
    base = {
        "corpus": options.corpus,
        "n_envs": options.n_envs,
        "total_tokens": options.total_tokens,
        "eval_every": 10**12,
        "eval_tokens": 1000,
        "progress": False,
        "device": "cpu",
        **dict(parse_option(item) for item in options.option),
    }
    preflight(parser, agents, base, options.rounds)
    failed = False
    print(f"{options.corpus}, {options.n_envs} streams in all, {options.total_tokens:,} tokens per run, "
          f"{options.rounds} rounds; tokens/s (median) and ratio to 1 process, 1 thread")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for agent in agents:
            rates: dict[str, list[float]] = {label: [] for label, _, _ in SETUPS}
            for round_ in range(options.rounds):
                for label, processes, threads in SETUPS:
                    tag = f"{agent}-{processes}p{threads}t-{round_}"
                    rate = measure(agent, base, processes, threads, folder, tag)
                    if rate is None:
                        failed = True
                    else:
                        rates[label].append(rate)
            reference = statistics.median(rates[SETUPS[0][0]]) if rates[SETUPS[0][0]] else float("nan")
            for label, values in rates.items():
                if not values:  # every round of it failed (above); left out
                    continue
                rate = statistics.median(values)
                print(f"  {agent:<11} {label:<22} {rate:>10,.0f} tok/s   x{rate / reference:.2f}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))
    else:
        main()
