"""The run directory, its Ctrl-C behaviour, and the learning-curve plots."""

from __future__ import annotations

import csv
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import matplotlib.image
import pytest

from irlm_agents.runs.args import TrainArgs, build_model, load_corpus_for
from irlm_agents.runs.plotting import PlotWarning, plot_runs, read_metrics
from irlm_agents.runs import run_dir as run_dir_module
from irlm_agents.runs.run_dir import RunDirectory, TrainingInterrupted
from irlm_agents.lm.checkpoints import load_model
from irlm_agents.lm.evaluation import evaluate
from irlm_env import hookimpl, plugins
from irlm_env.errors import IrlmError


def tiny_args(run_dir: Path, **overrides: object) -> TrainArgs:
    settings: dict[str, object] = dict(
        corpus="grammar", embedding_dim=8, hidden_size=16, total_tokens=300, eval_every=100,
        eval_tokens=500, run_dir=str(run_dir), progress=False,
    )
    settings.update(overrides)
    return TrainArgs(**settings)  # type: ignore[arg-type]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5_000
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100


def run_once(run_dir: Path) -> tuple[RunDirectory, dict[str, float]]:
    args = tiny_args(run_dir)
    corpus = load_corpus_for(args)
    model = build_model(args, corpus)
    with RunDirectory("unit", args, corpus, model, eval_context_length=4) as run:
        run.record(0, evaluate(model, corpus, context_length=4, max_tokens=args.eval_tokens))
        run.advance(100, accuracy=0.5, reward=0.5)
        run.record(100, evaluate(model, corpus, context_length=4, max_tokens=args.eval_tokens))
        run.record(200, evaluate(model, corpus, context_length=4, max_tokens=args.eval_tokens))
        metrics = run.finish(200)
    return run, metrics


def test_run_directory_contents(tmp_path: Path) -> None:
    run, metrics = run_once(tmp_path / "run")
    folder = run.path
    for name in ("config.json", "metrics.csv", "best.irlm", "best-perplexity.irlm", "final.irlm", "curve.png",
                 "summary.json"):
        assert (folder / name).is_file(), name
    assert list(folder.glob("events.out.tfevents.*")), "TensorBoard events missing"
    with (folder / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(float(r["tokens"])) for r in rows] == [0, 100, 200]
    assert list(rows[0]) == ["tokens", "seconds", "top1", "top5", "perplexity", "reward", "free_top1"]
    for row in rows:
        assert 0.0 <= float(row["top1"]) <= float(row["top5"]) <= 1.0
        assert float(row["perplexity"]) >= 1.0
    config = json.loads((folder / "config.json").read_text())
    assert config["agent"] == "unit"
    assert config["args"]["hidden_size"] == 16
    assert config["eval_context_length"] == 4
    assert config["corpus"]["name"] == "grammar"
    assert config["corpus"]["best_accuracy"] > 0.3
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["final"] == metrics
    assert summary["best_top1"] == max(float(r["top1"]) for r in rows)
    final = load_model(folder / "final.irlm")
    assert final.extra["agent"] == "unit" and final.extra["eval_context_length"] == 4
    assert final.extra["train_args"]["corpus"] == "grammar"
    assert_png(folder / "curve.png")


def test_top1_and_perplexity_each_keep_their_best_checkpoint(tmp_path: Path) -> None:
    """A later validation with better top-1 but worse perplexity moves best.irlm only."""
    args = tiny_args(tmp_path / "run")
    corpus = load_corpus_for(args)
    model = build_model(args, corpus)
    scores = [  # (top1, perplexity) at tokens 0, 100, 200, 300
        (0.10, 50.0), (0.20, 30.0), (0.30, 40.0), (0.25, float("nan")),
    ]
    with RunDirectory("unit", args, corpus, model, eval_context_length=None) as run:
        for step, (top1, perplexity) in enumerate(scores):
            run.record(100 * step, {"top1": top1, "top5": top1, "perplexity": perplexity, "reward": top1,
                                    "free_top1": top1})
        run.finish(300)
    assert load_model(run.path / "best.irlm").extra["tokens"] == 200
    assert load_model(run.path / "best-perplexity.irlm").extra["tokens"] == 100  # NaN never wins
    summary = json.loads((run.path / "summary.json").read_text())
    assert (summary["best_top1"], summary["best_perplexity"]) == (0.30, 30.0)


