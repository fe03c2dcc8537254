"""The benchmark scripts' own logic: the learning benchmark's configurations are valid agent
settings (a typo would only show up deep into a long benchmark run otherwise), ``--reuse`` keeps
only matching saved runs, and ``bench/calibration.py`` agrees with ``evaluate``, splits the
perplexity gap without losing any of it and estimates how often each agent's feedback reveals
the target."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import matplotlib.image as plt_image
import numpy as np
import pytest
import torch

from irlm_agents import supervised
from irlm_agents.lm.checkpoints import load_model
from irlm_agents.lm.evaluation import evaluate
from irlm_agents.runs.run_dir import BEST_CHECKPOINT, BEST_PERPLEXITY_CHECKPOINT, FINAL_CHECKPOINT

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _bench(script: str = "learning") -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{script}", BENCH / f"{script}.py")
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


PEERS = {"4gram_top1": 0.2291, "4gram_perplexity": 301.2}


def _reuse(tmp_path: Path, names: list[str], seeds: list[int], total_tokens: int = 1000,
           weight_decay: float = 0.0, ema_decay: float = 0.0, peers: dict[str, float] = PEERS) -> list[dict[str, Any]]:
    """A saved file without ``weight_decay`` or ``ema_decay`` (as before those options existed)
    means plain Adam and the weights themselves."""
    saved = {"corpus": "pydocs", "total_tokens": 1000, "ngram": PEERS,
             "runs": [{"name": name, "seed": seed} for name in ("supervised", "likelihood-k8") for seed in (0, 1)]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(saved))
    options = argparse.Namespace(reuse=str(path), total_tokens=total_tokens, weight_decay=weight_decay,
                                 ema_decay=ema_decay, corpus="pydocs")
    return _bench().reused_runs(argparse.ArgumentParser(), options, "pydocs", seeds, names, peers, SCHEDULE)


SCHEDULE = {"eval_every": 100, "eval_tokens": 2000}


def test_runs_chosen_on_another_validation_schedule_are_not_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run's best checkpoint is chosen on its validation schedule, recorded with it; reusing or
    pooling runs of another schedule is refused, and runs saved before the record are named."""
    bench = _bench()
    path = tmp_path / "results.json"

    def saved(*schedules: dict[str, int] | None) -> None:
        runs = [{"name": name, "seed": 0, **({"validation": schedule} if schedule else {})}
                for name, schedule in zip(("supervised", "likelihood-k8"), schedules)]
        path.write_text(json.dumps({"corpus": "pydocs", "total_tokens": 1000, "ngram": PEERS, "runs": runs}))

    options = argparse.Namespace(reuse=str(path), total_tokens=1000, weight_decay=0.0, ema_decay=0.0, corpus="pydocs")
    saved(SCHEDULE, SCHEDULE)
    assert len(bench.reused_runs(argparse.ArgumentParser(), options, "pydocs", [0], ["x"], PEERS, SCHEDULE)) == 2
    assert "note" not in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.reused_runs(argparse.ArgumentParser(), options, "pydocs", [0], ["x"], PEERS,
                          {**SCHEDULE, "eval_tokens": 500})
    assert "supervised seed 0 chose its best checkpoint on validation every 100 tokens over 2000, not every " \
           "100 over 500" in capsys.readouterr().err
    saved(SCHEDULE, {"eval_every": 250, "eval_tokens": 2000})
    with pytest.raises(SystemExit):  # pooled for a table: the files' runs must agree among themselves
        bench.main(["--table", str(path)])
    assert "likelihood-k8 seed 0 chose its best checkpoint on validation every 250" in capsys.readouterr().err
    saved(None, SCHEDULE)
    bench.reused_runs(argparse.ArgumentParser(), options, "pydocs", [0], ["x"], PEERS, SCHEDULE)
    assert "supervised seed 0 predate the record of the validation schedule" in capsys.readouterr().err


def test_reuse_keeps_the_saved_runs_of_agents_not_run_again(tmp_path: Path) -> None:
    kept = _reuse(tmp_path, ["likelihood-k8", "likelihood-k1"], [1])
    assert kept == [{"name": "supervised", "seed": 1}]
    assert len(_reuse(tmp_path, ["likelihood-k1"], [0, 1])) == 4


