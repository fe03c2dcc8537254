"""The learning benchmark's configurations are valid agent settings (a typo would only show up
deep into a long benchmark run otherwise), and ``--reuse`` keeps only matching saved runs."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "learning.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_learning", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench_agents() -> dict:
    return _bench().AGENTS


@pytest.mark.parametrize("name", sorted(_bench_agents()))
def test_bench_configuration_builds_its_agent_args(name: str) -> None:
    module_name, options, feedback = _bench_agents()[name]
    assert feedback in {"bandit", "full", "partial", "mixed"}
    module = importlib.import_module(f"irlm_agents.{module_name}")
    module.Args(**options)


def _reuse(tmp_path: Path, names: list[str], seeds: list[int], total_tokens: int = 1000) -> list[dict[str, Any]]:
    saved = {"corpus": "pydocs", "total_tokens": 1000, "ngram": {},
             "runs": [{"name": name, "seed": seed} for name in ("supervised", "likelihood-k8") for seed in (0, 1)]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(saved))
    options = argparse.Namespace(reuse=str(path), total_tokens=total_tokens)
    return _bench().reused_runs(argparse.ArgumentParser(), options, "pydocs", seeds, names)


def test_reuse_keeps_the_saved_runs_of_agents_not_run_again(tmp_path: Path) -> None:
    kept = _reuse(tmp_path, ["likelihood-k8", "likelihood-k1"], [1])
    assert kept == [{"name": "supervised", "seed": 1}]
    assert len(_reuse(tmp_path, ["likelihood-k1"], [0, 1])) == 4


@pytest.mark.parametrize(("seeds", "total_tokens", "problem"), [([0, 2], 1000, "lacks"), ([0], 2000, "is for corpus")])
def test_reuse_refuses_a_file_that_does_not_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], seeds: list[int], total_tokens: int, problem: str
) -> None:
    with pytest.raises(SystemExit):
        _reuse(tmp_path, ["likelihood-k1"], seeds, total_tokens)
    assert problem in capsys.readouterr().err
