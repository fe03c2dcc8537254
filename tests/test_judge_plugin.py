"""The ``judge`` reward (plugins/irlm-judge): pays from a judge's view of the true history, never the target.

The module is imported from the source tree, as tests/test_plugin_packages.py does; the
install through pip and entry points is checked there. Histories are sliced from the corpus
here, the way the env hands a reward that declares ``history_length`` its context.
"""

from __future__ import annotations

import importlib
import pickle
import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from irlm_agents.lm.checkpoints import save_model
from irlm_agents.lm.model import ModelConfig, RNNLanguageModel
from irlm_agents.lm.ngram import WittenBellModel
import irlm_env  # noqa: F401  (registers the env ids)
from irlm_env import IrlmError, plugins
from irlm_env.corpus import Corpus, load_corpus
from irlm_env.rewards import make_reward

ROOT = Path(__file__).resolve().parents[1]
ROWS = 48


@pytest.fixture
def judge_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT / "plugins" / "irlm-judge"))
    return importlib.import_module("irlm_judge")


@pytest.fixture
def registered(judge_module: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The judge registered at run time, alone: an installed copy is not loaded beside it."""
    monkeypatch.setenv("IRLM_LOAD_PLUGINS", "")
    plugins.reset_plugins()
    plugins.register_plugin(judge_module, "irlm-judge")
    yield judge_module
    plugins.reset_plugins()


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return load_corpus("grammar", n_sentences=2000)


def _histories(corpus: Corpus, width: int, rows: int = ROWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, width)`` true histories from the validation split and the token after each."""
    text = corpus.split("validation")
    positions = np.random.default_rng(seed).integers(width, len(text) - 1, size=rows)
    return np.stack([text[positions - width + i] for i in range(width)], axis=1), text[positions]


def _direct_top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """The k most likely tokens per row by a full sort (probability down, then id up)."""
    order = np.lexsort((np.broadcast_to(np.arange(probs.shape[1]), probs.shape), -probs), axis=1)
    mask = np.zeros(probs.shape, dtype=bool)
    np.put_along_axis(mask, order[:, :k], True, axis=1)
    return mask


def _tiny_checkpoint(corpus: Corpus, path: Path, tokenizer_config: dict[str, object] | None = None) -> RNNLanguageModel:
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(vocab_size=len(corpus.vocab), embedding_dim=8, hidden_size=16))
    save_model(model, path, corpus.vocab, tokenizer_config or corpus.tokenizer.config(), corpus_spec=corpus.spec)
    return model


def test_distributions_match_probabilities_for_every_token(corpus: Corpus) -> None:
    train, text = corpus.split("train"), corpus.split("validation")
    model = WittenBellModel(train, 4, len(corpus.vocab))
    positions = np.arange(0, 300)
    windows = np.stack([np.where(positions - back >= 0, text[np.maximum(positions - back, 0)], 0) for back in (2, 1, 0)], 1)
    dists = model.distributions(windows)
    np.testing.assert_allclose(dists.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(dists[np.arange(300), text[positions + 1]], model.probabilities(text, positions), rtol=1e-12)
    # A narrower row reads as left-padded, a wider one by its last tokens.
    np.testing.assert_array_equal(model.distributions(windows[:, 1:]), model.distributions(np.pad(windows[:, 1:], ((0, 0), (1, 0)))))
    np.testing.assert_array_equal(model.distributions(np.pad(windows, ((0, 0), (2, 0)), constant_values=5)), dists)


def test_top_k_pays_exactly_the_judges_top_tokens(judge_module: Any, corpus: Corpus) -> None:
    reward = judge_module.judge(corpus, order=3, top_k=3)
    assert reward.history_length == 2
    contexts, targets = _histories(corpus, 2)
    probs = WittenBellModel(corpus.split("train"), 3, len(corpus.vocab)).distributions(contexts)
    table = reward.table(targets, contexts)
    np.testing.assert_array_equal(table, _direct_top_k(probs, 3).astype(np.float64))
    assert np.all(table.sum(axis=1) == 3.0)
    assert 0 < table[np.arange(ROWS), targets].mean() < 1  # the judge is good but not the answer key


def test_top_k_breaks_ties_towards_lower_ids(judge_module: Any) -> None:
    probs = np.array([[0.1, 0.3, 0.2, 0.2, 0.2], [0.25, 0.25, 0.25, 0.25, 0.0]])
    np.testing.assert_array_equal(judge_module.top_k_mask(probs, 2), _direct_top_k(probs, 2))
    np.testing.assert_array_equal(judge_module.top_k_mask(probs, 2)[0], [False, True, True, False, False])


def test_probability_pays_the_judges_probability(judge_module: Any, corpus: Corpus) -> None:
    reward = judge_module.judge(corpus, pay="probability")
    contexts, targets = _histories(corpus, 3)
    expected = WittenBellModel(corpus.split("train"), 4, len(corpus.vocab)).distributions(contexts)
    np.testing.assert_array_equal(reward.table(targets, contexts), expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(reward)).table(targets, contexts), expected)


