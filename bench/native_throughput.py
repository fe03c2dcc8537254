"""Training throughput of the native agents against supervised, in one process (issue 11's speed target).

``bench/learning.py`` runs every configuration in a process of its own, two side by side, so
two rows' tokens/s come from different moments and different neighbours: a bandit agent paired
with another bandit agent competes for memory bandwidth with per-step products, supervised
paired with supervised does not. Here every configuration trains in this one process, on one
thread, one after another and again in rounds (supervised, then each agent, in the same order
every round), so machine noise hits them alike. Each run is the configuration of
``bench/learning.py`` (same model, corpus, settings and seed) trained from scratch for
``--total-tokens``; its rate is the tokens per second of its rollouts and updates (validation
excluded, as in ``bench/learning.py``), and each agent's ratio is against the supervised run of
the same round. Every round repeats the same work, so the spread of the ratios over rounds is
the machine's noise; the table gives their median. Run it alone on the machine, or say what ran
beside it: with another benchmark on the second core the bandit agents' ratios came out lower
(their output layer runs step by step, reading the whole weight matrix at every step).

    python bench/native_throughput.py --corpus pydocs --agents likelihood-k8-t07-memory,likelihood-k1-t05-memory
    python bench/native_throughput.py --table OUT/throughput-pydocs-STAMP.json   # print a saved table again

Target (issue 11): the recommended agents at >= 0.80 of supervised's tokens/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning import (  # noqa: E402
    agent_args, checked_agents, common_settings, corpus_label, native_options, preflight, read_results,
)

from irlm_env.fileio import atomic_write_bytes  # noqa: E402

RECOMMENDED = (
    "likelihood-k8-t07-memory-marginal", "likelihood-k2-t05-memory-marginal", "likelihood-k1-t05-memory-marginal"
)
TARGET = 0.80


def train_rate(name: str, common: dict[str, Any], seed: int, run_dir: Path) -> dict[str, float]:
    """Train configuration ``name`` once in this process; its training tokens/s and queries per token."""
    module, args = agent_args(name, seed, common, run_dir)
    result = module.train(args)
    return {
        "tokens_per_second": float(result.metrics["tokens_per_second"]),
        "queries_per_token": float(result.metrics.get("queries_per_token", 1.0)),
    }


def summarise(rounds: list[dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """One row per configuration: median tokens/s, the ratio to the same round's supervised run
    in each round, and their median."""
    rows = []
    for name in rounds[0]:
        ratios = [r[name]["tokens_per_second"] / r["supervised"]["tokens_per_second"] for r in rounds]
        rows.append({
            "name": name,
            "tokens_per_second": statistics.median(r[name]["tokens_per_second"] for r in rounds),
            "queries_per_token": rounds[0][name]["queries_per_token"],
            "ratios": ratios,
            "median_ratio": statistics.median(ratios),
        })
    return rows


def print_table(result: dict[str, Any]) -> None:
    settings = ", ".join(f"{label} {result[key]}" for key, label in
                         (("seed", "seed"), ("weight_decay", "weight decay"), ("ema_decay", "EMA decay")) if key in result)
    print(f"native training throughput on {result['corpus']}, {result['total_tokens']:,} tokens per run, "
          f"{len(result['rounds'])} rounds in one process, {result['threads']} thread(s)"
          + (f"; {settings}" if settings else ""))
    rows = summarise(result["rounds"])
    width = max(len("configuration"), *(len(row["name"]) for row in rows))
    print(f"{'configuration':{width}s} {'tok/s':>7s} {'queries/tok':>11s} {'x sup (median)':>14s}  x sup by round")
    for row in rows:
        flag = ""
        if row["name"] in RECOMMENDED:
            flag = f"  {'meets' if row['median_ratio'] >= TARGET else 'below'} {TARGET:.2f}"
        print(f"{row['name']:{width}s} {row['tokens_per_second']:7.0f} {row['queries_per_token']:11.2f} "
              f"{row['median_ratio']:14.3f}  {' '.join(f'{r:.2f}' for r in row['ratios'])}{flag}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="tinyshakespeare",
                        help="tinyshakespeare (../shared/corpora), a built-in corpus name (pydocs) or a text file")
    parser.add_argument("--agents", default=",".join(RECOMMENDED),
                        help="comma-separated configurations of bench/learning.py (its --list); supervised is "
                             "always run as the reference")
    parser.add_argument("--total-tokens", type=int, default=200_000, help="training tokens per run")
    parser.add_argument("--rounds", type=int, default=3, help="times every configuration is trained")
    parser.add_argument("--seed", type=int, default=0, help="the seed of every run (each round repeats the same work)")
    parser.add_argument("--weight-decay", type=float, default=0.3, help="as bench/learning.py --weight-decay")
    parser.add_argument("--ema-decay", type=float, default=0.0, help="as bench/learning.py --ema-decay")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default="bench/out/throughput", help="folder for the results file")
    parser.add_argument("--table", metavar="RESULTS_JSON", help="print the table of a saved results file and exit")
    options = parser.parse_args(argv)
    if options.table:
        print_table(read_results(parser, Path(options.table), "results file", ("rounds", "corpus", "total_tokens")))
        return 0
    agents = checked_agents(parser, options.agents, native_options(parser, options))
    names = ["supervised", *(name for name in agents if name != "supervised")]
    if options.rounds < 1 or options.total_tokens < 1:
        parser.error("--rounds and --total-tokens must be at least 1")
    # One validation at the end of each run, on few tokens: only the training time is measured.
    common = common_settings(options.corpus, options.total_tokens, 1, 2_000, "cpu", options.weight_decay,
                             options.ema_decay)
    preflight(parser, options, common, names, options.seed)
    torch.set_num_threads(options.threads)
    result: dict[str, Any] = {"corpus": corpus_label(options.corpus), "total_tokens": options.total_tokens,
                              "threads": options.threads, "seed": options.seed, "weight_decay": options.weight_decay,
                              "ema_decay": options.ema_decay, "rounds": []}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(options.rounds):
            rates = {}
            for name in names:
                rates[name] = train_rate(name, common, options.seed, Path(scratch) / f"{name}-{round_index}")
                print(f"round {round_index + 1} {name}: {rates[name]['tokens_per_second']:.0f} tok/s", flush=True)
            result["rounds"].append(rates)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"throughput-{result['corpus']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_bytes(path, json.dumps(result, indent=1).encode())
    print_table(result)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