def test_reward_options_typed_as_text_are_recorded_as_the_reward_takes_them(tmp_path: Path) -> None:
    """`--reward-option scale=0.5` arrives as text; config.json and checkpoints hold 0.5."""

    class Scaled:
        @hookimpl
        def irlm_register_rewards(self, register: Callable[..., None]) -> None:
            def scaled(corpus: object, scale: float = 1.0) -> Callable[..., float]:
                return lambda action, target, context: scale * (action == target)

            register("scaled", scaled)

    plugins.register_plugin(Scaled(), "scaled-plugin")
    try:
        args = tiny_args(tmp_path / "run", reward="scaled", reward_options={"scale": "0.5"})
        corpus = load_corpus_for(args)
        model = build_model(args, corpus)
        assert args.recorded(model.config)["reward_options"] == {"scale": 0.5}
    finally:
        plugins.reset_plugins()


def test_refuses_to_overwrite_a_run(tmp_path: Path) -> None:
    run_once(tmp_path / "run")
    args = tiny_args(tmp_path / "run")
    corpus = load_corpus_for(args)
    with pytest.raises(IrlmError, match="already holds a run"):
        RunDirectory("unit", args, corpus, build_model(args, corpus), eval_context_length=None)


def test_two_runs_started_at_once_never_share_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both pass the constructor's check; entering claims metrics.csv exclusively, so one of them wins."""
    args = tiny_args(tmp_path / "same")
    corpus = load_corpus_for(args)
    first = RunDirectory("unit", args, corpus, build_model(args, corpus), eval_context_length=None)
    second = RunDirectory("unit", args, corpus, build_model(args, corpus), eval_context_length=None)
    with first:
        with pytest.raises(IrlmError, match="already holds a run"):
            second.__enter__()
        first.record(100, {"top1": 0.1, "top5": 0.2, "perplexity": 50.0, "reward": 0.1, "free_top1": 0.1})
    assert read_metrics(tmp_path / "same")["tokens"] == [100.0]
    # Without --run-dir the name is stamped to the second: a sweep's runs get -2, -3, ...
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_dir_module, "default_run_dir", lambda agent: Path("runs") / "unit-stamp")
    unnamed = tiny_args(tmp_path, progress=False)
    unnamed.run_dir = None
    runs = [RunDirectory("unit", unnamed, corpus, build_model(unnamed, corpus), eval_context_length=None) for _ in range(3)]
    for run in runs:
        run.__enter__()
    for run in runs:
        run.__exit__(None, None, None)
    assert [str(run.path) for run in runs] == ["runs/unit-stamp", "runs/unit-stamp-2", "runs/unit-stamp-3"]


