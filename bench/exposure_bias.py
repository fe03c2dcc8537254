"""Exposure bias: does training on the agent's own actions help a model that reads its own output?

    python bench/exposure_bias.py --corpus pydocs --total-tokens 300000 --seeds 0,1 --jobs 2
    python bench/exposure_bias.py --corpus pydocs --total-tokens 20000        # a quick check
    python bench/exposure_bias.py --table OUT/exposure-STAMP.json           # print a saved table again

Three agents, each trained twice on the same budget: with teacher forcing (the env shows the
true token after every step, ``feed="truth"``) and with scheduled sampling (``feed="action"``:
each step shows the agent's own stepped action with probability ``--feed-probability``, the
true token otherwise). The agents are supervised (it then steps with a token sampled from its
own distribution), the recommended likelihood agent (``likelihood-k8``: group, k=8,
stop-at-hit, miss weight 1, unigram init) and REINFORCE with the critic baseline and an
entropy bonus of 0.01 (``reinforce-critic``). Model, corpus settings, optimizer and rollout sizes are those of
``bench/learning.py``, whose configurations and run function this script reuses.

Every final model is scored on the test split both ways: ``top1`` and ``perplexity`` reading
the true text, and ``free_top1`` reading its own greedy predictions inside blocks of 16 tokens
(see ``irlm_agents.lm.evaluation.evaluate``). ``free/top1`` is how much of its top-1 a model
keeps when it reads its own output; exposure bias is the gap.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from irlm_env.fileio import atomic_write_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning import (  # noqa: E402
    add_run_options, common_settings, native_options, plan_runs, preflight, read_results, run_agent, run_in_processes,
)

#: The benchmark's agents, configurations of bench/learning.py's AGENTS.
CONFIGURATIONS = ("supervised", "likelihood-k8", "reinforce-critic")


def feeds(probability: float) -> dict[str, dict[str, Any]]:
    """The two ways of training, by label: what the env shows after each step."""
    return {
        "teacher forcing": {"feed": "truth", "feed_probability": None},
        f"scheduled p={probability:g}": {"feed": "action", "feed_probability": probability},
    }


def run_one(name: str, training: str, feed: dict[str, Any], seed: int, common: dict[str, Any], run_root: str,
            threads: int) -> dict[str, Any]:
    """Train one configuration one way with bench/learning.py's run, which scores it on test both ways."""
    folder = Path(run_root) / ("truth" if feed["feed"] == "truth" else "action")
    run = run_agent(name, seed, {**common, **feed}, str(folder), threads)
    return {
        "name": name,
        "training": training,
        "seed": seed,
        "top1": run["test_top1"],
        "free_top1": run["test_free_top1"],
        "perplexity": run["test_perplexity"],
        "tokens_per_second": run["tokens_per_second"],
        "run_dir": run["run_dir"],
    }


def print_table(runs: list[dict[str, Any]], total_tokens: int, corpus: str) -> None:
    """Seed means per (agent, training): test top-1 and free_top1 with their ratio, and perplexity."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["name"], run["training"]), []).append(run)
    seeds = sorted({run["seed"] for run in runs})
    print(f"\nexposure bias on {corpus}, {total_tokens:,} training tokens per run, test split, "
          f"mean of seeds {', '.join(map(str, seeds))}")
    header = (f"{'agent':20s} {'training':22s} {'top1':>7s} {'free_top1':>9s} {'free/top1':>9s} "
              f"{'perplexity':>10s} {'tok/s':>7s}")
    print(header)
    print("-" * len(header))
    for (name, training), group in groups.items():
        mean = {key: statistics.fmean(run[key] for run in group)
                for key in ("top1", "free_top1", "perplexity", "tokens_per_second")}
        ratio = mean["free_top1"] / mean["top1"] if mean["top1"] else float("nan")
        print(f"{name:20s} {training:22s} {mean['top1']:7.4f} {mean['free_top1']:9.4f} {ratio:9.3f} "
              f"{mean['perplexity']:10.1f} {mean['tokens_per_second']:7.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_options(parser, corpus="tinyshakespeare", total_tokens=300_000, curve_points=4,
                    out="bench/out/exposure_bias")
    parser.add_argument("--feed-probability", type=float, default=0.25,
                        help="scheduled sampling: chance that a training step shows the agent's own action")
    parser.add_argument("--table", metavar="RESULTS_JSON", help="print the table of a saved results file and exit")
    options = parser.parse_args(argv)
    if options.table:
        saved = read_results(parser, Path(options.table), "results file",
                             ("runs", "total_tokens", "corpus", "feed_probability"))
        print_table(saved["runs"], saved["total_tokens"], saved["corpus"])
        return 0
    if not 0 < options.feed_probability <= 1:  # 0 would be teacher forcing twice
        parser.error(f"--feed-probability must be in (0, 1], got {options.feed_probability}")
    native_options(parser, options)  # its configurations are all native agents; this checks the values
    seeds, corpus_label, stamp = plan_runs(parser, options)
    out = Path(options.out)
    run_root = out / f"runs-{corpus_label}-{stamp}"
    common = common_settings(options.corpus, options.total_tokens, options.curve_points, options.eval_tokens,
                             options.device, options.weight_decay, options.ema_decay)
    preflight(parser, options, common, CONFIGURATIONS, seeds[0])
    trainings = feeds(options.feed_probability)
    calls = {f"{name} ({training}) seed {seed}":
             (run_one, (name, training, trainings[training], seed, common, str(run_root), options.threads))
             for name in CONFIGURATIONS for training in trainings for seed in seeds}
    runs = run_in_processes(calls, options.jobs, lambda run: (
        f"test top1 {run['top1']:.4f}, free_top1 {run['free_top1']:.4f}, ppl {run['perplexity']:.1f}, "
        f"{run['tokens_per_second']:.0f} tok/s"))
    if not runs:
        print(f"every run failed (see above); nothing was written to {out}", file=sys.stderr)
        return 1
    order = [(name, training) for name in CONFIGURATIONS for training in trainings]
    runs.sort(key=lambda run: (order.index((run["name"], run["training"])), run["seed"]))
    print_table(runs, options.total_tokens, corpus_label)
    out.mkdir(parents=True, exist_ok=True)
    results = out / f"exposure-{corpus_label}-{stamp}.json"
    atomic_write_bytes(results, json.dumps({"runs": runs, "total_tokens": options.total_tokens, "corpus": corpus_label,
                                            "feed_probability": options.feed_probability}, indent=2).encode())
    print(f"results: {results}")
    if len(runs) < len(calls):
        print(f"{len(calls) - len(runs)} of {len(calls)} runs failed (see above): the table and results file lack "
              "them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
