"""RL Baselines3 Zoo trains and replays irlm/NextWord-v0 with the shipped hyperparameters."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from irlm_agents.zoo import ppo, ppo_lstm

ZOO_ENV = ["--env", "irlm/NextWord-v0", "--gym-packages", "irlm_env"]


def _run(module: str, *args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("algo", "env_kwargs"), [("ppo", []), ("ppo_lstm", ["context_length:1"])])
def test_zoo_trains_with_the_shipped_file_and_enjoy_replays_it(algo: str, env_kwargs: list[str], tmp_path: Path) -> None:
    """Env options given with --env-kwargs reach the training env, the evaluation env (scored during
    training: it would crash at once on another vocabulary or window) and enjoy's env."""
    out = _run("rl_zoo3.train", "--algo", algo, *ZOO_ENV, "--conf-file", f"irlm_agents.zoo.{algo}",
               "--env-kwargs", "corpus:'grammar'", *env_kwargs, "-n", "3072", "--eval-freq", "1536",
               "--eval-episodes", "2", "--hyperparams", "policy_kwargs:dict(embedding_dim=16,hidden_size=32)",
               "n_envs:8", "-f", "logs", "--seed", "0", cwd=tmp_path)
    assert out.count("Eval num_timesteps=") >= 1
    run = tmp_path / "logs" / algo / "irlm-NextWord-v0_1"
    saved = (run / "irlm-NextWord-v0" / "config.yml").read_text()  # an OrderedDict the zoo pickles as yaml
    assert "- irlm_agents.sb3." in saved and "corpus: grammar" in (run / "irlm-NextWord-v0" / "args.yml").read_text()
    replay = _run("rl_zoo3.enjoy", "--algo", algo, *ZOO_ENV, "-f", "logs", "--exp-id", "1", "-n", "256",
                  "--no-render", "--deterministic", cwd=tmp_path)
    rewards = [float(r) for r in re.findall(r"Episode Reward: ([0-9.]+)", replay)]
    assert len(rewards) == 4 and all(0 <= r <= 64 for r in rewards)
    assert sum(rewards) > 4  # better than never right: the grammar's common words are learnt fast


def test_shipped_files_hold_no_env_kwargs() -> None:
    """The zoo gives a file's env_kwargs to the training env only; env options go on the command line."""
    for module in (ppo, ppo_lstm):
        (settings,) = module.hyperparams.values()
        assert "env_kwargs" not in settings
    assert ppo_lstm.hyperparams["irlm/NextWord-v0"]["policy"].endswith("RecurrentLanguagePolicy")
