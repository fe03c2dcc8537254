"""The ``irlm`` command line end to end, each subcommand in a subprocess on a tiny budget."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import pytest

from irlm_agents.cli import main
from irlm_agents.train_command import AGENTS
from irlm_agents.lm.checkpoints import load_model, save_model

#: A model and budget small enough that a whole `irlm train` takes seconds.
TINY = ["--corpus", "grammar", "--embedding-dim", "16", "--hidden-size", "32", "--context-length", "4",
        "--n-envs", "16", "--eval-tokens", "1000", "--device", "cpu"]


def irlm(*args: str, cwd: Path | None = None, timeout: float = 120, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "irlm_agents.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=environment)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    assert matplotlib.image.imread(path).shape[0] > 100


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """In-process run of the command line (cheap: no new interpreter importing torch)."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "ppo-run"
    result = irlm("train", "ppo", *TINY, "--total-tokens", "2048", "--eval-every", "1024",
                  "--n-steps", "16", "--run-dir", str(folder))
    assert result.returncode == 0, result.stderr
    assert f"run saved to {folder}" in result.stdout
    # The progress bar (stderr) shows live validation accuracy and the rollouts' reward.
    assert "val_top1=" in result.stderr and "reward=" in result.stderr
    return folder


def test_train_writes_a_run_directory(run_dir: Path) -> None:
    for name in ("config.json", "metrics.csv", "best.irlm", "best-perplexity.irlm", "final.irlm", "curve.png",
                 "summary.json"):
        assert (run_dir / name).is_file(), name
    assert list(run_dir.glob("events.out.tfevents.*"))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["agent"] == "ppo" and config["args"]["hidden_size"] == 32 and config["args"]["n_steps"] == 16
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("tokens,seconds,top1,top5,perplexity,reward") and len(rows) == 4
    assert_png(run_dir / "curve.png")


def test_a2c_trains_too(tmp_path: Path) -> None:
    result = irlm("train", "a2c", *TINY, "--total-tokens", "512", "--no-progress", "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r" / "final.irlm").is_file()


