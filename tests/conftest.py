"""Shared fixtures: every test run gets its own corpus cache, so tests never read a user's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cache = tmp_path_factory.mktemp("irlm_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IRLM_CACHE_DIR", str(cache))
        yield cache
