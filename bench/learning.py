"""Learning benchmark: every agent against supervised training, same model, data and token budget.

    python bench/learning.py                                   # everything, 2M tokens (long on CPU)
    python bench/learning.py --total-tokens 300000 --agents supervised,reinforce-critic,group-logexp-k64
    python bench/learning.py --list                            # the agent configurations
    python bench/learning.py --table bench/learning-out/results-STAMP.json   # print a saved table again

Setup (the issue's): the ``text`` corpus of ``--corpus-path`` (default Tiny Shakespeare), word
tokens, ``max_vocab=10000``, GRU with embedding 128 and hidden 256, Adam at 3e-3, 32 streams x 35
steps per update, the same token budget for every agent. Each agent runs in a fresh process (so
its peak memory is its own), then is scored on the test split.

Columns of the table:

- ``feedback``: ``bandit`` (only rewards of tokens the agent proposed), ``full`` (the true target
  or the reward table: supervised, ``expected``), or ``mixed`` (MIXER's cross-entropy phase).
- ``test top1`` and ``x sup``: test accuracy at the end of the budget, and its ratio to
  supervised's: the issue's measure.
- ``best ckpt`` and ``x sup``: test accuracy of the run's ``best.irlm`` (the checkpoint with the
  best validation top-1, i.e. early stopping), and its ratio. With a small corpus a long budget
  is many epochs and supervised training overfits; this column shows whether an agent's lead at
  the end comes from overfitting less or from learning more.
- ``tok/s`` and ``x sup``: training tokens per second (evaluation excluded for native agents)
  and the ratio to supervised's, measured in the same benchmark run.
- ``peak MB``: the process's peak resident memory.
- ``queries/tok``: reward evaluations per training token (K for group agents, fewer with
  stop-at-hit; V for the reward table; 0 for supervised).

The n-gram rows (majority token, bigram, 4-gram with backoff, fit on train) give the floor every
recommended agent must clear. Learning curves (validation top-1 against tokens) go to a PNG.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"

#: name -> (agent module, its options, feedback kind)
AGENTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "supervised": ("supervised", {}, "full"),
    "reinforce-none": ("reinforce", {"baseline": "none"}, "bandit"),
    "reinforce-mean": ("reinforce", {"baseline": "mean"}, "bandit"),
    "reinforce-critic": ("reinforce", {"baseline": "critic", "entropy_coef": 0.01}, "bandit"),
    "reinforce-critic-unigram": ("reinforce", {"baseline": "critic", "unigram_init": True}, "bandit"),
    "group-rloo-k8": ("group", {"estimator": "rloo", "k": 8, "replacement": True}, "bandit"),
    "group-grpo-k8": ("group", {"estimator": "grpo", "k": 8, "replacement": True}, "bandit"),
    "group-logexp-k8": ("group", {"estimator": "logexp", "k": 8}, "bandit"),
    "group-rloo-k64": ("group", {"estimator": "rloo", "k": 64, "replacement": True}, "bandit"),
    "group-grpo-k64": ("group", {"estimator": "grpo", "k": 64, "replacement": True}, "bandit"),
    "group-logexp-k64": ("group", {"estimator": "logexp", "k": 64}, "bandit"),
    "group-logexp-k64-rep": ("group", {"estimator": "logexp", "k": 64, "replacement": True}, "bandit"),
    "group-logexp-k256-rep": ("group", {"estimator": "logexp", "k": 256, "replacement": True}, "bandit"),
    "group-logexp-k1024-rep": ("group", {"estimator": "logexp", "k": 1024, "replacement": True}, "bandit"),
    "group-logexp-k64-t256": ("group", {"estimator": "logexp", "k": 64, "truncate": 256}, "bandit"),
    "group-logexp-k64-hit": ("group", {"estimator": "logexp", "k": 64, "stop_at_hit": True}, "bandit"),
    "group-logexp-k8-hit": ("group", {"estimator": "logexp", "k": 8, "stop_at_hit": True}, "bandit"),
    "group-logexp-k12-hit": ("group", {"estimator": "logexp", "k": 12, "stop_at_hit": True}, "bandit"),
    "group-logexp-k8-miss": ("group", {"estimator": "logexp", "k": 8, "miss_weight": 1.0}, "bandit"),
    "group-logexp-k8-hit-miss-sampled": (
        "group",
        {"estimator": "logexp", "k": 8, "stop_at_hit": True, "miss_weight": 1.0},
        "bandit",
    ),
    "group-logexp-k8-hit-miss": (
        "group",
        {"estimator": "logexp", "k": 8, "stop_at_hit": True, "miss_weight": 1.0, "temperature": 0.0},
        "bandit",
    ),
    "group-logexp-k8-hit-miss-t07": (
        "group",
        {"estimator": "logexp", "k": 8, "stop_at_hit": True, "miss_weight": 1.0, "temperature": 0.7},
        "bandit",
    ),
    "group-logexp-budget8-k32-t07": (
        "group",
        {"estimator": "logexp", "k": 32, "query_budget": 8.0, "miss_weight": 1.0, "temperature": 0.7},
        "bandit",
    ),
    "group-logexp-budget8-k32-t07-tr128": (
        "group",
        {"estimator": "logexp", "k": 32, "query_budget": 8.0, "miss_weight": 1.0, "temperature": 0.7, "truncate": 128},
        "bandit",
    ),
    "group-logexp-k16-hit-miss": (
        "group",
        {"estimator": "logexp", "k": 16, "stop_at_hit": True, "miss_weight": 1.0, "temperature": 0.0},
        "bandit",
    ),
    "expected-er": ("expected", {"objective": "er"}, "full"),
    "expected-log_er": ("expected", {"objective": "log_er"}, "full"),
    "mixer": ("mixer", {}, "mixed"),
    "a2c": ("a2c", {}, "bandit"),
    "ppo": ("ppo", {}, "bandit"),
}


def run_agent(name: str, common: dict[str, Any], run_root: str, threads: int) -> dict[str, Any]:
    """Train one configuration in this (fresh) process and score it on the test split."""
    import torch

    from irlm_agents.lm.evaluation import evaluate

    torch.set_num_threads(threads)
    module_name, options, feedback = AGENTS[name]
    module = __import__(f"irlm_agents.{module_name}", fromlist=["Args", "train"])
    fields = set(module.Args.__dataclass_fields__)
    settings = {key: value for key, value in common.items() if key in fields}
    settings.update(options, run_dir=str(Path(run_root) / name))
    args = module.Args(**settings)
    start = time.perf_counter()
    result = module.train(args)
    wall = time.perf_counter() - start
    config = json.loads((Path(args.run_dir) / "config.json").read_text())
    test = evaluate(result.model, result.corpus, "test", context_length=config.get("eval_context_length"))
    metrics = dict(result.metrics)
    return {
        "name": name,
        "feedback": feedback,
        "test_top1": float(test["top1"]),
        "test_top5": float(test["top5"]),
        "best_checkpoint_top1": best_checkpoint_top1(args.run_dir),
        "tokens_per_second": float(metrics.get("tokens_per_second", args.total_tokens / wall)),
        "queries_per_token": float(metrics.get("queries_per_token", 1.0)),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "run_dir": args.run_dir,
        "wall_seconds": wall,
    }


def best_checkpoint_top1(run_dir: str | Path) -> float:
    """Test top-1 of the run's checkpoint with the best validation top-1 (NaN when it has none)."""
    from irlm_agents.lm.checkpoints import load_model
    from irlm_agents.lm.evaluation import evaluate
    from irlm_agents.runs.run_dir import BEST_CHECKPOINT

    path = Path(run_dir) / BEST_CHECKPOINT
    if not path.exists():
        return float("nan")
    checkpoint = load_model(path)
    corpus = checkpoint.load_corpus()
    scores = evaluate(checkpoint.model, corpus, "test", reward=checkpoint.make_reward(corpus),
                      context_length=checkpoint.eval_context_length)
    return float(scores["top1"])


