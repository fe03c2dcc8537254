"""What ``irlm`` runs works from an installed wheel, not only from the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What the wheel is built from; copied so the build leaves nothing (build/, egg-info) in the checkout.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "irlm_env", "agents")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, source / name)
    wheels = work / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = wheels.glob("irlm_env-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "irlm_agents/cli.py" in names and "irlm_agents/sb3/policy.py" in names
    assert not any(name.startswith(("tests/", "bench/", "plugins/", "agents/")) for name in names)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)  # MIT: the notice travels
    target = work / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    return target


def run_outside(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run python from ``cwd`` (outside the checkout) with only the wheel's target on PYTHONPATH."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_runs_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    where = run_outside(installed, tmp_path, "-c",
                        "import json, irlm_agents.cli, irlm_agents.sb3; "
                        "print(json.dumps([irlm_agents.cli.__file__, irlm_agents.sb3.__file__]))")
    assert where.returncode == 0, where.stderr
    for path in json.loads(where.stdout):
        assert Path(path).is_relative_to(installed), path  # not the checkout's editable copy
    help_text = run_outside(installed, tmp_path, "-m", "irlm_agents.cli", "--help")
    assert help_text.returncode == 0 and "Examples:" in help_text.stdout, help_text.stderr
    run_dir = tmp_path / "run"
    result = run_outside(
        installed, tmp_path, "-m", "irlm_agents.cli", "train", "ppo", "--corpus", "grammar",
        "--embedding-dim", "8", "--hidden-size", "16", "--n-envs", "8", "--total-tokens", "256",
        "--eval-tokens", "500", "--device", "cpu", "--no-progress", "--run-dir", str(run_dir),
    )
    assert result.returncode == 0, result.stderr
    assert (run_dir / "final.irlm").is_file() and (run_dir / "curve.png").is_file()
    scored = run_outside(installed, tmp_path, "-m", "irlm_agents.cli", "eval", str(run_dir), "--json")
    assert scored.returncode == 0, scored.stderr
    assert 0.0 <= json.loads(scored.stdout)["top1"] <= 1.0