def test_a_run_that_fails_before_training_a_token_leaves_its_folder_free(tmp_path: Path) -> None:
    """A claimed folder is refused, so a run that fails before its first update (a reward error
    at the first evaluation, or at the first update) takes back what it wrote, and the same
    command can run again. A user's file stays."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "events.out.tfevents.1.earlier").write_text("an earlier TensorBoard log")
    args = tiny_args(folder)
    corpus = load_corpus_for(args)
    with pytest.raises(RuntimeError, match="reward broke"):
        with RunDirectory("unit", args, corpus, build_model(args, corpus), eval_context_length=None):
            raise RuntimeError("reward broke")
    assert sorted(p.name for p in folder.iterdir()) == ["events.out.tfevents.1.earlier", "notes.txt"]
    # failing while it writes config.json, before its TensorBoard writer exists
    bad = tiny_args(folder, reward_options={"bogus": 1})
    with pytest.raises(IrlmError, match="no option 'bogus'"):
        with RunDirectory("unit", bad, corpus, build_model(bad, corpus), eval_context_length=None):
            pass
    assert sorted(p.name for p in folder.iterdir()) == ["events.out.tfevents.1.earlier", "notes.txt"]
    # failing at the first update, after the untrained model's evaluation and checkpoints
    with pytest.raises(IrlmError, match="reward paid -1"):
        with RunDirectory("unit", args, corpus, build_model(args, corpus), eval_context_length=None) as run:
            run.record(0, {"top1": 0.1, "top5": 0.2, "perplexity": 50.0, "reward": 0.1, "free_top1": 0.1})
            assert (folder / "best.irlm").is_file()
            raise IrlmError("reward paid -1")
    assert sorted(p.name for p in folder.iterdir()) == ["events.out.tfevents.1.earlier", "notes.txt"]
    run, _ = run_once(folder)  # starts: nothing of the failed run is left to refuse it
    assert read_metrics(run.path)["tokens"] == [0.0, 100.0, 200.0]


def test_a_run_that_fails_after_training_keeps_what_it_recorded(tmp_path: Path) -> None:
    args = tiny_args(tmp_path / "run")
    corpus = load_corpus_for(args)
    with pytest.raises(IrlmError, match="reward paid -1"):
        with RunDirectory("unit", args, corpus, build_model(args, corpus), eval_context_length=None) as run:
            run.record(0, {"top1": 0.1, "top5": 0.2, "perplexity": 50.0, "reward": 0.1, "free_top1": 0.1})
            run.advance(35)
            raise IrlmError("reward paid -1")
    assert {"metrics.csv", "config.json", "best.irlm"} <= {p.name for p in (tmp_path / "run").iterdir()}


@pytest.mark.parametrize("left", ["config.json", "best.irlm", "final.irlm"])
def test_a_folder_left_by_a_run_killed_before_its_first_evaluation_is_refused(tmp_path: Path, left: str) -> None:
    """And one holding a checkpoint, which a run would overwrite (and remove, should it fail)."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / left).write_text("{}")
    args = tiny_args(tmp_path / "run")
    corpus = load_corpus_for(args)
    with pytest.raises(IrlmError, match="already holds a run"):
        RunDirectory("unit", args, corpus, build_model(args, corpus), eval_context_length=None)


def test_ctrl_c_saves_the_model_and_says_where(tmp_path: Path) -> None:
    args = tiny_args(tmp_path / "run")
    corpus = load_corpus_for(args)
    model = build_model(args, corpus)
    with pytest.raises(TrainingInterrupted) as caught:
        with RunDirectory("unit", args, corpus, model, eval_context_length=None) as run:
            run.record(100, {"top1": 0.1, "top5": 0.2, "perplexity": 50.0, "reward": 0.1, "free_top1": 0.1})
            run.advance(150)
            raise KeyboardInterrupt
    assert caught.value.checkpoint == tmp_path / "run" / "final.irlm"
    assert caught.value.tokens == 150
    assert "150 tokens" in str(caught.value)
    saved = load_model(caught.value.checkpoint).extra
    assert (saved["tokens"], saved["metrics_tokens"]) == (150, 100)  # the metrics predate the saved model
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["status"], summary["tokens"], summary["final_at_tokens"]) == ("interrupted", 150, 100)
    assert not list((tmp_path / "run").glob("*.tmp")) and not list((tmp_path / "run").glob(".*"))


def test_other_errors_propagate_without_checkpoint(tmp_path: Path) -> None:
    args = tiny_args(tmp_path / "run")
    corpus = load_corpus_for(args)
    with pytest.raises(RuntimeError, match="boom"):
        with RunDirectory("unit", args, corpus, build_model(args, corpus), eval_context_length=None):
            raise RuntimeError("boom")
    assert not (tmp_path / "run" / "final.irlm").exists()


def test_plot_compares_runs(tmp_path: Path) -> None:
    first, _ = run_once(tmp_path / "a")
    second, _ = run_once(tmp_path / "b")
    out = plot_runs([first.path, second.path], tmp_path / "both.png", metric="perplexity",
                    labels=["first", "second"])
    assert_png(out)
    assert read_metrics(first.path)["tokens"] == [0.0, 100.0, 200.0]