@pytest.mark.parametrize(("seeds", "total_tokens", "weight_decay", "ema_decay", "peers", "problem"), [
    ([0, 2], 1000, 0.0, 0.0, PEERS, "lacks"), ([0], 2000, 0.0, 0.0, PEERS, "is for corpus"),
    ([0], 1000, 0.3, 0.0, PEERS, "--weight-decay 0.0"), ([0], 1000, 0.0, 0.995, PEERS, "--ema-decay 0.0"),
    # another text under the same name (two data.txt in other folders): its n-gram rows differ
    ([0], 1000, 0.0, 0.0, {**PEERS, "4gram_top1": 0.25}, "was run on another text than --corpus pydocs"),
])
def test_reuse_refuses_a_file_that_does_not_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], seeds: list[int], total_tokens: int, weight_decay: float,
    ema_decay: float, peers: dict[str, float], problem: str,
) -> None:
    with pytest.raises(SystemExit):
        _reuse(tmp_path, ["likelihood-k1"], seeds, total_tokens, weight_decay, ema_decay, peers)
    assert problem in capsys.readouterr().err


@pytest.mark.parametrize(("text", "problem"), [
    ("{}", "it lacks runs, ngram"), ("not json", "JSONDecodeError"), (None, "not found"),
])
@pytest.mark.parametrize("script", ["learning", "calibration"])
def test_a_file_that_is_not_a_results_file_is_one_parser_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], script: str, text: str | None, problem: str
) -> None:
    path = tmp_path / "results.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SystemExit):
        _bench(script).main(["--table", str(path)] if script == "learning" else [str(path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err and problem in err.splitlines()[-1]


@pytest.mark.parametrize(("options", "problem"), [
    (["--corpus", "no/such.txt"], "--corpus no/such.txt: no such file or folder"),
    (["--corpus", "pydocs", "--threads", "0"], "--threads must be a positive integer"),
    (["--corpus", "pydocs", "--eval-tokens", "0"], "eval_tokens must be a positive integer"),
    (["--corpus", "pydocs", "--device", "tpu"], "tpu"),
])
def test_what_would_fail_every_run_is_refused_before_any_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], problem: str
) -> None:
    with pytest.raises(SystemExit):
        _bench().main([*options, "--out", str(tmp_path / "out")])
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", ["learning", "native_throughput"])
def test_an_out_folder_that_cannot_be_written_is_refused_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], script: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SystemExit):
        _bench(script).main(["--corpus", "pydocs", "--total-tokens", "100", "--out", str(blocker / "out")])
    assert f"--out {blocker / 'out'}: cannot write there" in capsys.readouterr().err
    fresh = tmp_path / "new" / "deeper"
    with pytest.raises(SystemExit):  # a folder that can be made passes the probe, and is not left behind
        _bench(script).main(["--corpus", "pydocs", "--threads", "0", "--out", str(fresh)])
    assert not (tmp_path / "new").exists()
    with pytest.raises(SystemExit):  # ".." collapsed as mkdir walks it: outx alone is made, and removed
        _bench(script).main(["--corpus", "pydocs", "--threads", "0", "--out", str(tmp_path / "new" / ".." / "outx")])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"]


def test_when_every_run_fails_nothing_is_written_and_the_exit_code_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "few.txt"  # too short for the 700-token window episodes of the native agents
    text.write_text("a b c\nd e f\ng h i\n")
    assert _bench().main(["--corpus", str(text), "--total-tokens", "100", "--out", str(tmp_path / "out")]) == 1
    assert "every run failed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_weight_and_ema_decay_reach_exactly_the_native_agents() -> None:
    """``--weight-decay`` and ``--ema-decay`` refuse the agents whose settings lack them, rather
    than silently training them without."""
    bench = _bench()
    takes_them = {module for module, _, _ in bench.AGENTS.values() if bench.is_native(module)}
    assert takes_them == {"supervised", "reinforce", "group", "expected", "mixer"}
    settings = bench.common_settings("pydocs", 1000, 2, 100, "cpu", 0.3, 0.99)
    assert (settings["weight_decay"], settings["ema_decay"]) == (0.3, 0.99)


