"""The run directory every agent writes, and the progress bar the user watches.

One place decides what a run leaves behind, so runs of different agents can be compared with the
same tools (``irlm eval``, ``irlm plot``, TensorBoard)::

    runs/ppo-20260101-120000/
        config.json      arguments, model sizes, corpus and vocabulary identity
        metrics.csv      one row per validation evaluation (tokens, seconds, top1, top5, ...)
        events.out.*     TensorBoard scalars (validation metrics and training statistics)
        best.irlm        checkpoint with the best validation top-1 so far
        final.irlm       checkpoint at the end of training (or when interrupted)
        curve.png        validation top-1 against training tokens
        summary.json     final metrics and whether the run completed or was interrupted

Usage inside an agent::

    with RunLogger("ppo", args, corpus, model, eval_context_length=args.context_length,
                   extra_columns=["loss"]) as run:
        ...                        # training; call run.advance(tokens, accuracy=..., reward=...)
        run.evaluate(tokens, loss=...)   # every args.eval_every tokens
        metrics = run.finish(tokens)

Ctrl-C inside the ``with`` block saves ``final.irlm`` and re-raises as ``TrainingInterrupted``,
which the command line turns into a one-line message.
"""

from __future__ import annotations

import csv
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from collections.abc import Sequence
from typing import IO, Any

from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

import irlm_env
from irlm_agents.runs.args import TrainArgs
from irlm_agents.runs.plotting import CONFIG_FILE, METRICS_FILE, plot_runs
from irlm_agents.lm.checkpoints import save_model
from irlm_env.corpus import Corpus
from irlm_env.errors import IrlmError
from irlm_env.fileio import atomic_write_bytes
from irlm_agents.lm.evaluation import evaluate
from irlm_agents.lm.model import RNNLanguageModel
from irlm_env.plugins import make_reward