def test_eval_json_and_table(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = irlm("eval", str(run_dir), "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["split"] == "validation" and metrics["checkpoint"].endswith("final.irlm")
    assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0
    assert 1.0 <= metrics["perplexity"] < 1000 and 0.0 <= metrics["reward"] <= 1.0
    assert metrics["tokens"] > 1000
    # The run's own final evaluation scored the same model in the same way.
    logged = json.loads((run_dir / "summary.json").read_text())["final"]
    code, out, _ = run_main(capsys, "eval", str(run_dir / "final.irlm"), "--json", "--max-tokens", "1000")
    assert code == 0 and json.loads(out)["top1"] == pytest.approx(logged["top1"])
    code, out, err = run_main(capsys, "eval", str(run_dir), "--checkpoint", "best", "--split", "test")
    assert code == 0, err
    assert "top1" in out and "perplexity" in out and "free_top1" in out and "known_perplexity" in out
    code, out, err = run_main(capsys, "eval", str(run_dir), "--checkpoint", "best-perplexity", "--json",
                              "--max-tokens", "1000")
    assert code == 0, err
    lowest = min(float(row["perplexity"]) for row in csv.DictReader((run_dir / "metrics.csv").open()))
    assert json.loads(out)["checkpoint"].endswith("best-perplexity.irlm")
    assert json.loads(out)["perplexity"] == pytest.approx(lowest, rel=1e-4)
    # Blocks of one token read nothing of the model's own: free-running top-1 is top-1.
    code, out, _ = run_main(capsys, "eval", str(run_dir), "--json", "--max-tokens", "1000", "--horizon", "1")
    assert code == 0 and json.loads(out)["free_top1"] == json.loads(out)["top1"]


def test_generate_is_seeded(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("generate", str(run_dir / "final.irlm"), "--prompt", "the", "--seed", "3", "--top-k", "5")
    result = irlm(*args)
    assert result.returncode == 0, result.stderr
    # Something is generated after the prompt (the word tokenizer glues punctuation on: "the.").
    assert result.stdout.startswith("the") and len(result.stdout.strip()) > len("the")
    assert run_main(capsys, *args)[1] == result.stdout
    code, greedy, _ = run_main(capsys, "generate", str(run_dir), "--prompt", "the", "--temperature", "0",
                               "--max-tokens", "5")
    # Greedy may end the line at once (end of line is a token like any other); never past 5 tokens.
    assert code == 0 and greedy.startswith("the") and len(greedy.split()) <= 6
    # --checkpoint picks a run's file as in eval: the same output as naming that file
    picked = run_main(capsys, "generate", str(run_dir), "--checkpoint", "best-perplexity", "--prompt", "the", "--seed", "3")
    named = run_main(capsys, "generate", str(run_dir / "best-perplexity.irlm"), "--prompt", "the", "--seed", "3")
    assert picked[0] == 0 and picked[1] == named[1]
    refused = run_main(capsys, "generate", str(run_dir / "final.irlm"), "--checkpoint", "best", "--prompt", "the")
    assert refused[0] != 0 and "is a checkpoint file, and --checkpoint best picks a file" in refused[2]


def test_plot_several_runs(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "compare.png"
    result = irlm("plot", str(run_dir), str(run_dir), "-o", str(out), "--metric", "perplexity",
                  "--label", "first", "--label", "second")
    assert result.returncode == 0, result.stderr
    assert_png(out)


def test_listings_name_their_plugins() -> None:
    corpora = json.loads(irlm("corpora", "--json").stdout)
    assert {"pydocs", "grammar", "text"} <= {row["name"] for row in corpora}
    assert all(row["plugin"] and row["version"] for row in corpora)
    rewards = json.loads(irlm("rewards", "--json").stdout)
    assert "exact" in {row["name"] for row in rewards}
    plugins = json.loads(irlm("plugins", "--json").stdout)
    builtins = [row for row in plugins if row["kind"] == "builtin"]
    assert builtins and all(row["error"] is None and row["version"] for row in builtins)
    assert any("corpus grammar" in row["provides"] for row in plugins)
    table = irlm("plugins", env={"COLUMNS": "60"})
    assert table.returncode == 0 and "builtin" in table.stdout
    # piped (not a terminal), nothing is cut short, however narrow COLUMNS says the screen is
    assert "irlm_env.corpora.builtin" in table.stdout and "corpus pydocs, corpus grammar, corpus text" in table.stdout


def test_broken_plugin_is_listed_with_its_error(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "irlm_broken-1.2.3.dist-info").mkdir(parents=True)
    (site / "irlm_broken-1.2.3.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: irlm-broken\nVersion: 1.2.3\n")
    (site / "irlm_broken-1.2.3.dist-info" / "entry_points.txt").write_text("[irlm_env]\nbroken = irlm_broken\n")
    (site / "irlm_broken.py").write_text("raise RuntimeError('this plugin is broken on purpose')\n")
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    result = irlm("plugins", "--json", env={"PYTHONPATH": path})
    assert result.returncode == 0, result.stderr
    broken = [row for row in json.loads(result.stdout) if row["name"] == "broken"]
    assert broken and "broken on purpose" in broken[0]["error"] and broken[0]["version"] == "1.2.3"
    # Listing corpora still works, the broken plugin only costs a warning.
    assert irlm("corpora", env={"PYTHONPATH": path}).returncode == 0


def test_corpus_stats(tmp_path: Path) -> None:
    result = irlm("corpus-stats", "grammar", "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["vocab_size"] > 10 and set(stats["splits"]) == {"train", "validation", "test"}
    for row in stats["splits"].values():
        assert row["tokens"] > 1000 and row["oov_rate"] == 0.0
        oracles = [row[f"oracle@{k}"] for k in range(1, 5)]
        # Longer contexts refine the partition, so the same-split oracle never gets worse.
        assert oracles == sorted(oracles) and 0.0 < oracles[0] <= 1.0
    # On the large train split the 1-token oracle is close to the grammar's exact best accuracy.
    assert stats["splits"]["train"]["oracle@1"] == pytest.approx(stats["best_accuracy"], abs=0.02)
    text = tmp_path / "notes.txt"
    text.write_text("\n".join(f"line {i} says hello world" for i in range(60)))
    table = irlm("corpus-stats", "text", "--corpus-option", f"path={text}", "--max-vocab", "20")
    assert table.returncode == 0, table.stderr
    assert "oracle@4" in table.stdout and "validation" in table.stdout
    every_word = irlm("corpus-stats", "text", "--corpus-option", f"path={text}", "--max-vocab", "none", "--json")
    assert every_word.returncode == 0, every_word.stderr
    assert json.loads(every_word.stdout)["vocab_size"] > json.loads(irlm(
        "corpus-stats", "text", "--corpus-option", f"path={text}", "--max-vocab", "5", "--json").stdout)["vocab_size"]


def test_option_values_reach_the_factory_as_typed(tmp_path: Path) -> None:
    """A text corpus's path that looks like a number stays a path; the factory's annotations convert."""
    (tmp_path / "2024").write_text("\n".join(f"line {i} of the year" for i in range(30)))
    result = irlm("corpus-stats", "text", "--corpus-option", "path=2024", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["splits"]["train"]["tokens"] > 0


def test_eval_names_a_reward_it_cannot_rebuild_and_takes_another(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = load_model(run_dir / "final.irlm")
    gone = tmp_path / "gone.irlm"
    save_model(checkpoint.model, gone, checkpoint.vocab, checkpoint.tokenizer_config, corpus_spec=checkpoint.corpus_spec(),
               extra={**checkpoint.extra, "reward": {"name": "uninstalled", "options": {"credit": 0.5}}})
    code, _, err = run_main(capsys, "eval", str(gone), "--max-tokens", "200")
    assert code == 1 and "was trained with reward 'uninstalled' (options {'credit': 0.5})" in err
    assert "pass --reward exact" in err
    code, out, err = run_main(capsys, "eval", str(gone), "--max-tokens", "200", "--reward", "exact", "--json")
    assert code == 0, err
    assert json.loads(out)["reward"] == json.loads(out)["top1"]
    code, _, err = run_main(capsys, "eval", str(gone), "--reward-option", "credit=1")
    assert code == 1 and "--reward-option needs --reward" in err


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ([], ["train"], ["train", "ppo"], ["eval"], ["generate"], ["plot"], ["corpora"],
                    ["rewards"], ["plugins"], ["corpus-stats"]):
        code, out, err = run_main(capsys, *command, "--help")
        assert code == 0, (command, err)
        assert "Examples:" in out, command
    _, train_help, _ = run_main(capsys, "train", "ppo", "--help")
    for option in ("--corpus-option KEY=VALUE", "--n-steps", "--clip-range", "--hidden-size", "--seed",
                   "--progress / --no-progress"):
        assert option in train_help, option


def test_bad_input_in_a_subprocess(tmp_path: Path) -> None:
    assert_one_line_error(irlm("train", "ppo", *TINY, "--corpus", "grammr"), "unknown corpus 'grammr'",
                          "did you mean 'grammar'")


def test_bad_input_is_one_clear_line(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def check(args: list[str], *fragments: str) -> None:
        code, _, err = run_main(capsys, *args)
        assert_one_line_error(subprocess.CompletedProcess(args, code, "", err), *fragments)

    check(["train", "ppo", *TINY, "--reward", "exactt", "--run-dir", str(tmp_path / "x")],
          "unknown reward 'exactt'", "did you mean 'exact'")
    check(["train", "ppo", *TINY, "--device", "tpu"], "tpu")
    check(["eval", str(run_dir), "--device", "cuda:7"], "cuda:7")
    check(["eval", str(tmp_path / "missing.irlm")], "missing.irlm", "no such")
    check(["eval", str(run_dir / "final.irlm"), "--checkpoint", "best"], "is a checkpoint file",
          "--checkpoint best picks a file inside a run directory", f"pass the run directory ({run_dir})")
    check(["generate", str(tmp_path), "--prompt", "x"], "no final.irlm")
    check(["eval", str(run_dir), "--corpus-option", "seed=7", "--corpus-option", "n_sentences=300"],
          "different vocabulary")
    check(["train", "ppx"], "unknown agent 'ppx'", "did you mean 'ppo'")
    check(["train", "ppo", "--corpus-option", "novalue"], "KEY=VALUE")
    check(["train", "ppo", "--total-tokens", "-5"], "--total-tokens must be a positive integer")
    check(["plot", str(run_dir), "--metric", "top2"], "no metric 'top2'")
    check(["train", "ppo", *TINY, "--run-dir", str(run_dir)], "already holds a run")
    check(["corpus-stats", "nope"], "unknown corpus 'nope'")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a run")
    check(["train", "ppo", *TINY, "--run-dir", str(a_file)], str(a_file), "is a file", "--run-dir")
    check(["train", "ppo", *TINY, "--total-tokens", "512", "--run-dir", str(a_file / "run")],
          str(a_file / "run"), "cannot create run directory", "--run-dir")
    assert not list(run_dir.glob("*.tmp"))
    # Out-of-range seeds, NaN options and SB3 settings the algorithm cannot use, before any run starts.
    unused = tmp_path / "never"
    for args, fragments in [
        (["--seed", "-1"], ("seed must be an integer from 0 to 4294967295, got -1",)),
        (["--seed", "4294967296"], ("seed must be an integer from 0 to 4294967295",)),
        (["--ent-coef", "nan"], ("--ent-coef must be a finite number, got nan",)),
        (["--n-epochs", "0"], ("--n-epochs must be a positive integer, got 0",)),
        (["--batch-size", "1"], ("--batch-size must be an integer >= 2, got 1",)),
        (["--gamma", "2"], ("gamma must be in [0, 1], got 2.0",)),
        (["--clip-range", "-1"], ("--clip-range must be above 0",)),
        (["--n-steps", "1", "--n-envs", "1"], ("--n-steps x --n-envs must be at least 2",)),
        (["--run-dir", ""], ("--run-dir is empty",)),
    ]:
        check(["train", "ppo", *TINY, "--run-dir", str(unused), *args], *fragments)
    check(["train", "a2c", *TINY, "--run-dir", str(unused), "--n-steps", "0"], "--n-steps must be a positive integer")
    # A model option typed next to --init-from is checked against the checkpoint, even at its default.
    check(["train", "supervised", "--corpus", "grammar", "--init-from", str(run_dir / "final.irlm"),
           "--hidden-size", "256", "--run-dir", str(unused)], "--hidden-size 256 (the checkpoint has 32)")
    check(["train", "recurrent-ppo", "--corpus", "grammar", "--run-dir", str(unused), "--batch-size", "0"],
          "--batch-size must be an integer >= 2")
    check(["train", "group", "--corpus", "grammar", "--run-dir", str(unused), "--miss-weight", "nan"],
          "--miss-weight must be a finite number")
    assert not unused.exists()
    check(["generate", str(run_dir), "--prompt", "the", "--temperature", "nan"], "temperature must be a finite number")
    check(["generate", str(run_dir), "--prompt", "the", "--seed", "99999999999999999999"], "--seed")
    garbled = tmp_path / "garbled"
    garbled.mkdir()
    (garbled / "metrics.csv").write_bytes(b"garbage\x00\xff\n1,2\n")
    check(["plot", str(garbled), "-o", str(tmp_path / "g.png")], "malformed or cut short (UnicodeDecodeError", "a run written by `irlm train`")


def test_errors_name_the_options_a_user_typed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The agents' checks serve the Python API too and name fields as Python does (``k_early``,
    ``feed='action'``); on the command line the error names the options ``--help`` lists."""
    unused = tmp_path / "never"
    for args, fragment in [
        (["--k-early", "5"], "needs both --k-early (candidates early on) and --early-tokens (for how"),
        (["--feed-probability", "0.5"], "--feed-probability=0.5 only applies to fed actions; pass --feed action with it"),
        (["--trust-memory"], "--trust-memory trusts the answer memory's known answers: set --memory-context"),
        (["--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
    ]:
        code, _, err = run_main(capsys, "train", "group", "--corpus", "grammar", "--run-dir", str(unused), *args)
        assert_one_line_error(subprocess.CompletedProcess(args, code, "", err), fragment)
    # The env's own keyword for an agent setting (mode= is --episode-mode).
    short = tmp_path / "short.txt"
    short.write_text("a b c d e f g h i j\n" * 30)
    code, _, err = run_main(capsys, "train", "supervised", "--corpus", "text", "--corpus-option", f"path={short}",
                            "--run-dir", str(unused))
    assert_one_line_error(subprocess.CompletedProcess([], code, "", err),
                          "use a smaller --episode-length, --episode-mode line or a longer text")
    assert not unused.exists()
    # Only a whole name is an option: inside a path or a longer word it stays as written.
    from irlm_agents.group import Args
    from irlm_agents.train_command import dataclass_options, option_names

    message = ("run_dir is empty; /tmp/run_dir/x, C:\\runs\\run_dir, my_run_dir.txt, run_dir.log, 'k_early', "
               "{'eval_tokens': 3} and a plugin's option seed='x' or option run_dir=1 stay, run_dir.")
    assert option_names(message, dataclass_options(Args)) == message.replace("run_dir is", "--run-dir is").replace(
        "stay, run_dir.", "stay, --run-dir.")


def test_bare_commands_print_their_help_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    for args in ([], ["train"]):
        _, out, err = run_main(capsys, *args)
        assert (out + err).startswith(f"Usage: irlm {' '.join(args)}".rstrip() + " [OPTIONS]")
        assert "Error" not in out + err


def test_generate_takes_any_small_temperature_and_warns_of_unknown_words(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, greedy, _ = run_main(capsys, "generate", str(run_dir), "--prompt", "the", "--temperature", "0")
    assert code == 0
    for tiny in ("1e-40", "1e-300"):  # logits / 1e-40 overflowed to inf - inf = nan before
        code, out, err = run_main(capsys, "generate", str(run_dir), "--prompt", "the", "--temperature", tiny)
        assert (code, out, err) == (0, greedy, "")
    code, out, err = run_main(capsys, "generate", str(run_dir), "--prompt", "the zzqx", "--temperature", "0")
    assert code == 0 and out.startswith("the zzqx")
    assert err == "Warning: prompt token(s) not in the model's vocabulary, read as <unk>: zzqx\n"


def test_eval_explains_a_training_corpus_that_cannot_be_rebuilt(tmp_path: Path) -> None:
    text = tmp_path / "work" / "c" / "notes.txt"
    text.parent.mkdir(parents=True)
    words = ["the", "cat", "dog", "sat", "ran", "on", "mat", "a"]
    text.write_text("\n".join(" ".join(words[(i * 7 + j * 3) % 8] for j in range(8)) for i in range(400)) + "\n")
    run = tmp_path / "work" / "run"
    trained = irlm("train", "group", "--corpus", "text", "--corpus-option", "path=c/notes.txt", "--embedding-dim", "8",
                   "--hidden-size", "8", "--n-envs", "4", "--total-tokens", "256", "--eval-every", "256",
                   "--eval-tokens", "200", "--episode-mode", "line", "--no-progress", "--run-dir", "run",
                   cwd=tmp_path / "work")
    assert trained.returncode == 0, trained.stderr
    assert_one_line_error(irlm("eval", str(run), cwd=tmp_path), "'path': 'c/notes.txt'", "cannot be rebuilt",
                          "relative path is read from the current folder", "--corpus-option")
    original = text.read_text()
    lines = original.splitlines()
    text.write_text("\n".join(lines[:-40] + lines[-40:][::-1]) + "\n")  # the same words, in another order
    assert_one_line_error(irlm("eval", str(run), cwd=tmp_path / "work"), "holds other text than at training",
                          "with the same vocabulary", "its text has changed since training")
    text.write_text(original.replace("cat", "tiger"))
    assert_one_line_error(irlm("eval", str(run), cwd=tmp_path / "work"), "has another vocabulary",
                          "its text has changed since training")


#: Supervised settings as small as TINY; the native agents take no --context-length.
TINY_NATIVE = ["--corpus", "grammar", "--embedding-dim", "16", "--hidden-size", "32", "--n-envs", "16",
               "--eval-tokens", "1000", "--device", "cpu"]


@pytest.mark.parametrize(
    "agent, options, stop, status",
    [
        ("ppo", TINY, signal.SIGINT, 130),
        ("ppo", TINY, signal.SIGTERM, 143),
        ("supervised", TINY_NATIVE, signal.SIGTERM, 143),
    ],
)
def test_ctrl_c_and_sigterm_save_and_exit_cleanly(
    tmp_path: Path, agent: str, options: list[str], stop: signal.Signals, status: int
) -> None:
    """``kill``, ``docker stop`` and preemption send SIGTERM: it saves like Ctrl-C, then exits 143."""
    folder = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "irlm_agents.cli", "train", agent, *options, "--total-tokens", "10000000",
         "--eval-every", "5000000", "--run-dir", str(folder), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        # metrics.csv appears with the evaluation before the first update; then let it train a bit.
        while not (folder / "metrics.csv").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        time.sleep(2)
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"Interrupted: training stopped by {stop.name} after"), last
    assert str(folder / "final.irlm") in last
    checkpoint = load_model(folder / "final.irlm")
    assert checkpoint.extra["tokens"] > 0 and checkpoint.extra["agent"] == agent
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["tokens"] == checkpoint.extra["tokens"]
    assert_png(folder / "curve.png")
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_every_agent_module_gives_the_one_line_error(agent: str) -> None:
    """``python -m irlm_agents.<agent>`` goes through the same entry as ``irlm train``."""
    result = subprocess.run([sys.executable, "-m", AGENTS[agent], "--total-tokens", "0"],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert_one_line_error(result, "--total-tokens must be a positive integer")


def test_agent_module_takes_the_same_options(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m irlm_agents.ppo ARGS`` is ``irlm train ppo ARGS``."""
    from irlm_agents.cli import run_agent

    monkeypatch.setattr(sys, "argv", ["irlm_agents.ppo", "--help"])
    run_agent("ppo")
    assert "--clip-range" in capsys.readouterr().out