@pytest.mark.parametrize("option", [["--weight-decay", "0.1"], ["--ema-decay", "0.99"]])
def test_a_native_option_with_an_sb3_agent_is_refused(option: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _bench().main(["--corpus", "pydocs", "--agents", "supervised,ppo", *option])
    assert f"{option[0]} applies to the native agents only, not ppo" in capsys.readouterr().err


@pytest.mark.parametrize("decay", ["1", "-0.5"])
def test_an_ema_decay_outside_zero_to_one_is_refused_by_the_bench(
    decay: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _bench().main(["--corpus", "pydocs", "--agents", "supervised", "--ema-decay", decay])
    assert "--ema-decay must be in [0, 1)" in capsys.readouterr().err


TINY_SUPERVISED = {
    "corpus": "grammar", "corpus_options": {"n_sentences": 2000}, "hidden_size": 32, "embedding_dim": 16,
    "eval_every": 10**9, "eval_tokens": 2000, "progress": False, "device": "cpu", "n_envs": 8,
    "rollout_steps": 10, "total_tokens": 3000, "learning_rate": 1e-2,
}


def test_gap_columns_add_up_to_the_log_perplexity_ratio(tmp_path: Path) -> None:
    calibration = _bench("calibration")
    paths = {}
    for name, fraction in (("supervised", 1.0), ("half", 0.5)):
        # 42 of the grammar's 65 tokens: the rest are <unk>, in every split
        supervised.train(supervised.Args(**TINY_SUPERVISED, max_vocab=42, label_fraction=fraction,
                                         run_dir=str(tmp_path / name)))
        paths[name] = tmp_path / name / FINAL_CHECKPOINT
    scores = {(name, 0): calibration.token_scores(path) for name, path in paths.items()}
    checkpoint = load_model(paths["half"])
    reported = evaluate(checkpoint.model, checkpoint.load_corpus(), "test")["perplexity"]
    rows = calibration.gap_rows(scores)

    assert rows["half"][0] == pytest.approx(reported, rel=1e-4)
    assert sum(rows["supervised"][4:]) == pytest.approx(1.0)
    log_ratio = math.log(rows["half"][0] / rows["supervised"][0])
    assert sum(rows["half"][4:]) == pytest.approx(log_ratio, abs=1e-4)
    assert abs(log_ratio) > 1e-3  # the two models differ, so the check above is not 0 = 0
    by_count = calibration.count_rows(scores)
    assert sum(by_count["supervised"]) == pytest.approx(1.0)
    assert sum(by_count["half"]) == pytest.approx(log_ratio, abs=1e-4)
    corpus = checkpoint.load_corpus()
    counts = np.bincount(corpus.split("train"), minlength=len(corpus.vocab))
    assert scores[("half", 0)]["train_count"].tolist() == counts[corpus.split("test")[1:]].tolist()
    unknown = corpus.split("test")[1:] == corpus.vocab.unk_id
    assert scores[("half", 0)]["unknown"].tolist() == unknown.tolist()
    assert len(by_count["half"]) == len(calibration.COUNTS) + 1  # <unk> apart, last
    assert by_count["supervised"][-1] == pytest.approx(float(unknown.mean()))
    assert unknown.any()
    half_gap = (scores[("half", 0)]["nll"] - scores[("supervised", 0)]["nll"]).numpy()
    assert by_count["half"][-1] == pytest.approx(float(half_gap[unknown].sum() / len(half_gap)))

    scaled = {key: calibration.token_scores(paths[key[0]], (1.0, 0.5)) for key in scores}
    assert torch.allclose(scaled[("half", 0)]["scaled_nll"][:, 0], scores[("half", 0)]["nll"])
    by_temperature = calibration.temperature_rows(scaled)
    assert by_temperature["half"][0] == pytest.approx(rows["half"][0], rel=1e-5)
    assert abs(by_temperature["half"][1] - by_temperature["half"][0]) > 1e-3  # the temperature is applied


@pytest.mark.parametrize("text", ["0.9,x", "0,1", "-1", "nan", ","])
def test_calibration_rejects_bad_temperatures(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    calibration = _bench("calibration")
    with pytest.raises(SystemExit):
        calibration.main(["results.json", "--temperatures", text])
    assert "--temperatures" in capsys.readouterr().err


def _group_args(k: int, temperature: float) -> dict[str, Any]:
    return {"k": k, "temperature": temperature, "replacement": False, "truncate": 0}


def test_told_rule_reveals_what_the_agent_would_have_been_told() -> None:
    calibration = _bench("calibration")
    torch.manual_seed(0)
    logits = torch.randn(4, 500, 30) * 2
    targets = torch.randint(0, 30, (4, 500))

    greedy = calibration.told_rule(_group_args(1, 0.0))(logits, targets)
    assert torch.equal(greedy, (logits.argmax(-1) == targets).float())
    assert torch.equal(calibration.told_rule(_group_args(30, 1.0))(logits, targets), torch.ones(4, 500))
    sampled = calibration.told_rule(_group_args(1, 1.0))(logits, targets)
    exact = logits.softmax(-1).gather(-1, targets[..., None])[..., 0]
    assert float(sampled.mean()) == pytest.approx(float(exact.mean()), abs=0.02)
    assert torch.equal(calibration.told_rule({"label_fraction": 0.3})(logits, targets), torch.full((4, 500), 0.3))
    assert calibration.told_rule({"objective": "er"}) is None
    # An answer memory's proposals depend on the whole run's answers, which no checkpoint holds.
    assert calibration.told_rule({**_group_args(2, 0.5), "memory_context": 12}) is None


def test_told_rows_split_by_supervised_rank() -> None:
    calibration = _bench("calibration")
    ranks = torch.tensor([1, 1, 5, 50, 500, 5000])
    scores = {
        ("supervised", 0): {"rank": ranks, "told": torch.ones(6)},
        ("agent", 0): {"rank": ranks, "told": torch.tensor([1.0, 0.5, 0.5, 0.25, 0.0, 0.0])},
        ("agent", 1): {"rank": ranks, "told": torch.zeros(6)},  # no supervised run with seed 1: left out
    }
    rows = calibration.told_rows(scores)
    assert rows["supervised"] == [1.0] * 6
    assert rows["agent"] == pytest.approx([2.25 / 6, 0.75, 0.5, 0.25, 0.0, 0.0])


def test_table_redraws_the_queries_figure_of_a_saved_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = {"feedback": "bandit", "test_top1": 0.2, "test_perplexity": 300.0, "best_top1": 0.21,
           "best_perplexity": 290.0, "tokens_per_second": 1000.0, "peak_mb": 600.0}
    runs = [{**run, "name": "supervised", "seed": 0, "feedback": "full", "queries_per_token": 0.0},
            {**run, "name": "likelihood-k8", "seed": 0, "queries_per_token": 5.5},
            {**run, "name": "likelihood-k2", "seed": 0, "queries_per_token": 1.8}]
    ngram = {f"{name}_{metric}": value for name in _bench().PEERS for metric, value in
             (("top1", 0.15), ("perplexity", 400.0))}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"runs": runs, "ngram": ngram, "total_tokens": 1000, "corpus": "pydocs"}))
    figure = tmp_path / "queries.png"
    assert _bench().main(["--table", str(path), "--figure", str(figure)]) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "pbest" not in capsys.readouterr().out  # a file from before the lowest-perplexity checkpoint
    two_panels = plt_image.imread(figure).shape[1]
    for index, run_ in enumerate(runs):  # the known-word perplexity recorded: a third panel
        run_.update(dict.fromkeys(_bench().KNOWN, 200.0 + index))
    path.write_text(json.dumps({"runs": runs, "ngram": ngram, "total_tokens": 1000, "corpus": "pydocs"}))
    assert _bench().main(["--table", str(path), "--figure", str(figure)]) == 0
    assert plt_image.imread(figure).shape[1] > 1.3 * two_panels
    for run_ in runs:
        for key in _bench().KNOWN:
            del run_[key]
    runs[0].update(ppl_best_top1=0.2, ppl_best_perplexity=250.0)
    runs[1].update(ppl_best_top1=0.19, ppl_best_perplexity=275.0)
    path.write_text(json.dumps({"runs": runs, "ngram": ngram, "total_tokens": 1000, "corpus": "pydocs"}))
    assert _bench().main(["--table", str(path)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("likelihood")}
    assert "0.1900  0.950     275.0  1.100" in rows["likelihood-k8"]
    assert "nan    nan       nan    nan" in rows["likelihood-k2"]  # a run without that checkpoint


def test_table_pools_the_seeds_of_several_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def run(name: str, seed: int, top1: float, perplexity: float) -> dict[str, object]:
        return {"name": name, "seed": seed, "feedback": "full" if name == "supervised" else "bandit",
                "test_top1": top1, "test_perplexity": perplexity, "best_top1": top1, "best_perplexity": perplexity,
                "tokens_per_second": 1000.0, "peak_mb": 600.0, "queries_per_token": 0.0 if name == "supervised" else 2.0}

    ngram = {f"{name}_{metric}": value for name in _bench().PEERS for metric, value in
             (("top1", 0.15), ("perplexity", 400.0))}
    header = {"ngram": ngram, "total_tokens": 1000, "corpus": "pydocs", "weight_decay": 0.3, "ema_decay": 0.0}
    seeds01, seeds23 = tmp_path / "seeds01.json", tmp_path / "seeds23.json"
    seeds01.write_text(json.dumps({**header, "runs": [
        run("supervised", 0, 0.20, 100.0), run("supervised", 1, 0.25, 200.0),
        run("likelihood-k2", 0, 0.20, 110.0), run("likelihood-k2", 1, 0.20, 220.0)]}))
    # Seeds 2 and 3 from a second call, whose file lists its agents in another order.
    seeds23.write_text(json.dumps({**header, "runs": [
        run("likelihood-k2", 2, 0.18, 130.0), run("likelihood-k2", 3, 0.20, 100.0),
        run("supervised", 2, 0.20, 100.0), run("supervised", 3, 0.20, 100.0)]}))
    assert _bench().main(["--table", str(seeds01), str(seeds23)]) == 0
    out = capsys.readouterr().out
    assert "mean of seeds 0, 1, 2, 3" in out
    # Each ratio against its own seed's supervised run, then averaged: top-1 (1 + 0.8 + 0.9 + 1) / 4,
    # perplexity (1.1 + 1.1 + 1.3 + 1.0) / 4; a ratio of the pooled means would give 0.918 and 1.120.
    row = next(line for line in out.splitlines() if line.startswith("likelihood-k2"))
    assert row.split()[2:6] == ["0.1950", "0.925", "140.0", "1.125"]
    assert out.index("supervised                     seed 3") < out.index("likelihood-k2                  seed 0")

    # An agent that only one of the files holds is marked with its own seeds.
    seeds01.write_text(json.dumps({**header, "runs": [*json.loads(seeds01.read_text())["runs"],
                                                     run("likelihood-k8", 0, 0.22, 105.0)]}))
    assert _bench().main(["--table", str(seeds01), str(seeds23)]) == 0
    out = capsys.readouterr().out
    assert "(likelihood-k8: mean of seeds 0 only)" in out and "likelihood-k2: mean of" not in out
    assert "ratios leave out" not in out

    # A seed with no supervised run to divide by is named: the ratios and figures cover other seeds.
    lone = tmp_path / "lone.json"
    lone.write_text(json.dumps({**header, "runs": [run("likelihood-k8", 4, 0.10, 300.0)]}))
    assert _bench().main(["--table", str(seeds01), str(seeds23), str(lone)]) == 0
    out = capsys.readouterr().out
    assert "(likelihood-k8: its x sup ratios leave out seed(s) 4, which have no supervised run; its figures do not)" in out

    # Files of another benchmark, or two different runs under one name and seed, are refused.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**header, "weight_decay": 0.0, "runs": [run("supervised", 4, 0.2, 100.0)]}))
    with pytest.raises(SystemExit):
        _bench().main(["--table", str(seeds01), str(other)])
    assert "differs from" in capsys.readouterr().err
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps({**header, "runs": [run("supervised", 1, 0.3, 90.0)]}))
    with pytest.raises(SystemExit):
        _bench().main(["--table", str(seeds01), str(clash)])
    assert "both hold supervised seed 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _bench().main(["--table", str(seeds01), str(tmp_path / "missing.json")])
    assert "not found" in capsys.readouterr().err


