"""``free_top1``: top-1 when the model reads its own greedy predictions inside blocks of text."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from irlm_agents.lm.evaluation import evaluate
from irlm_agents.lm.model import ModelConfig, RNNLanguageModel
from irlm_agents.runs.report import training_report
from irlm_env.corpus import Corpus, load_corpus


@pytest.fixture(scope="module")
def grammar() -> Corpus:
    return load_corpus("grammar", n_sentences=3000)


def _tiny(corpus: Corpus, cell: str, steps: int = 0) -> RNNLanguageModel:
    """A tiny model, trained ``steps`` Adam steps on train windows so its guesses are often right."""
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(vocab_size=len(corpus.vocab), embedding_dim=8, hidden_size=12, cell=cell))
    text = torch.from_numpy(np.array(corpus.split("train"), dtype=np.int64))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(steps):
        starts = torch.randint(0, len(text) - 33, (16,))
        batch = torch.stack([text[a : a + 33] for a in starts.tolist()])
        logits, _ = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def _argmax(model: RNNLanguageModel, tokens: list[int], hidden: object = None) -> tuple[int, object]:
    logits, hidden = model(torch.tensor([tokens]), hidden)
    return int(logits[0, -1].argmax()), hidden


def _slow_free_top1(
    model: RNNLanguageModel, text: np.ndarray, context_length: int | None, streams: int, horizon: int, pad_id: int
) -> float:
    """One prediction at a time, straight from the definition in evaluate's docstring."""
    inputs, targets = text[:-1].tolist(), text[1:].tolist()
    n = len(targets)
    hits = 0
    with torch.no_grad():
        if context_length is None:
            length = math.ceil(n / min(streams, n))
            for first in range(0, n, length):
                true_state = free_state = None
                prediction = 0
                for t in range(min(length, n - first)):
                    i = first + t
                    if t % horizon == 0:
                        free_state, token = true_state, inputs[i]
                    else:
                        token = prediction
                    prediction, free_state = _argmax(model, [token], free_state)
                    hits += prediction == targets[i]
                    _, true_state = model(torch.tensor([[inputs[i]]]), true_state)
        else:
            for start in range(0, n, horizon):
                read = inputs[: start + 1]
                for i in range(start, min(start + horizon, n)):
                    window = ([pad_id] * context_length + read)[-context_length:]
                    prediction, _ = _argmax(model, window)
                    hits += prediction == targets[i]
                    read = read + [prediction]
    return hits / n


@pytest.mark.parametrize(("context_length", "horizon"), [(None, 5), (None, 16), (3, 5), (1, 4)])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_matches_a_step_by_step_reference(grammar: Corpus, context_length: int | None, horizon: int, cell: str) -> None:
    model = _tiny(grammar, cell, steps=60)
    text = grammar.split("validation")[:201]
    got = evaluate(model, grammar, "validation", context_length=context_length, max_tokens=200, batch_size=7,
                   horizon=horizon)
    want = _slow_free_top1(model, text, context_length, 7, horizon, model.config.pad_id)
    assert got["free_top1"] == pytest.approx(want, abs=1e-12)
    assert abs(want - got["top1"]) > 0.01 and got["top1"] > 0.2  # reading the true text would not pass


@pytest.mark.parametrize("context_length", [None, 3])
def test_a_horizon_of_one_is_ordinary_top1(grammar: Corpus, context_length: int | None) -> None:
    scores = evaluate(_tiny(grammar, "gru"), grammar, context_length=context_length, max_tokens=300, horizon=1)
    assert scores["free_top1"] == scores["top1"]


def _cycle(tmp_path: Path) -> Corpus:
    """Text in which every token has a single possible successor."""
    path = tmp_path / "cycle.txt"
    path.write_text("a b c d e\n" * 400, encoding="utf-8")
    return load_corpus("text", path=str(path), max_vocab=None)


def _successor_model(corpus: Corpus, successor: dict[int, int]) -> RNNLanguageModel:
    """A plain RNN whose greedy prediction is ``successor[current token]``, whatever came before."""
    v = len(corpus.vocab)
    model = RNNLanguageModel(ModelConfig(vocab_size=v, embedding_dim=v, hidden_size=v, cell="rnn"))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.embedding.weight.copy_(10 * torch.eye(v))
        model.rnn.weight_ih_l0.copy_(torch.eye(v))
        for token, following in successor.items():
            model.decoder.weight[following, token] = 10.0
    return model


def _successors(corpus: Corpus) -> dict[int, int]:
    text = corpus.split("validation")
    pairs = set(zip(text[:-1].tolist(), text[1:].tolist()))
    successor = dict(pairs)
    assert len(successor) == len(pairs) >= 5, "the text must be deterministic"
    return successor


@pytest.mark.parametrize("context_length", [None, 3])
def test_a_model_that_always_predicts_the_true_token_keeps_free_top1_at_one(
    tmp_path: Path, context_length: int | None
) -> None:
    corpus = _cycle(tmp_path)
    scores = evaluate(_successor_model(corpus, _successors(corpus)), corpus, context_length=context_length,
                      batch_size=4)
    assert scores["free_top1"] == scores["top1"] == 1.0


@pytest.mark.parametrize("context_length", [None, 3])
def test_one_wrong_successor_derails_the_rest_of_the_block(tmp_path: Path, context_length: int | None) -> None:
    """Read true text, the model misses only after ``c``; reading its own guess it misses on."""
    corpus = _cycle(tmp_path)
    successor = _successors(corpus)
    c, e = corpus.vocab.id_of("c"), corpus.vocab.id_of("e")
    successor[c] = e
    scores = evaluate(_successor_model(corpus, successor), corpus, context_length=context_length, horizon=16,
                      batch_size=4)  # recurrent: 4 streams of 30 tokens, so blocks are 16 long
    share_of_c = float(np.mean(corpus.split("validation")[:-1] == c))
    assert scores["top1"] == pytest.approx(1 - share_of_c, abs=1e-9)
    assert scores["free_top1"] < scores["top1"] - 0.2


def test_the_closing_report_shows_free_top1_under_the_models_top1() -> None:
    lines = training_report("supervised", {"top1": 0.4, "perplexity": 12.0, "free_top1": 0.31},
                            Path("r")).splitlines()
    model_row = next(i for i, line in enumerate(lines) if line.split()[:2] == ["trained", "model"])
    assert lines[model_row + 1].split()[:4] == ["reading", "its", "own", "0.310"]
