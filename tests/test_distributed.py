"""torchrun data parallelism of the native agents: two processes × 16 streams train exactly the
model one process × 32 streams trains (CPU, gloo), and the processes stop together.

One torchrun launch (tests/distributed_worker.py) trains every configuration in turn, so the
processes start once; the single-process references train here. ``IRLM_TEST_DEVICE=cuda`` runs
the same on two GPUs with NCCL (bench/gpu_check.py does).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from irlm_agents.lm.checkpoints import load_model
from irlm_agents.native.distributed import Share, join
from irlm_env.corpus import load_corpus
from irlm_env.envs.episodes import START_BLOCK
from irlm_env.envs.vector import NextWordVectorEnv
from irlm_env.errors import IrlmError

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")
TOLERANCE = 1e-5
DEVICE = os.environ.get("IRLM_TEST_DEVICE", "cpu")

#: 20 updates of 32 streams × 8 steps; episodes of 50 steps, so streams restart mid-run.
BASE = {
    "corpus": "grammar",
    "corpus_options": {"n_sentences": 3000},  # a small train split keeps the n-gram peers quick
    "n_envs": 32,
    "rollout_steps": 8,
    "episode_length": 50,
    "total_tokens": 20 * 32 * 8,
    "hidden_size": 32,
    "embedding_dim": 16,
    "eval_every": 10**9,
    "eval_tokens": 500,
    "progress": False,
    "device": DEVICE,
    "seed": 3,
}
CONFIGS = [
    {"name": "supervised", "agent": "supervised", "options": BASE},
    # The labels kept are drawn for the global batch, as the sampled tokens are.
    {"name": "supervised-labels", "agent": "supervised", "options": {**BASE, "label_fraction": 0.3}},
    {"name": "reinforce-mean", "agent": "reinforce", "options": {**BASE, "baseline": "mean"}},
    {"name": "reinforce-critic", "agent": "reinforce", "options": {**BASE, "baseline": "critic"}},
    {"name": "group-logexp", "agent": "group", "options": {**BASE, "estimator": "logexp"}},
    {"name": "expected-log_er", "agent": "expected", "options": {**BASE, "objective": "log_er"}},
    # Cross-entropy for 5 updates, then REINFORCE takes over the segment in 10.
    {"name": "mixer", "agent": "mixer", "options": {**BASE, "xe_tokens": 5 * 256, "anneal_tokens": 10 * 256}},
    # The fault the comparison must catch: the second process steps the first one's 16 streams.
    {"name": "same-streams", "agent": "supervised", "options": BASE, "fault": ["same_streams", 1, 0]},
    # Ctrl-C reaching the second process only, before its 5th update: both stop after it.
    {"name": "signal", "agent": "reinforce", "options": BASE, "fault": ["signal", 1, 5]},
    # The second process crashes in its 3rd update; the first must not wait for it (last: the
    # process group does not survive it). Gloo only: NCCL notices a lost peer at its timeout,
    # and there torchrun stops the others when the failing process exits.
    *([{"name": "error", "agent": "supervised", "options": BASE, "fault": ["error", 1, 3]}] if DEVICE == "cpu" else []),
]
COMPARED = CONFIGS[:7]


def _torchrun(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def distributed_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("torchrun")
    (out / "configs.json").write_text(json.dumps(CONFIGS))
    done = _torchrun(str(WORKER), str(out / "configs.json"), str(out), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def single_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the single-process references keep their run directories."""
    return tmp_path_factory.mktemp("single")