def test_learning_curves_skip_reused_runs_whose_folder_is_gone(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "metrics.csv").write_text("tokens,top1\n")
    runs = [{"name": "supervised", "run_dir": str(tmp_path / "gone")}, {"name": "likelihood-k8", "run_dir": str(kept)}]
    assert _bench().runs_with_curves(runs) == runs[1:]


def test_figure_without_table_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _bench().main(["--figure", "out.png"])
    assert "pass it with --table" in capsys.readouterr().err


def test_throughput_ratios_are_against_the_same_rounds_supervised_run() -> None:
    def rates(supervised: float, agent: float) -> dict[str, dict[str, float]]:
        return {"supervised": {"tokens_per_second": supervised, "queries_per_token": 0.0},
                "likelihood-k8-t07-memory": {"tokens_per_second": agent, "queries_per_token": 5.0}}

    # A slow round slows both alike: each ratio is against its own round, not a pooled mean.
    rows = _bench("native_throughput").summarise([rates(2000, 1800), rates(1000, 700), rates(2000, 1700)])
    agent = rows[1]
    assert agent["ratios"] == pytest.approx([0.9, 0.7, 0.85])
    assert agent["median_ratio"] == pytest.approx(0.85)
    assert agent["tokens_per_second"] == 1700
    assert rows[0]["ratios"] == [1.0, 1.0, 1.0]