def ngram_rows(corpus_path: str) -> dict[str, float]:
    from irlm_env.corpus import load_corpus
    from irlm_agents.lm.ngram import ngram_baselines

    corpus = load_corpus("text", tokenizer="word", max_vocab=10000, path=corpus_path)
    return ngram_baselines(corpus, "test", orders=(1, 2, 4))


def reprint_table(path: Path) -> None:
    """Print a saved results file's table again, scoring best checkpoints it lacks (older files)."""
    saved = json.loads(path.read_text())
    for row in saved["runs"]:
        if "best_checkpoint_top1" not in row:
            row["best_checkpoint_top1"] = best_checkpoint_top1(row["run_dir"])
    print_table(saved["runs"], saved["ngram"], saved["total_tokens"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus-path", default=str(DEFAULT_CORPUS), help="text file for the text corpus")
    parser.add_argument("--total-tokens", type=int, default=2_000_000, help="training tokens per agent")
    parser.add_argument("--agents", default=",".join(AGENTS), help="comma-separated configurations (see --list)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("--eval-tokens", type=int, default=20_000, help="validation tokens per curve point")
    parser.add_argument("--curve-points", type=int, default=8, help="validation evaluations per run")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads per run")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run")
    parser.add_argument("--out", default="bench/learning-out", help="folder for runs, results.json and curves.png")
    parser.add_argument("--list", action="store_true", help="list the agent configurations and exit")
    parser.add_argument("--table", metavar="RESULTS_JSON", help="print the table of a saved results file and exit")
    options = parser.parse_args(argv)
    if options.list:
        for name, (module, extra, feedback) in AGENTS.items():
            print(f"{name:34s} {feedback:7s} irlm_agents.{module} {extra}")
        return 0
    if options.table:
        if not Path(options.table).is_file():
            parser.error(f"results file {options.table} not found; pass a results-*.json written by this script")
        reprint_table(Path(options.table))
        return 0
    names = [name.strip() for name in options.agents.split(",") if name.strip()]
    unknown = [name for name in names if name not in AGENTS]
    if unknown:
        parser.error(f"unknown agent configuration(s) {', '.join(unknown)}; see --list")
    if not Path(options.corpus_path).exists():
        parser.error(f"corpus file {options.corpus_path} not found; pass --corpus-path")
    if "supervised" in names:
        names.remove("supervised")
    names.insert(0, "supervised")  # the reference runs first

    out = Path(options.out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_root = out / f"runs-{stamp}"
    common = {
        "corpus": "text",
        "corpus_options": {"path": options.corpus_path},
        "tokenizer": "word",
        "max_vocab": 10000,
        "embedding_dim": 128,
        "hidden_size": 256,
        "cell": "gru",
        "learning_rate": 3e-3,
        "n_envs": 32,
        "rollout_steps": 35,
        "total_tokens": options.total_tokens,
        "eval_every": max(1, options.total_tokens // options.curve_points),
        "eval_tokens": options.eval_tokens,
        "device": options.device,
        "seed": options.seed,
        "progress": False,
    }
    results: list[dict[str, Any]] = []
    context = multiprocessing.get_context("spawn")
    for name in names:
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            try:
                row = pool.submit(run_agent, name, common, str(run_root), options.threads).result()
            except Exception as error:  # one failing agent must not lose the others' results
                print(f"{name}: FAILED: {error!r}", file=sys.stderr, flush=True)
                continue
        results.append(row)
        print(f"{name}: test top1 {row['test_top1']:.4f}, {row['tokens_per_second']:.0f} tok/s", flush=True)

    peers = ngram_rows(options.corpus_path)
    print_table(results, peers, options.total_tokens)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results-{stamp}.json").write_text(json.dumps({"runs": results, "ngram": peers, "total_tokens": options.total_tokens}, indent=2))
    if results:
        from irlm_agents.runs.plotting import plot_runs

        png = plot_runs([row["run_dir"] for row in results], out / f"curves-{stamp}.png", labels=[row["name"] for row in results])
        print(f"learning curves: {png}")
    return 0


def print_table(results: list[dict[str, Any]], peers: dict[str, float], total_tokens: int) -> None:
    reference = next((row for row in results if row["name"] == "supervised"), None)
    print(f"\nlearning benchmark, {total_tokens:,} training tokens per agent (test split)")
    header = (
        f"{'agent':34s} {'feedback':8s} {'test top1':>9s} {'x sup':>6s} {'best ckpt':>9s} {'x sup':>6s} "
        f"{'tok/s':>8s} {'x sup':>6s} {'peak MB':>8s} {'queries/tok':>11s}"
    )
    print(header)
    print("-" * len(header))

    def ratio(row: dict[str, Any], key: str) -> float:
        return row[key] / reference[key] if reference else float("nan")

    for row in results:
        print(
            f"{row['name']:34s} {row['feedback']:8s} {row['test_top1']:9.4f} {ratio(row, 'test_top1'):6.3f} "
            f"{row['best_checkpoint_top1']:9.4f} {ratio(row, 'best_checkpoint_top1'):6.3f} "
            f"{row['tokens_per_second']:8.0f} {ratio(row, 'tokens_per_second'):6.2f} {row['peak_mb']:8.0f} "
            f"{row['queries_per_token']:11.2f}"
        )
    for name in ("majority", "bigram", "4gram"):
        top1 = peers[f"{name}_top1"]
        print(f"{name + ' (n-gram)':34s} {'full':8s} {top1:9.4f} {top1 / reference['test_top1'] if reference else float('nan'):6.3f}")


if __name__ == "__main__":
    sys.exit(main())