@pytest.fixture(scope="module")
def single_runs(single_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The parameters each compared configuration reaches in one process with 32 streams."""
    runs = {}
    for config in COMPARED:
        module = importlib.import_module(f"irlm_agents.{config['agent']}")
        result = module.train(module.Args(**config["options"], run_dir=str(single_dir / config["name"])))
        runs[config["name"]] = {k: v.cpu() for k, v in result.model.state_dict().items()}
    return runs


def _ended(out: Path, name: str) -> list[dict[str, Any]]:
    return [torch.load(out / f"{name}.rank{rank}.pt") for rank in (0, 1)]


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[name] - b[name]).abs().max()) for name in a)


@pytest.mark.parametrize("config", COMPARED, ids=[c["name"] for c in COMPARED])
def test_two_processes_train_the_single_process_model(
    config: dict[str, Any], distributed_runs: Path, single_runs: dict[str, dict[str, torch.Tensor]]
) -> None:
    ranks = _ended(distributed_runs, config["name"])
    difference = _max_difference(single_runs[config["name"]], ranks[0]["params"])
    print(f"{config['name']}: max |single - torchrun| = {difference:.3g}")
    assert difference <= TOLERANCE
    assert _max_difference(ranks[0]["params"], ranks[1]["params"]) == 0.0
    # Every process reports rank 0's figures over the whole batch and agrees on the run directory.
    assert ranks[0]["metrics"] == ranks[1]["metrics"]
    assert ranks[0]["metrics"]["tokens"] == BASE["total_tokens"]
    assert ranks[0]["run_dir"] == ranks[1]["run_dir"] == str(distributed_runs / config["name"])
    saved = load_model(distributed_runs / config["name"] / "final.irlm").model
    assert _max_difference(saved.state_dict(), ranks[0]["params"]) == 0.0


def _training_scalars(run_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [event.value for event in events.Scalars(tag)] for tag in ("train/reward", "train/accuracy")}


@pytest.mark.parametrize("name", ["reinforce-mean", "expected-log_er"])
def test_two_processes_log_the_single_process_training_reward_and_accuracy(
    name: str, distributed_runs: Path, single_runs: dict[str, dict[str, torch.Tensor]], single_dir: Path
) -> None:
    """The reward and accuracy each update logs are the global batch's means, as one process
    logs them, not their sum over processes: the training curves of a torchrun run read the same."""
    single = _training_scalars(single_dir / name)
    shared = _training_scalars(distributed_runs / name)
    assert len(single["train/reward"]) == 20 and any(single["train/reward"])
    for tag, values in single.items():
        assert shared[tag] == pytest.approx(values, rel=1e-5, abs=1e-6), tag


def test_the_comparison_fails_when_both_processes_step_the_same_streams(
    distributed_runs: Path, single_runs: dict[str, dict[str, torch.Tensor]]
) -> None:
    faulty = _ended(distributed_runs, "same-streams")[0]["params"]
    difference = _max_difference(single_runs["supervised"], faulty)
    print(f"same streams on both processes: max |single - torchrun| = {difference:.3g}")
    assert difference > 100 * TOLERANCE


def test_a_signal_on_one_process_stops_all_after_the_same_update(distributed_runs: Path) -> None:
    ranks = _ended(distributed_runs, "signal")
    tokens = 5 * BASE["n_envs"] * BASE["rollout_steps"]
    for ended in ranks:
        assert (ended["ended"], ended["tokens"], ended["signal"]) == ("TrainingInterrupted", tokens, signal.SIGINT)
    run_dir = distributed_runs / "signal"
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    assert load_model(run_dir / "final.irlm").extra["tokens"] == tokens


@pytest.mark.skipif(DEVICE != "cpu", reason="gloo only (see CONFIGS)")
def test_a_failing_process_stops_the_others_and_leaves_the_checkpoint_intact(distributed_runs: Path) -> None:
    first, failing = _ended(distributed_runs, "error")
    assert (failing["ended"], failing["message"]) == ("RuntimeError", "this process fails on purpose")
    assert first["ended"] == "DistBackendError" or "closed" in first["message"].lower(), first
    run_dir = distributed_runs / "error"
    assert not (run_dir / "final.irlm").exists()
    assert load_model(run_dir / "best.irlm").extra["tokens"] == 0  # the untrained model's, complete


def test_bad_input_the_first_process_finds_ends_every_process_with_its_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    result = _torchrun("-m", "irlm_agents.supervised", "--corpus", "text", "--corpus-option", f"path={missing}",
                       "--n-envs", "8", "--no-progress", "--device", DEVICE, "--run-dir", str(tmp_path / "run"),
                       timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert output.count(f"Error: text corpus path '{missing}' does not exist") == 2, output
    assert "Connection closed" not in output  # the second process's lost connection to the first
    assert not (tmp_path / "run").exists()


def test_a_share_steps_exactly_its_streams_of_the_single_process_env() -> None:
    """Stream i of process r is stream r·n/N + i of one process's env: same starts, same text."""
    corpus = load_corpus("grammar")
    kwargs = {"corpus": corpus, "context_length": 1, "episode_length": 7, "autoreset_mode": AutoresetMode.SAME_STEP}
    whole = NextWordVectorEnv(8, **kwargs)
    shares = [Share(r, 2, range(4 * r, 4 * r + 4), 8, torch.device("cpu")) for r in (0, 1)]
    parts = [NextWordVectorEnv(4, **kwargs) for _ in shares]
    observations = [whole.reset(seed=5)[0]]
    part_observations = [[env.reset(seed=share.seeds(5))[0]] for env, share in zip(parts, shares)]
    actions = np.zeros(8, np.int64)
    for _ in range(3 * START_BLOCK * 7):  # past several blocks of episode starts
        observations.append(whole.step(actions)[0])
        for env, seen in zip(parts, part_observations):
            seen.append(env.step(actions[:4])[0])
    np.testing.assert_array_equal(np.concatenate([np.stack(p) for p in part_observations], axis=1), np.stack(observations))


def test_uniform_draws_are_the_rows_of_the_whole_batch() -> None:
    torch.manual_seed(0)
    whole = torch.rand(6, 5)
    torch.manual_seed(0)
    rows = Share(1, 3, range(2, 4), 6, torch.device("cpu")).uniform(2, 5, torch.device("cpu"), torch.float32)
    torch.testing.assert_close(rows, whole[2:4], rtol=0, atol=0)


def test_streams_must_split_evenly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(IrlmError, match="--n-envs 32 cannot be split evenly among 3 processes"):
        join("cpu", 32)


@pytest.mark.parametrize("agent", ["ppo", "a2c", "recurrent_ppo"])
def test_sb3_agents_refuse_several_processes(agent: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    module = importlib.import_module(f"irlm_agents.{agent}")
    with pytest.raises(IrlmError, match="Stable-Baselines3, which runs in one process.*RLlib"):
        module.train(module.Args(corpus="grammar", progress=False))
