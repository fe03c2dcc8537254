"""Shared test set-up.

- Torch runs with one thread, in this process and in the subprocesses tests start: the models
  under test are tiny, and on a 2-core machine a second thread only adds hand-off costs (a tiny
  PPO run measured 39 s with two threads and 3.5 s with one). Set before torch is imported.
- Every test run gets its own corpus cache, so tests never read or write a user's, and its own
  folder for the loggers SB3 makes when a test trains without one (``SB3_LOGDIR``; SB3 would
  otherwise leave an empty ``/tmp/SB3-<time>`` folder per ``learn()``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cache = tmp_path_factory.mktemp("irlm_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IRLM_CACHE_DIR", str(cache))
        mp.setenv("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3_logs")))
        yield cache


@pytest.fixture
def fresh_plugins() -> Iterator[None]:
    """No plugin registered at run time leaks into the next test: the registries start over."""
    from irlm_env import plugins

    plugins.reset_plugins()
    yield
    plugins.reset_plugins()