def test_throughput_bench_trains_every_configuration_in_each_round(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _bench("native_throughput")
    assert bench.main(["--corpus", "grammar", "--agents", "likelihood-k2-t05-memory", "--total-tokens", "500",
                       "--rounds", "2", "--out", str(tmp_path)]) == 0
    (saved,) = tmp_path.glob("throughput-grammar-*.json")
    result = json.loads(saved.read_text())
    assert [sorted(rates) for rates in result["rounds"]] == [["likelihood-k2-t05-memory", "supervised"]] * 2
    assert all(rates["likelihood-k2-t05-memory"]["queries_per_token"] >= 1 for rates in result["rounds"])
    printed = capsys.readouterr().out
    assert "likelihood-k2-t05-memory" in printed and "x sup by round" in printed
    assert bench.main(["--table", str(saved)]) == 0
    assert "likelihood-k2-t05-memory" in capsys.readouterr().out


def test_throughput_bench_refuses_an_unknown_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _bench("native_throughput").main(["--corpus", "grammar", "--agents", "likelihood-k9"])
    assert "unknown agent configuration(s) likelihood-k9" in capsys.readouterr().err


def test_head_product_bench_reports_each_shape_against_the_whole_segment(capsys: pytest.CaptureFixture[str]) -> None:
    assert _bench("head_product").main(["--rounds", "1", "--calls", "35"]) == 0
    rows = {line[:44].strip(): line.split()[-1] for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["whole segment (1120 rows)"] == "1.00"
    assert "step by step (32 rows)" in rows and float(rows["step by step (32 rows)"]) > 0


def test_a_folder_or_glob_is_benchmarked_as_the_text_corpus_with_a_file_name_fit_label(tmp_path: Path) -> None:
    learning = _bench()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("one line\n")
    pattern = str(tmp_path / "docs" / "[a-m]*.txt")
    assert learning.corpus_settings(pattern)["corpus_options"] == {"path": pattern}
    folder = str((tmp_path / "docs").resolve())  # resolved, as a temporary folder may lie behind a link
    assert learning.corpus_settings(str(tmp_path / "docs"))["corpus_options"] == {"path": folder}
    assert learning.corpus_settings("pydocs")["corpus"] == "pydocs"
    label = learning.corpus_label(pattern)
    assert "/" not in label and "*" not in label and label.endswith("docs-a-m-txt")
    assert learning.corpus_label(str(tmp_path / "docs")) == "docs"
    assert learning.corpus_label(str(tmp_path / "docs" / "a.txt")) == "a"


def test_rescore_adds_the_known_word_perplexity_of_the_very_runs_a_file_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    learning = _bench()
    names = (FINAL_CHECKPOINT, BEST_CHECKPOINT, BEST_PERPLEXITY_CHECKPOINT)
    models = []
    for fraction in (1.0, 0.5, 0.25):  # three different models, one for each checkpoint of a run
        run_dir = tmp_path / f"labels{fraction}"
        # 42 of the grammar's 65 tokens: the rest are <unk>, so the two perplexities differ
        supervised.train(supervised.Args(**TINY_SUPERVISED, max_vocab=42, label_fraction=fraction,
                                         run_dir=str(run_dir)))
        models.append(run_dir / FINAL_CHECKPOINT)
    runs, known = [], []
    for name, order in (("supervised", (0, 1, 2)), ("supervised-other", (2, 0, 1))):
        run_dir = tmp_path / name
        run_dir.mkdir()
        for checkpoint, model in zip(names, order):
            shutil.copyfile(models[model], run_dir / checkpoint)
        corpus = load_model(run_dir / FINAL_CHECKPOINT).load_corpus()
        scores = [learning.checkpoint_scores(run_dir, checkpoint, corpus) for checkpoint in names]
        known.append([score["known_perplexity"] for score in scores])
        runs.append({"name": name, "seed": 0, "feedback": "full", "run_dir": str(run_dir), "tokens_per_second": 1.0,
                     "queries_per_token": 0.0, "peak_mb": 1.0, "test_top1": scores[0]["top1"],
                     "best_top1": scores[1]["top1"], "ppl_best_top1": scores[2]["top1"],
                     "test_perplexity": scores[0]["perplexity"], "best_perplexity": scores[1]["perplexity"],
                     "ppl_best_perplexity": scores[2]["perplexity"]})
        assert all(score["known_perplexity"] < score["perplexity"] for score in scores)
    assert len(set(known[0])) == 3 and known[1] == [known[0][2], known[0][0], known[0][1]]
    ngram = learning.ngram_rows(corpus)[0]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"runs": runs, "ngram": ngram, "total_tokens": 1000, "corpus": "grammar"}))
    copy = tmp_path / "copy.json"  # another file holding a copy of the same runs, not rescored
    copy.write_text(path.read_text())
    assert learning.main(["--table", str(path)]) == 0
    assert "not <unk>" not in capsys.readouterr().out  # nothing recorded yet

    assert learning.main(["--rescore", str(path)]) == 0
    saved = json.loads(path.read_text())
    for run, want in zip(saved["runs"], known):
        assert [run[key] for key in learning.KNOWN] == want
    assert saved["ngram_known"] == learning.ngram_rows(corpus)[1]  # the peers' reading, from the runs' text
    assert learning.main(["--table", str(path), str(copy)]) == 0  # the copy is the same run
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("  supervised-other"))
    ratios = [other / own for other, own in zip(known[1], known[0])]
    assert row.endswith("x sup " + " / ".join(f"{ratio:.3f}" for ratio in ratios))
    peer = saved["ngram_known"]["4gram_known_perplexity"]
    assert "  4gram (n-gram)" in out and f"{peer:.1f}, x sup {peer / known[0][0]:.3f}" in out

    # A file whose figures are not those of the checkpoints now in the folder, or whose folder is
    # gone, is refused, and left as it was.
    for run in saved["runs"]:
        for key in learning.KNOWN:
            del run[key]
    saved["runs"][1]["best_perplexity"] *= 1.01
    path.write_text(json.dumps(saved))
    with pytest.raises(SystemExit):
        learning.main(["--rescore", str(path)])
    assert "holds best_perplexity" in capsys.readouterr().err
    assert json.loads(path.read_text()) == saved
    saved["runs"][1]["best_perplexity"] /= 1.01
    saved["runs"][1]["run_dir"] = str(tmp_path / "gone")
    path.write_text(json.dumps(saved))
    with pytest.raises(SystemExit):
        learning.main(["--rescore", str(path)])
    assert "has no final.irlm in its run folder" in capsys.readouterr().err
    assert json.loads(path.read_text()) == saved
    with pytest.raises(SystemExit):
        learning.main(["--rescore", str(path), "--table", str(path)])
    assert "run it alone" in capsys.readouterr().err
    saved["runs"][1]["run_dir"] = str(tmp_path / "supervised-other")
    del saved["ngram_known"]
    saved["ngram"] = {**saved["ngram"], "4gram_top1": 0.5}  # the peers of another text
    path.write_text(json.dumps(saved))
    with pytest.raises(SystemExit):
        learning.main(["--rescore", str(path)])
    assert "n-gram rows of its runs' text are not the file's" in capsys.readouterr().err
    assert json.loads(path.read_text()) == saved