@pytest.mark.parametrize("options", [{"top_k": 2}, {"pay": "probability"}])
def test_forms_agree_and_never_read_the_target(judge_module: Any, corpus: Corpus, options: dict[str, Any]) -> None:
    reward = judge_module.judge(corpus, **options)
    contexts, targets = _histories(corpus, 3)
    rng = np.random.default_rng(1)
    actions = rng.integers(0, len(corpus.vocab), size=(ROWS, 6))
    actions[:, 0] = targets
    batch = reward.batch(actions, targets, contexts)
    table = reward.table(targets, contexts)
    np.testing.assert_array_equal(np.take_along_axis(table, actions, axis=1), batch)
    scalar = [[reward(int(a), int(t), c) for a in row] for row, t, c in zip(actions, targets, contexts)]
    np.testing.assert_array_equal(scalar, batch)
    for fake in (np.zeros_like(targets), rng.integers(0, len(corpus.vocab), size=ROWS)):
        np.testing.assert_array_equal(reward.batch(actions, fake, contexts), batch)
        np.testing.assert_array_equal(reward.table(fake, contexts), table)
        assert reward(int(actions[0, 0]), int(fake[0]), contexts[0]) == batch[0, 0]


def test_the_judge_runs_once_per_state(judge_module: Any, corpus: Corpus) -> None:
    reward = judge_module.judge(corpus, top_k=2)
    calls: list[int] = []
    judge = reward.judge
    reward.judge = lambda contexts: calls.append(len(contexts)) or judge(contexts)
    contexts, targets = _histories(corpus, 3)
    state = contexts.copy()
    first = reward.batch(targets[:, None], targets, state)  # score()
    np.testing.assert_array_equal(reward.table(targets, state.copy()), reward.table(targets, state))  # step()
    assert calls == [ROWS]
    state[:] = np.roll(state, 1, axis=0)  # the env moves its buffer on in place: a new state
    moved = reward.batch(targets[:, None], targets, state)
    assert calls == [ROWS, ROWS]
    np.testing.assert_array_equal(moved, judge_module.judge(corpus, top_k=2).batch(targets[:, None], targets, state))
    np.testing.assert_array_equal(reward.batch(targets[:, None], targets, contexts), first)
    assert calls == [ROWS, ROWS, ROWS]


def test_many_rows_are_judged_in_passes(judge_module: Any, corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    reward = judge_module.judge(corpus, pay="probability")
    contexts, targets = _histories(corpus, 3)
    whole = reward.table(targets, contexts)
    monkeypatch.setattr(judge_module, "PASS_ELEMENTS", 10 * len(corpus.vocab))
    calls: list[int] = []
    judge = reward.judge
    reward.judge = lambda rows: calls.append(len(rows)) or judge(rows)
    np.testing.assert_array_equal(reward.table(targets, contexts), whole)
    assert calls == [10] * 4 + [ROWS - 40]


def test_checkpoint_judge_uses_the_models_next_token_distribution(judge_module: Any, corpus: Corpus, tmp_path: Path) -> None:
    model = _tiny_checkpoint(corpus, tmp_path / "judge.irlm").eval()
    path = str(tmp_path / "judge.irlm")
    reward = judge_module.judge(corpus, checkpoint=path, history=6, pay="probability")
    assert reward.history_length == 6
    contexts, targets = _histories(corpus, 9)
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(contexts[:, -6:].astype(np.int64)))
    expected = torch.softmax(logits[:, -1].double(), dim=-1).numpy()
    np.testing.assert_allclose(reward.table(targets, contexts), expected, rtol=1e-6)  # cut to the last 6
    top = judge_module.judge(corpus, checkpoint=path, history=6, top_k=4)
    np.testing.assert_array_equal(top.table(targets, contexts), _direct_top_k(expected, 4))
    assert judge_module.judge(corpus, checkpoint=path).history_length == 32
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(top)).table(targets, contexts), top.table(targets, contexts))


