"""The few lines ``irlm train`` prints at the end: what the model learnt, next to what counting gets.

A newcomer's first question after training is "did it learn anything?". Top-1 and perplexity
alone don't answer it; beside the majority token and the n-gram peers, scored on the same
validation tokens, they do. Free-running top-1 below it says how much the model loses when it
reads its own predictions, as it does when it generates. The report also says where the run's files are.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from irlm_agents.runs.run_dir import BEST_CHECKPOINT, BEST_PERPLEXITY_CHECKPOINT, CURVE_FILE, FINAL_CHECKPOINT

#: Peer prefixes in the metrics (see ``irlm_agents.lm.ngram``) and how the report names them.
PEER_LABELS = {"majority": "majority token", "bigram": "bigram", "4gram": "4-gram"}


def training_report(agent: str, metrics: Mapping[str, float], run_dir: Path) -> str:
    """Every figure on one line (for scripts), then the model against its peers and where the files are."""
    figures = ", ".join(f"{key}={value:.4g}" for key, value in metrics.items())
    lines = [f"{agent}: validation {figures}", ""]
    tokens = metrics.get("tokens")
    speed = metrics.get("tokens_per_second")
    if tokens is not None and speed:
        queries = metrics.get("queries_per_token")
        spent = f", {queries:.2f} reward queries per token" if queries else ""
        lines.append(f"{agent}: {tokens:,.0f} training tokens at {speed:,.0f} tokens/s{spent}")
    lines.append(f"{'validation':18s} {'top-1':>7s} {'perplexity':>11s}")
    lines.append(f"  {'trained model':16s} {metrics['top1']:7.3f} {metrics['perplexity']:11.1f}")
    if "free_top1" in metrics:
        lines.append(f"  {'reading its own':16s} {metrics['free_top1']:7.3f}   (free_top1: its greedy predictions "
                     "fed back within blocks of text)")
    for prefix, label in PEER_LABELS.items():
        if f"{prefix}_top1" in metrics:
            perplexity = metrics.get(f"{prefix}_perplexity", float("nan"))
            lines.append(f"  {label:16s} {metrics[f'{prefix}_top1']:7.3f} {perplexity:11.1f}")
    lines.append(f"run saved to {run_dir} (config.json, metrics.csv, TensorBoard events: tensorboard --logdir {run_dir})")
    lines.append(f"  curve:      {run_dir / CURVE_FILE}")
    lines.append(f"  checkpoint: {run_dir / FINAL_CHECKPOINT}")
    lines.append(f"  best validation top-1: {run_dir / BEST_CHECKPOINT}, perplexity: {run_dir / BEST_PERPLEXITY_CHECKPOINT}")
    return "\n".join(lines)
