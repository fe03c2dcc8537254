"""The end-of-training report: the model beside its peers, and where the run's files are."""

from __future__ import annotations

from pathlib import Path

from irlm_agents.runs.report import training_report


def test_report_compares_the_model_with_its_peers_and_names_the_files() -> None:
    metrics = {"top1": 0.162, "perplexity": 406.8, "majority_top1": 0.068, "majority_perplexity": 535.5,
               "bigram_top1": 0.214, "bigram_perplexity": 243.9, "tokens": 60480.0,
               "tokens_per_second": 1500.0, "queries_per_token": 1.93}
    lines = training_report("group", metrics, Path("runs/first")).splitlines()
    assert lines[0].startswith("group: validation top1=0.162, perplexity=406.8")
    assert "group: 60,480 training tokens at 1,500 tokens/s, 1.93 reward queries per token" in lines
    assert any(line.split() == ["trained", "model", "0.162", "406.8"] for line in lines)
    assert any(line.split() == ["majority", "token", "0.068", "535.5"] for line in lines)
    assert any(line.split() == ["bigram", "0.214", "243.9"] for line in lines)
    assert not any("4-gram" in line for line in lines)  # only the peers the run measured
    assert any(line.split() == ["curve:", str(Path("runs/first/curve.png"))] for line in lines)
    assert any(str(Path("runs/first/final.irlm")) in line for line in lines)


def test_report_of_a_run_without_peers_or_queries() -> None:
    report = training_report("ppo", {"top1": 0.4, "perplexity": 12.0}, Path("r"))
    assert "majority" not in report.split("\n", 2)[2] and "queries" not in report