BEST_CHECKPOINT = "best.irlm"
FINAL_CHECKPOINT = "final.irlm"
CURVE_FILE = "curve.png"
SUMMARY_FILE = "summary.json"
METRIC_COLUMNS = ("top1", "top5", "perplexity", "reward")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the model was saved; carries where it went."""

    def __init__(self, run_dir: Path, checkpoint: Path, tokens: int) -> None:
        super().__init__(f"training stopped after {tokens:,} tokens; model saved to {checkpoint}")
        self.run_dir = run_dir
        self.checkpoint = checkpoint
        self.tokens = tokens


def default_run_dir(agent: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{agent}-{stamp}"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


class RunLogger:
    """Evaluates, logs and checkpoints one training run; a context manager around the loop.

    ``eval_context_length`` is how the model is scored: the SB3 agents' policy sees a window of
    ``context_length`` tokens, so they pass it; the recurrent native agents pass ``None`` (hidden
    state carried over the split). It is stored with the checkpoints so ``irlm eval`` reproduces
    the numbers logged here.
    """

    def __init__(
        self,
        agent: str,
        args: TrainArgs,
        corpus: Corpus,
        model: RNNLanguageModel,
        *,
        eval_context_length: int | None,
        extra_columns: Sequence[str] = (),
    ) -> None:
        self.agent = agent
        self.args = args
        self.corpus = corpus
        self.model = model
        self.eval_context_length = eval_context_length
        self.run_dir = Path(args.run_dir) if args.run_dir is not None else default_run_dir(agent)
        if (self.run_dir / METRICS_FILE).exists():
            raise IrlmError(
                f"{self.run_dir} already holds a run; choose another --run-dir or delete it"
            )
        self.reward_fn = make_reward(args.reward, corpus, **args.reward_options)
        self.tokens = 0
        self.best_top1 = float("-inf")
        self.last_metrics: dict[str, float] = {}
        self._last_eval_tokens: int | None = None
        self._columns = ["tokens", "seconds", *METRIC_COLUMNS, *extra_columns]
        self._csv_file: IO[str] | None = None
        self._csv: csv.DictWriter[str]
        self._writer: SummaryWriter | None = None
        self._bar: tqdm | None = None
        self._postfix: dict[str, str] = {}
        self._start = time.perf_counter()

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> RunLogger:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(self.run_dir / CONFIG_FILE, self._config())
        self._writer = SummaryWriter(log_dir=str(self.run_dir))
        self._bar = tqdm(
            total=self.args.total_tokens,
            unit="tok",
            unit_scale=True,
            desc=self.agent,
            disable=not self.args.progress,
            dynamic_ncols=True,
        )
        self._start = time.perf_counter()
        self.evaluate(0)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, TrainingInterrupted):
                checkpoint = self._save(FINAL_CHECKPOINT)
                self._write_summary("interrupted")
                self._plot()
                raise TrainingInterrupted(self.run_dir, checkpoint, self.tokens) from exc
        finally:
            self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None

    # -- during training -------------------------------------------------------------------
    def advance(self, tokens: int, **live: float) -> None:
        """Move the progress bar to ``tokens`` and show live training statistics next to it.

        ``live`` values (e.g. ``accuracy`` and ``reward`` of the last rollout) also go to
        TensorBoard under ``train/``.
        """
        self.tokens = tokens
        for name, value in live.items():
            self._postfix[name] = f"{value:.3f}"
            if self._writer is not None:
                self._writer.add_scalar(f"train/{name}", value, tokens)
        if self._bar is not None:
            self._bar.n = min(tokens, self.args.total_tokens)
            self._bar.set_postfix(self._postfix, refresh=True)

    def log_scalars(self, tokens: int, **scalars: float) -> None:
        """Training diagnostics (losses, entropy) for TensorBoard only."""
        if self._writer is not None:
            for name, value in scalars.items():
                self._writer.add_scalar(f"train/{name}", value, tokens)

    def evaluate(self, tokens: int, **extras: float) -> dict[str, float]:
        """Score the model on validation, record a metrics row, keep the best checkpoint.

        ``extras`` fill the agent's ``extra_columns`` (training loss, say); a column left out
        of a row is written as ``nan``, e.g. at the evaluation before training starts.
        """
        was_training = self.model.training
        self.model.eval()
        try:
            scores = evaluate(
                self.model,
                self.corpus,
                "validation",
                reward=self.reward_fn,
                context_length=self.eval_context_length,
                max_tokens=self.args.eval_tokens,
            )
        finally:
            self.model.train(was_training)
        metrics = {name: float(scores[name]) for name in METRIC_COLUMNS}
        unknown = sorted(set(extras) - set(self._columns))
        if unknown:
            raise ValueError(f"metrics column(s) {unknown} were not declared in RunLogger(extra_columns=...)")
        row: dict[str, float] = {column: float("nan") for column in self._columns}
        row.update(tokens=tokens, seconds=round(time.perf_counter() - self._start, 3), **metrics, **extras)
        self._append_row(row)
        if self._writer is not None:
            for name, value in metrics.items():
                self._writer.add_scalar(f"validation/{name}", value, tokens)
            self._writer.flush()
        self.tokens = tokens
        self.last_metrics = metrics
        self._last_eval_tokens = tokens
        if metrics["top1"] > self.best_top1:
            self.best_top1 = metrics["top1"]
            self._save(BEST_CHECKPOINT)
        self._postfix["val_top1"] = f"{metrics['top1']:.3f}"
        self._postfix["val_reward"] = f"{metrics['reward']:.3f}"
        if self._bar is not None:
            self._bar.set_postfix(self._postfix, refresh=True)
        return metrics

    def finish(self, tokens: int) -> dict[str, float]:
        """Final evaluation (unless one just ran), final checkpoint, curve and summary."""
        self.tokens = tokens
        if self._last_eval_tokens != tokens:
            self.evaluate(tokens)
        if self._bar is not None:
            self._bar.n = min(tokens, self.args.total_tokens)
            self._bar.refresh()
        self._save(FINAL_CHECKPOINT)
        self._write_summary("completed")
        self._plot()
        return dict(self.last_metrics)

    # -- files -----------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        corpus = self.corpus
        return {
            "agent": self.agent,
            "args": self.args.to_dict(),
            "eval_context_length": self.eval_context_length,
            "model": self.model.config.to_dict(),
            "corpus": {
                "name": corpus.name,
                "vocab_size": len(corpus.vocab),
                "vocab_hash": corpus.vocab.content_hash,
                "source_hash": corpus.source_hash,
                "tokenizer": corpus.tokenizer.config(),
                "best_accuracy": corpus.best_accuracy,
                "split_tokens": {name: int(len(array)) for name, array in corpus.splits.items()},
            },
            "irlm_env_version": irlm_env.__version__,
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def _append_row(self, row: dict[str, float]) -> None:
        if self._csv_file is None:
            self._csv_file = (self.run_dir / METRICS_FILE).open("w", newline="")
            self._csv = csv.DictWriter(self._csv_file, fieldnames=self._columns)
            self._csv.writeheader()
        self._csv.writerow(row)
        self._csv_file.flush()

    def _save(self, name: str) -> Path:
        path = self.run_dir / name
        save_model(
            self.model,
            path,
            self.corpus.vocab,
            self.corpus.tokenizer.config(),
            extra={
                "agent": self.agent,
                "tokens": self.tokens,
                "eval_context_length": self.eval_context_length,
                "train_args": self.args.to_dict(),
                "metrics": self.last_metrics,
            },
        )
        return path

    def _write_summary(self, status: str) -> None:
        _write_json(
            self.run_dir / SUMMARY_FILE,
            {
                "status": status,
                "tokens": self.tokens,
                "seconds": round(time.perf_counter() - self._start, 3),
                "final": self.last_metrics,
                "best_top1": self.best_top1 if self._last_eval_tokens is not None else None,
            },
        )

    def _plot(self) -> None:
        if self._last_eval_tokens is not None:
            plot_runs([self.run_dir], self.run_dir / CURVE_FILE, metric="top1")
