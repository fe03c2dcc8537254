"""The first-party plugin packages install with pip and are found through entry points.

The packages are installed into a scratch ``--target`` folder (from a copy, so the build
leaves nothing in the repository) and checked in a fresh interpreter that sees them only
through ``PYTHONPATH``, the way a user's environment sees an installed plugin.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from irlm_env import IrlmError
from irlm_env.corpus import Corpus, load_corpus

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"irlm-similarity": "similarity", "irlm-arithmetic": "arithmetic", "irlm-judge": "judge"}

CHECK = textwrap.dedent(
    """
    import json
    import warnings

    import gymnasium as gym
    import numpy as np

    warnings.simplefilter("error")  # a plugin that fails to load must fail this check
    from irlm_env import load_corpus, plugins
    from irlm_env.corpora.registry import corpus_registry
    from irlm_env.rewards import make_reward
    from irlm_env.rewards.registry import reward_registry

    report = {info.name: info for info in plugins.plugin_report()}
    corpus = load_corpus("arithmetic", n_sentences=2000, max_operand=12)
    reward = make_reward("similarity", corpus, scale="0.5")
    vocab = corpus.vocab
    targets = corpus.split("train")[1:200]
    table = reward.table(targets, np.zeros((len(targets), 4), np.int64))
    seven, eight, plus = vocab.id_of("seven"), vocab.id_of("eight"), vocab.id_of("plus")
    judge = make_reward("judge", corpus, order="3", top_k="2")
    histories = np.stack([corpus.split("train")[:199], targets], axis=1)
    judge_table = judge.table(targets, histories)
    env = gym.make("irlm/NextWord-v0", corpus=corpus, reward="similarity", mode="line")
    env.reset(seed=0)
    rewards = [env.step(env.action_space.sample())[1] for _ in range(5)]
    print(json.dumps({
        "report": {name: [info.kind, info.distribution, info.version, info.error] for name, info in report.items()},
        "reward_plugin": reward_registry().get("similarity").plugin_name,
        "corpus_plugin": corpus_registry().get("arithmetic").plugin_name,
        "best_accuracy": corpus.best_accuracy,
        "units": len(corpus.line_starts("train")),
        "exact": reward(seven, seven, np.zeros(4, np.int64)),
        "number_vs_number": reward(seven, eight, np.zeros(4, np.int64)),
        "number_vs_operator": reward(seven, plus, np.zeros(4, np.int64)),
        "table_min": float(table.min()),
        "table_max": float(table.max()),
        "table_hits": bool(np.all(table[np.arange(len(targets)), targets] == 1.0)),
        "env_rewards": rewards,
        "judge_plugin": reward_registry().get("judge").plugin_name,
        "judge_paid_per_row": sorted(set(judge_table.sum(axis=1).tolist())),
    }))
    """
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("plugin_packages")
    target = scratch / "site"
    sources = []
    for package in PACKAGES:
        source = scratch / "src" / package
        shutil.copytree(ROOT / "plugins" / package, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        sources.append(str(source))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
               "--disable-pip-version-check", "--target", str(target), *sources]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def _run(site: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {key: value for key, value in os.environ.items() if not key.startswith("IRLM_") or key == "IRLM_CACHE_DIR"}
    full_env.update(PYTHONPATH=str(site), **env)
    return subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=full_env, timeout=120)


def test_the_plugins_are_found_through_entry_points_and_work(site: Path) -> None:
    result = _run(site)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["report"]["similarity"] == ["entrypoint", "irlm-similarity", "0.1.0", None]
    assert out["report"]["arithmetic"] == ["entrypoint", "irlm-arithmetic", "0.1.0", None]
    assert out["report"]["judge"] == ["entrypoint", "irlm-judge", "0.1.0", None]
    assert out["judge_plugin"] == "judge" and out["judge_paid_per_row"] == [2.0]
    assert (out["reward_plugin"], out["corpus_plugin"]) == ("similarity", "arithmetic")
    assert out["units"] > 1000 and 0.5 < out["best_accuracy"] < 0.8
    assert out["exact"] == 1.0
    # Numbers are used alike, operators differently: partial credit follows usage.
    assert 0.0 < out["number_vs_operator"] < out["number_vs_number"] <= 0.5
    assert out["table_min"] >= 0.0 and out["table_max"] == 1.0 and out["table_hits"]
    assert all(0.0 <= r <= 1.0 for r in out["env_rewards"])


def test_empty_load_plugins_hides_the_installed_plugins(site: Path) -> None:
    result = _run(site, IRLM_LOAD_PLUGINS="")
    assert result.returncode != 0
    assert "unknown corpus 'arithmetic'" in result.stderr


# --- The plugin modules themselves, imported from the source tree ---------------------------


@pytest.fixture
def similarity(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT / "plugins" / "irlm-similarity"))
    return importlib.import_module("irlm_similarity")


@pytest.fixture
def arithmetic(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT / "plugins" / "irlm-arithmetic"))
    return importlib.import_module("irlm_arithmetic")


@pytest.fixture(scope="module")
def small_corpus() -> Corpus:
    return load_corpus("grammar", n_sentences=2000)


def test_similarity_forms_agree_and_are_deterministic(similarity: Any, small_corpus: Corpus) -> None:
    reward = similarity.SimilarityReward(small_corpus, scale=0.5)
    vocab = len(small_corpus.vocab)
    rng = np.random.default_rng(1)
    targets = rng.integers(3, vocab, size=40)
    actions = rng.integers(3, vocab, size=(40, 5))
    actions[:, 0] = targets
    contexts = np.zeros((40, 4), np.int64)
    batch = reward.batch(actions, targets, contexts)
    table = reward.table(targets, contexts)
    scalar = [[reward(int(a), int(t), c) for a in row] for row, t, c in zip(actions, targets, contexts)]
    np.testing.assert_allclose(batch, scalar, rtol=1e-12)
    np.testing.assert_allclose(np.take_along_axis(table, actions, axis=1), batch, rtol=1e-12)
    assert np.all(batch[:, 0] == 1.0) and table.shape == (40, vocab)
    assert table.min() >= 0.0 and np.sort(table, axis=1)[:, -2].max() <= 0.5
    assert 0.05 < float(np.mean(table[table < 1.0] > 0)), "some partial credit must exist"
    fresh = similarity.cooccurrence_embeddings(
        small_corpus.split("train"), vocab, window=2, dim=64, max_words=2000, exclude=(0, 1)
    )
    np.testing.assert_array_equal(fresh, reward.embeddings)
    assert similarity.SimilarityReward(small_corpus).embeddings is reward.embeddings  # cached per corpus
    again = pickle.loads(pickle.dumps(reward))
    np.testing.assert_array_equal(again.table(targets, contexts), table)


def test_similarity_ignores_unk_and_words_beyond_max_words(similarity: Any, small_corpus: Corpus) -> None:
    reward = similarity.SimilarityReward(small_corpus, max_words=5)
    norms = np.linalg.norm(reward.embeddings, axis=1)
    assert np.count_nonzero(norms) == 5 and norms[small_corpus.vocab.unk_id] == 0.0
    counts = np.bincount(small_corpus.split("train"), minlength=len(small_corpus.vocab))
    counts[[0, 1]] = 0
    assert set(np.flatnonzero(norms)) == set(np.argsort(-counts, kind="stable")[:5])


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"scale": 1.5}, "scale=1.5 must be a number between 0 and 1"),
        ({"scale": "high"}, "scale='high'"),
        ({"window": 0}, "option window must be an integer from 1 to"),
        ({"dim": 2.5}, "option dim must be a positive integer, got 2.5"),
        ({"max_words": 1}, "option max_words must be an integer >= 2, got 1"),
        ({"window": 10**7}, "option window must be an integer from 1 to"),
    ],
)
def test_similarity_rejects_bad_options(similarity: Any, small_corpus: Corpus, options: dict[str, Any], problem: str) -> None:
    with pytest.raises(IrlmError, match=re.escape(problem)):
        similarity.SimilarityReward(small_corpus, **options)


def test_number_words(arithmetic: Any) -> None:
    assert [" ".join(arithmetic.number_words(n)) for n in (0, 13, 20, 45, 100, 305, 1000, 7623, 10000)] == [
        "zero", "thirteen", "twenty", "forty five", "one hundred", "three hundred five", "one thousand",
        "seven thousand six hundred twenty three", "ten thousand",
    ]


def test_arithmetic_sentences_are_seeded_and_correct(arithmetic: Any) -> None:
    source = arithmetic.arithmetic_corpus(seed=3, n_sentences=300, max_operand=9)
    assert list(source.units) == list(arithmetic.arithmetic_corpus(seed=3, n_sentences=300, max_operand=9).units)
    assert list(source.units) != list(arithmetic.arithmetic_corpus(seed=4, n_sentences=300, max_operand=9).units)
    value = {" ".join(arithmetic.number_words(n)): n for n in range(100)}
    ops = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}
    for unit in source.units:
        left, rest = unit.removesuffix(" .").split(" is ")
        words = left.split()
        op = next(w for w in words if w in ops)
        a, b = value[" ".join(words[: words.index(op)])], value[" ".join(words[words.index(op) + 1 :])]
        assert ops[op](a, b) == value[rest] >= 0


def test_arithmetic_best_accuracy_matches_an_empirical_optimal_predictor(arithmetic: Any) -> None:
    """Estimate the Bayes-optimal predictor from one sample, score it on another."""
    def sequences(seed: int) -> list[list[str]]:
        units = arithmetic.arithmetic_corpus(seed=seed, n_sentences=40000, max_operand=4, operations="plus,minus").units
        return [unit.split() + ["<eos>"] for unit in units]

    counts: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
    for words in sequences(0):
        for i, word in enumerate(words):
            counts[tuple(words[:i])][word] += 1
    test = sequences(1)
    hits = sum(counts[tuple(w[:i])].most_common(1)[0][0] == word for w in test for i, word in enumerate(w))
    empirical = hits / sum(len(w) for w in test)
    assert abs(empirical - arithmetic.best_accuracy(4, ("plus", "minus"))) < 0.005


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"max_operand": 101}, "option max_operand must be an integer from 1 to 100, got 101"),
        ({"n_sentences": 2}, "option n_sentences must be an integer from 3 to 10000000, got 2"),
        ({"operations": "plus,plus,minus"}, "names an operation twice"),
        ({"seed": -1}, "option seed must be an integer from 0 to 9223372036854775807, got -1"),
        ({"operations": "plus,divide"}, "operations='plus,divide' must be a comma-separated list of plus, minus, times"),
        ({"operations": ""}, "operations=''"),
    ],
)
def test_arithmetic_rejects_bad_options(arithmetic: Any, options: dict[str, Any], problem: str) -> None:
    with pytest.raises(IrlmError, match=re.escape(problem)):
        arithmetic.arithmetic_corpus(**options)


def test_similarity_takes_a_numpy_scale_and_a_dim_past_its_words(similarity: Any, small_corpus: Corpus) -> None:
    assert similarity.SimilarityReward(small_corpus, scale=np.int64(1)).scale == 1.0
    narrow, wide = (similarity.SimilarityReward(small_corpus, max_words=50, dim=d) for d in (50, 10**12))
    assert np.array_equal(narrow.embeddings, wide.embeddings)  # no column past max_words is allocated


def test_similarity_without_co_occurrences_gives_zero_vectors(similarity: Any) -> None:
    tokens = np.array([3, 1, 4, 1, 3, 1, 4])  # the frequent words 3 and 4 only meet <unk> (1)
    embeddings = similarity.cooccurrence_embeddings(tokens, 5, window=1, dim=4, max_words=10, exclude=(0, 1))
    assert embeddings.shape == (5, 4) and not embeddings.any()
