"""Learning curves of one or more runs on one figure: how runs are compared.

Draws with matplotlib's Agg canvas directly (no pyplot), so it never changes the caller's
backend and works without a display.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from irlm_env.errors import IrlmError, suggest
from irlm_env.fileio import atomic_write_bytes

METRICS_FILE = "metrics.csv"
CONFIG_FILE = "config.json"

_LABELS = {
    "top1": "validation top-1 accuracy",
    "top5": "validation top-5 accuracy",
    "perplexity": "validation perplexity",
    "reward": "validation mean reward",
}


class PlotWarning(UserWarning):
    """A curve that cannot be drawn (a diverged run's perplexity); the rest of the figure is."""


def read_metrics(run_dir: str | Path) -> dict[str, list[float]]:
    """The columns of a run's metrics.csv as float lists, keyed by column name."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise IrlmError(f"{run_dir}: no {METRICS_FILE} here; pass a run directory written by `irlm train`")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        columns = {name: [float(row[name]) for row in rows] for name in rows[0]} if rows else {}
    except (TypeError, ValueError, csv.Error) as exc:  # UnicodeDecodeError is a ValueError
        raise IrlmError(f"{path}: malformed or cut short ({type(exc).__name__}: {exc}); pass the metrics.csv "
                        "of a run written by `irlm train`") from None
    if not columns:
        raise IrlmError(f"{path}: no evaluations recorded yet; train longer or lower --eval-every")
    return columns


def _best_accuracy(run_dir: Path) -> float | None:
    """The corpus's best achievable top-1 that the run's config.json records, if any."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["corpus"].get("best_accuracy")
        return float(value) if value is not None else None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
        raise IrlmError(f"{path}: malformed ({type(exc).__name__}: {exc}); pass a run directory written by "
                        "`irlm train`, or move its config.json away to plot without the best-achievable line") from None


def plot_runs(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    *,
    metric: str = "top1",
    labels: Sequence[str] | None = None,
) -> Path:
    """Plot ``metric`` against training tokens for each run and write a PNG to ``out``.

    For accuracy curves on a corpus with a known best achievable accuracy (``grammar``), that
    ceiling is drawn as a dashed line, so "how close to perfect" is visible at a glance.
    """
    if not run_dirs:
        raise IrlmError("plot needs at least one run directory")
    if labels is not None and len(labels) != len(run_dirs):
        raise IrlmError(f"got {len(labels)} labels for {len(run_dirs)} runs; pass one label per run")
    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    ceilings: set[float] = set()
    for index, run in enumerate(run_dirs):
        run = Path(run)
        columns = read_metrics(run)
        if metric not in columns:
            choices = [name for name in columns if name != "tokens"]
            raise IrlmError(f"{run}: no metric {metric!r}; {suggest(metric, choices)}")
        label = labels[index] if labels is not None else (run.name or run.resolve().name)
        if not any(math.isfinite(value) for value in columns[metric]):
            warnings.warn(f"{run}: every {metric} value is nan or inf (the run diverged), so its curve is empty",
                          PlotWarning, stacklevel=2)
        axes.plot(columns["tokens"], columns[metric], marker="o", markersize=3, label=label)
        best = _best_accuracy(run)
        if best is not None and metric == "top1":
            ceilings.add(best)
    for best in sorted(ceilings):
        axes.axhline(best, linestyle="--", color="grey", linewidth=1, label=f"best achievable ({best:.3f})")
    axes.set_xlabel("training tokens")
    axes.set_ylabel(_LABELS.get(metric, metric))
    if metric == "perplexity":
        axes.set_yscale("log")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    return _save_png(figure, Path(out))


def _save_png(figure: Figure, out: Path) -> Path:
    """Write atomically, so an interrupted plot never leaves a truncated PNG behind."""
    if out.suffix.lower() != ".png":
        raise IrlmError(f"{out}: plots are written as PNG; give a file name ending in .png")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(out, buffer.getvalue())
    return out
