"""The learning benchmark's configurations are valid agent settings (a typo would only show up
deep into a long benchmark run otherwise)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "learning.py"


def _bench_agents() -> dict:
    spec = importlib.util.spec_from_file_location("bench_learning", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AGENTS


@pytest.mark.parametrize("name", sorted(_bench_agents()))
def test_bench_configuration_builds_its_agent_args(name: str) -> None:
    module_name, options, feedback = _bench_agents()[name]
    assert feedback in {"bandit", "full", "mixed"}
    module = importlib.import_module(f"irlm_agents.{module_name}")
    module.Args(**options)
