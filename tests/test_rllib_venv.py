"""Runs tests/test_rllib.py in the RLlib environment, so the main suite covers it on every CI run.

``ray[rllib]`` pins a Gymnasium older than the project's default, so it lives in a second
virtual environment, ``.venv-rllib`` (built by ``.ci/run``; by hand:
``python3 -m venv .venv-rllib && .venv-rllib/bin/pip install -e ".[rllib]" pytest pytest-timeout``). Under CI a
missing environment is a failure, not a skip: the RLlib tests must run on every CI run.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RLLIB_PYTHON = ROOT / ".venv-rllib" / "bin" / "python"


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="ray is installed here: test_rllib.py runs directly")
def test_rllib_tests_pass_in_the_rllib_environment() -> None:
    if not RLLIB_PYTHON.exists():
        message = f"no RLlib environment at {RLLIB_PYTHON.parent.parent}; .ci/run builds it (see the module docstring)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    start = time.perf_counter()
    done = subprocess.run(
        [str(RLLIB_PYTHON), "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests/test_rllib.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout.splitlines()[-1], done.stdout[-2000:]
    print(f"RLlib tests: {time.perf_counter() - start:.1f} s in all")
