"""The run directory every agent writes, and the progress bar the user watches.

One place decides what a run leaves behind, so runs of different agents can be compared with the
same tools (``irlm eval``, ``irlm plot``, TensorBoard)::

    runs/ppo-20260101-120000/
        config.json      arguments, model sizes, corpus and vocabulary identity
        metrics.csv      one row per validation evaluation (tokens, seconds, top1, top5, ...)
        events.out.*     TensorBoard scalars (validation metrics and training statistics)
        best.irlm        checkpoint with the best validation top-1 so far
        best-perplexity.irlm   checkpoint with the lowest validation perplexity so far
        final.irlm       checkpoint at the end of training (or when interrupted)
        curve.png        validation top-1 against training tokens
        summary.json     final metrics and whether the run completed or was interrupted

The directory records; it does not score. An agent scores its model with
:func:`irlm_agents.lm.evaluation.evaluate` and hands the figures over::

    with RunDirectory("ppo", args, corpus, model, eval_context_length=args.context_length) as run:
        run.record(0, evaluate(model, corpus, ...))
        ...                          # training; run.advance(tokens, accuracy=..., reward=...)
        run.record(tokens, evaluate(model, corpus, ...))   # every args.eval_every tokens, and last
        metrics = run.finish(tokens)                       # final.irlm, summary, curve

Ctrl-C and SIGTERM (``kill``, ``docker stop``, Kubernetes or Slurm preemption, torchrun
stopping its workers) inside the ``with`` block stop training the same way: ``final.irlm``,
``summary.json`` and the curve are saved and ``TrainingInterrupted`` is raised, which the command
line turns into a one-line message and exit status 130 or 143. While the directory is open it
handles both signals (main thread only, where Python delivers them; the previous handlers come
back when it closes). The handler only notes the request; the stop is raised at the next safe
point, the next :meth:`RunDirectory.advance` or :meth:`RunDirectory.record` (or
:meth:`RunDirectory.check_stop`, which the SB3 callback calls every env step). Raised at an
arbitrary point, as Python's own Ctrl-C is, it could land inside a lock held with TensorBoard's
writer thread and hang the save. A second signal acts at once (Ctrl-C: ``KeyboardInterrupt``;
SIGTERM: the process ends); the atomic writes leave the previous checkpoint intact.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import signal
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

import irlm_env
from irlm_agents.lm.checkpoints import save_model
from irlm_agents.lm.model import RNNLanguageModel
from irlm_agents.runs.args import TrainArgs
from irlm_agents.runs.plotting import CONFIG_FILE, METRICS_FILE, plot_runs
from irlm_env.corpus import Corpus
from irlm_env.errors import IrlmError
from irlm_env.fileio import atomic_write_bytes

BEST_CHECKPOINT = "best.irlm"
BEST_PERPLEXITY_CHECKPOINT = "best-perplexity.irlm"
FINAL_CHECKPOINT = "final.irlm"
CURVE_FILE = "curve.png"
SUMMARY_FILE = "summary.json"
#: TensorBoard's event files, as SummaryWriter names them.
EVENTS_GLOB = "events.out.tfevents.*"
#: What marks a folder as holding a run: a new run refuses it, and one that failed before training
#: a token removes them (a run that gets as far as final.irlm has trained).
RUN_FILES = (METRICS_FILE, CONFIG_FILE, BEST_CHECKPOINT, BEST_PERPLEXITY_CHECKPOINT, FINAL_CHECKPOINT)
METRIC_COLUMNS = ("top1", "top5", "perplexity", "reward", "free_top1")
COLUMNS = ("tokens", "seconds", *METRIC_COLUMNS)


#: Signals that stop a run gracefully; a shell reports such an exit as 128 + the signal number.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, raised at a safe point of the loop so that training unwinds cleanly."""

    def __init__(self, stopped_by: signal.Signals) -> None:
        super().__init__(stopped_by.name)
        self.signal = stopped_by


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during training, after the model was saved; carries where it went.

    ``signal`` is the signal that stopped training; a shell reports such an exit as 128 + it.
    """

    def __init__(self, run_dir: Path, checkpoint: Path, tokens: int, stopped_by: signal.Signals) -> None:
        super().__init__(f"training stopped by {stopped_by.name} after {tokens:,} tokens; model saved to {checkpoint}")
        self.run_dir = run_dir
        self.checkpoint = checkpoint
        self.tokens = tokens
        self.signal = stopped_by




def default_run_dir(agent: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{agent}-{stamp}"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


class RunDirectory:
    """One training run's folder and progress bar; a context manager around the training loop.

    ``eval_context_length`` is how the model is scored: the SB3 agents' policy sees a window of
    ``context_length`` tokens, so they pass it; the recurrent native agents pass ``None`` (hidden
    state carried over the split). It is stored with the checkpoints so that ``irlm eval
    --max-tokens EVAL_TOKENS`` reproduces the numbers recorded here (without ``--max-tokens`` it
    scores the whole split).
    """

    def __init__(
        self,
        agent: str,
        args: TrainArgs,
        corpus: Corpus,
        model: RNNLanguageModel,
        *,
        eval_context_length: int | None,
    ) -> None:
        self.agent = agent
        self.args = args
        self.corpus = corpus
        self.model = model
        self.eval_context_length = eval_context_length
        self._named = args.run_dir is not None
        self.path = Path(args.run_dir).expanduser() if self._named else default_run_dir(agent)
        if self.path.exists() and not self.path.is_dir():
            raise IrlmError(f"--run-dir {str(self.path)!r} is a file, not a directory; choose another --run-dir")
        if self._named and self._holds_a_run():
            raise self._taken()
        self.tokens = 0
        self.best_top1: float | None = None
        self.best_perplexity: float | None = None
        self.last_metrics: dict[str, float] = {}
        self.metrics_tokens = 0  # when last_metrics were measured; an interrupt saves the model later
        self._csv_file: IO[str] | None = None
        self._csv: csv.DictWriter[str]
        self._writer: SummaryWriter | None = None
        self._bar: tqdm | None = None
        self._postfix: dict[str, str] = {}
        self._start = time.perf_counter()
        self._previous_handlers: dict[signal.Signals, Any] = {}
        self._events_before: set[Path] = set()
        self._stop: signal.Signals | None = None

    def _holds_a_run(self) -> bool:
        # config.json too: a run killed before its first evaluation left no metrics.csv before
        # metrics.csv was created at the start. And the checkpoints, which a run would overwrite.
        return any((self.path / name).exists() for name in RUN_FILES)

    def _taken(self) -> IrlmError:
        return IrlmError(f"{self.path} already holds a run; choose another --run-dir or delete it")

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> RunDirectory:
        self._claim()
        try:
            self._open()
        except BaseException:
            self._close()
            self._release()
            raise
        return self

    def _open(self) -> None:
        _write_json(self.path / CONFIG_FILE, self._config())
        self._writer = SummaryWriter(log_dir=str(self.path))
        self._bar = tqdm(
            total=self.args.total_tokens,
            unit="tok",
            unit_scale=True,
            desc=self.agent,
            disable=not self.args.progress,
            dynamic_ncols=True,
        )
        self._start = time.perf_counter()
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                previous = signal.signal(signum, self._request_stop)
                # None: the previous handler was not set from Python; the default is the best restore.
                self._previous_handlers[signum] = signal.SIG_DFL if previous is None else previous

    def _release(self) -> None:
        """Remove what this run wrote, when it failed before training a token.

        The folder was claimed at the start, and a claimed folder is refused: without this, the
        same command could not be run again after, say, a reward error at the first evaluation or
        at the first update, though the run left nothing worth keeping (at most the untrained
        model and its figures). Files it did not write stay.
        """
        try:
            for path in [*(self.path / name for name in RUN_FILES),
                         *(set(self.path.glob(EVENTS_GLOB)) - self._events_before)]:
                path.unlink(missing_ok=True)
            self.path.rmdir()  # only if now empty
        except OSError:  # what is left is refused as a run; the error being raised matters more
            pass

    def _claim(self) -> None:
        """Create metrics.csv exclusively, so that of two runs started at once in one folder one gets it.

        Without ``--run-dir`` the folder's name is stamped to the second, so runs of a sweep
        started together would share it: the later ones get ``-2``, ``-3``, ... instead.
        """
        base = self.path
        for attempt in itertools.count(2):
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                if self._named or not self._holds_a_run():
                    self._csv_file = (self.path / METRICS_FILE).open("x", newline="")
                    # Before this run writes any: _release must tell its event files from earlier ones.
                    self._events_before = set(self.path.glob(EVENTS_GLOB))
                    break
            except FileExistsError:
                if self._named:
                    raise self._taken() from None
            except OSError as error:
                raise IrlmError(
                    f"cannot create run directory {str(self.path)!r} ({error.strerror or error}); "
                    "choose a --run-dir in a folder you can write to"
                ) from None
            self.path = base.with_name(f"{base.name}-{attempt}")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=COLUMNS)
        self._csv.writeheader()
        self._csv_file.flush()

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Note the stop for :meth:`check_stop`; a second signal gets the previous handler."""
        self._stop = signal.Signals(signum)
        signal.signal(signum, self._previous_handlers[self._stop])

    def check_stop(self) -> None:
        """Raise ``StopRequested`` if Ctrl-C or SIGTERM arrived since the directory opened."""
        if self._stop is not None:
            raise StopRequested(self._stop)

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
                stopped_by = exc.signal if isinstance(exc, StopRequested) else signal.SIGINT
                raise TrainingInterrupted(self.path, checkpoint, self.tokens, stopped_by) from exc
        finally:
            for signum, previous in self._previous_handlers.items():
                signal.signal(signum, previous)
            self._previous_handlers.clear()
            self._close()
            if exc is not None and not isinstance(exc, KeyboardInterrupt) and not self.tokens:
                self._release()

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
        self.log_scalars("train", tokens, live)
        if self._bar is not None:
            self._bar.n = min(tokens, self.args.total_tokens)
            self._bar.set_postfix(self._postfix, refresh=True)
        self.check_stop()

    def log_scalars(self, section: str, tokens: int, scalars: Mapping[str, float]) -> None:
        """TensorBoard only: ``section/name`` for each scalar (training diagnostics, peers)."""
        if self._writer is not None:
            for name, value in scalars.items():
                self._writer.add_scalar(f"{section}/{name}", value, tokens)

    def record(self, tokens: int, scores: Mapping[str, float]) -> dict[str, float]:
        """Record validation ``scores`` at ``tokens``: a metrics row, TensorBoard, best checkpoint."""
        metrics = {name: float(scores[name]) for name in METRIC_COLUMNS}
        row = {"tokens": tokens, "seconds": round(time.perf_counter() - self._start, 3), **metrics}
        self._append_row(row)
        self.log_scalars("validation", tokens, metrics)
        if self._writer is not None:
            self._writer.flush()
        self.tokens = tokens
        self.last_metrics = metrics
        self.metrics_tokens = tokens
        if self.best_top1 is None or metrics["top1"] > self.best_top1:
            self.best_top1 = metrics["top1"]
            self._save(BEST_CHECKPOINT)
        # Top-1 and perplexity pick different checkpoints: a model's argmax can still improve
        # while its distribution grows overconfident. A language model is chosen by perplexity.
        perplexity = metrics["perplexity"]
        if math.isfinite(perplexity) and (self.best_perplexity is None or perplexity < self.best_perplexity):
            self.best_perplexity = perplexity
            self._save(BEST_PERPLEXITY_CHECKPOINT)
        self._postfix["val_top1"] = f"{metrics['top1']:.3f}"
        self._postfix["val_reward"] = f"{metrics['reward']:.3f}"
        if self._bar is not None:
            self._bar.set_postfix(self._postfix, refresh=True)
        self.check_stop()
        return metrics

    def finish(self, tokens: int) -> dict[str, float]:
        """Final checkpoint, curve and summary; returns the last recorded validation metrics."""
        self.tokens = tokens
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
            "args": self.args.recorded(self.model.config),
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
            raise RuntimeError("RunDirectory.record outside its with block")
        self._csv.writerow(row)
        self._csv_file.flush()

    def _save(self, name: str) -> Path:
        path = self.path / name
        recorded = self.args.recorded(self.model.config)
        save_model(
            self.model,
            path,
            self.corpus.vocab,
            self.corpus.tokenizer.config(),
            extra={
                "agent": self.agent,
                "tokens": self.tokens,
                "eval_context_length": self.eval_context_length,
                "reward": {"name": self.args.reward, "options": recorded["reward_options"]},
                "train_args": recorded,
                "metrics": self.last_metrics,
                "metrics_tokens": self.metrics_tokens,
                "corpus_source_hash": self.corpus.source_hash,
            },
            corpus_spec=self.corpus.spec,
        )
        return path

    def _write_summary(self, status: str) -> None:
        _write_json(
            self.path / SUMMARY_FILE,
            {
                "status": status,
                "tokens": self.tokens,
                "seconds": round(time.perf_counter() - self._start, 3),
                "final": self.last_metrics,
                # the tokens "final" was measured at: after an interrupt, before the model was saved
                "final_at_tokens": self.metrics_tokens,
                "best_top1": self.best_top1,
                "best_perplexity": self.best_perplexity,
            },
        )

    def _plot(self) -> None:
        if self.last_metrics:
            plot_runs([self.path], self.path / CURVE_FILE, metric="top1")