def test_plot_errors_are_clear(tmp_path: Path) -> None:
    run, _ = run_once(tmp_path / "a")
    with pytest.raises(IrlmError, match="no metric 'top2'; did you mean"):
        plot_runs([run.path], tmp_path / "x.png", metric="top2")
    with pytest.raises(IrlmError, match="no metrics.csv"):
        plot_runs([tmp_path / "missing"], tmp_path / "x.png")
    with pytest.raises(IrlmError, match="ending in .png"):
        plot_runs([run.path], tmp_path / "x.jpg")
    with pytest.raises(IrlmError, match="one label per run"):
        plot_runs([run.path], tmp_path / "x.png", labels=["a", "b"])
    (run.path / "config.json").write_text('{"corpus": ')  # damaged
    with pytest.raises(IrlmError, match=r"config.json: malformed \(JSONDecodeError"):
        plot_runs([run.path], tmp_path / "x.png")
    header_only = tmp_path / "header"
    header_only.mkdir()
    (header_only / "metrics.csv").write_text("tokens,seconds,top1\n")
    with pytest.raises(IrlmError, match="no evaluations recorded yet"):
        plot_runs([header_only], tmp_path / "x.png")
    (header_only / "metrics.csv").write_text("tokens,seconds,top1\n100,1.5,0.2\n200,3")  # cut short
    with pytest.raises(IrlmError, match="malformed or cut short"):
        plot_runs([header_only], tmp_path / "x.png")
    (header_only / "metrics.csv").write_text("tokens,seconds,perplexity\n100,1.5,inf\n200,3,nan\n")  # diverged
    with pytest.warns(PlotWarning, match="every perplexity value is nan or inf"):
        plot_runs([header_only], tmp_path / "diverged.png", metric="perplexity")
    (tmp_path / "diverged.png").unlink()
    assert not (tmp_path / "x.png").exists()


def _scalar_tags(run_dir: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_native_run_logs_peers_under_validation_and_throughput_at_the_end(tmp_path: Path) -> None:
    from irlm_agents import supervised

    args = supervised.Args(corpus="grammar", embedding_dim=8, hidden_size=16, total_tokens=600, eval_every=10_000,
                           eval_tokens=300, n_envs=4, run_dir=str(tmp_path / "run"), progress=False)
    supervised.train(args)
    tags = _scalar_tags(tmp_path / "run")
    assert "validation/peers/majority_top1" in tags
    assert not [tag for tag in tags if tag.startswith("train/peers")]
    final = max(tags["validation/top1"])
    assert final >= 600 and tags["train/tokens_per_second"] == [final]
    assert tags["train/queries_per_token"] == [final]


def _open(run_dir: Path) -> None:
    args = tiny_args(run_dir)
    corpus = load_corpus_for(args)
    with RunDirectory("unit", args, corpus, build_model(args, corpus), eval_context_length=None):
        pass


def test_run_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    with pytest.raises(IrlmError, match=rf"--run-dir '{target}' is a file, not a directory; choose another --run-dir"):
        _open(target)
    with pytest.raises(IrlmError, match=rf"cannot create run directory '{target / 'run'}' .*choose a --run-dir"):
        _open(target / "run")
    assert target.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_run_dir_in_an_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(IrlmError, match=rf"cannot create run directory '{parent / 'run'}' \(Permission denied\)"):
            _open(parent / "run")
    finally:
        parent.chmod(0o700)


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs, which not even root can write")
def test_run_dir_where_nobody_may_write_is_a_clear_error() -> None:
    with pytest.raises(IrlmError, match=r"cannot create run directory '/sys/irlm-run' .*choose a --run-dir"):
        _open(Path("/sys/irlm-run"))


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_is_raised_at_the_next_safe_point(tmp_path: Path, stop: signal.Signals) -> None:
    """The handler only notes the signal; advance() raises it, and the model is saved."""
    args = tiny_args(tmp_path / "run")
    corpus = load_corpus_for(args)

    def mine(signum: int, frame: object) -> None:
        raise AssertionError("the run's handler should be active")

    previous = {signum: signal.signal(signum, mine) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        with pytest.raises(TrainingInterrupted) as caught:
            with RunDirectory("unit", args, corpus, build_model(args, corpus), eval_context_length=None) as run:
                run.advance(50)
                os.kill(os.getpid(), stop)  # delivered here, in the main thread: nothing raised yet
                run.log_scalars("train", 60, {"loss": 1.0})
                run.advance(120)
                raise AssertionError("advance() should have stopped the run")
        assert caught.value.signal == stop and caught.value.tokens == 120
        assert f"stopped by {stop.name} after 120 tokens" in str(caught.value)
        assert load_model(caught.value.checkpoint).extra["tokens"] == 120
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGINT) is mine
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