def test_options_from_a_command_line_are_converted(registered: Any, corpus: Corpus) -> None:
    reward = make_reward("judge", corpus, order="3", top_k="2")
    contexts, targets = _histories(corpus, 2)
    np.testing.assert_array_equal(reward.table(targets, contexts), registered.judge(corpus, order=3, top_k=2).table(targets, contexts))


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"pay": "prob"}, "pay='prob' is unknown; did you mean 'probability'? available: probability, top_k"),
        ({"top_k": 0}, "option top_k must be an integer from 1 to {V}, got 0"),
        ({"top_k": 10_000}, "option top_k must be an integer from 1 to {V}, got 10000"),
        ({"pay": "probability", "top_k": 2}, "top_k=2 applies to pay=top_k only"),
        ({"order": 1}, "option order must be an integer from 2 to 4, got 1"),
        ({"order": 5}, "option order must be an integer from 2 to 4, got 5"),
        ({"history": 8}, "history=8 applies to a checkpoint judge only"),
        ({"device": "cpu"}, "device='cpu' applies to a checkpoint judge only"),
        ({"checkpoint": "{tmp}/judge.irlm", "order": 3}, "order=3 applies to the n-gram judge only"),
        ({"checkpoint": "{tmp}/judge.irlm", "history": 0}, "option history must be an integer from 1 to 4096, got 0"),
        ({"checkpoint": "{tmp}/judge.irlm", "history": 10**12}, "option history must be an integer from 1 to 4096, got 1000000000000"),
        ({"checkpoint": "{tmp}/judge.irlm", "device": "gpu"}, "judge reward option device='gpu': unknown device 'gpu'"),
        ({"checkpoint": "{tmp}/missing.irlm"}, "checkpoint='{tmp}/missing.irlm': checkpoint '{tmp}/missing.irlm' does not exist"),
    ],
)
def test_bad_options_are_refused(
    judge_module: Any, corpus: Corpus, tmp_path: Path, options: dict[str, Any], problem: str
) -> None:
    _tiny_checkpoint(corpus, tmp_path / "judge.irlm")
    options = {key: value.format(tmp=tmp_path) if isinstance(value, str) else value for key, value in options.items()}
    with pytest.raises(IrlmError, match=re.escape(problem.format(V=len(corpus.vocab), tmp=tmp_path))):
        judge_module.judge(corpus, **options)


def test_a_checkpoint_from_other_corpus_settings_is_refused(judge_module: Any, corpus: Corpus, tmp_path: Path) -> None:
    other = load_corpus("grammar", n_sentences=2000, max_vocab=50)
    _tiny_checkpoint(other, tmp_path / "other.irlm")
    with pytest.raises(IrlmError) as vocabulary:
        judge_module.judge(corpus, checkpoint=str(tmp_path / "other.irlm"))
    message = str(vocabulary.value)
    assert "does not fit the env's corpus" in message and "different vocabulary (50 tokens" in message
    assert "Train the judge on the same corpus settings as the env" in message
    assert "judge: name=grammar" in message and "max_vocab=50" in message and "env: name=grammar" in message
    assert "\n" not in message
    _tiny_checkpoint(corpus, tmp_path / "cased.irlm", {"name": "word", "lowercase": False})
    with pytest.raises(IrlmError, match=r"another tokenizer \(WordTokenizer\(lowercase=False\)\).*Train the judge"):
        judge_module.judge(corpus, checkpoint=str(tmp_path / "cased.irlm"))


def test_envs_hand_the_judge_the_true_history_whatever_the_agents_context(registered: Any, corpus: Corpus) -> None:
    """A recurrent agent sees one token; the judge still reads three of true text (the twin env's window)."""
    reward = make_reward("judge", corpus, top_k=2)
    vocab = len(corpus.vocab)
    judged = gym.make_vec("irlm/NextWord-v0", num_envs=4, corpus=corpus, reward=reward, context_length=1)
    twin = gym.make_vec("irlm/NextWord-v0", num_envs=4, corpus=corpus, context_length=3)
    judged.reset(seed=0)
    obs, _ = twin.reset(seed=0)
    fresh = registered.judge(corpus, top_k=2)
    rng = np.random.default_rng(0)
    for step in range(5):
        scores = judged.unwrapped.score(np.tile(np.arange(vocab), (4, 1)))
        actions = rng.integers(0, vocab, size=4)
        _, rewards, *_ = judged.step(actions)
        np.testing.assert_array_equal(rewards, scores[np.arange(4), actions])
        if step >= 3:  # the twin's window has left the episode start's padding: it is the true text
            np.testing.assert_array_equal(scores, fresh.table(np.zeros(4, np.int64), obs))
        obs, *_ = twin.step(actions)
    single = gym.make("irlm/NextWord-v0", corpus=corpus, reward="judge", reward_options={"pay": "probability"}, context_length=1)
    single_twin = gym.make("irlm/NextWord-v0", corpus=corpus, context_length=3)
    single.reset(seed=1)
    window, _ = single_twin.reset(seed=1)
    probability = registered.judge(corpus, pay="probability")
    for step in range(4):
        _, value, *_ = single.step(step)
        if step >= 3:
            assert value == probability(step, 0, window)
        window, *_ = single_twin.step(step)
