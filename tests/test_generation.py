"""generate_text: how the prompt is shown to the model, what each new token costs, and bad arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from irlm_agents.lm import generation
from irlm_agents.lm.checkpoints import save_model
from irlm_agents.lm.generation import generate_text
from irlm_agents.lm.model import ModelConfig, RNNLanguageModel
from irlm_env.corpus import Corpus, load_corpus
from irlm_env.errors import IrlmError


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return load_corpus("grammar", n_sentences=500)


def _saved(corpus: Corpus, path: Path, window: int | None = None) -> Path:
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(vocab_size=len(corpus.vocab), embedding_dim=8, hidden_size=16))
    extra = {} if window is None else {"eval_context_length": window}
    return save_model(model, path, corpus.vocab, corpus.tokenizer.config(), corpus_spec=corpus.spec, extra=extra)


def test_a_diverged_model_is_named_not_sampled(corpus: Corpus, tmp_path: Path) -> None:
    path = tmp_path / "m.irlm"
    model = RNNLanguageModel(ModelConfig(vocab_size=len(corpus.vocab), embedding_dim=8, hidden_size=16))
    with torch.no_grad():
        model.decoder.weight.fill_(float("nan"))
    save_model(model, path, corpus.vocab, corpus.tokenizer.config(), corpus_spec=corpus.spec)
    with pytest.raises(IrlmError, match="diverged.*best-perplexity.irlm"):
        generate_text(path, "the", max_tokens=3)


def test_each_prompt_line_follows_an_end_of_line_token(corpus: Corpus, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[list[int]] = []
    real = generation._Reader.read

    def spy(self: Any, ids: list[int]) -> torch.Tensor:
        read.append(list(ids))
        return real(self, ids)

    monkeypatch.setattr(generation._Reader, "read", spy)
    text = generate_text(_saved(corpus, tmp_path / "m.irlm"), "the cat sleeps .\nthe", max_tokens=3, temperature=0)
    vocab = corpus.vocab
    assert read[0] == [vocab.eos_id, *vocab.encode(["the", "cat", "sleeps", "."]).tolist(), vocab.eos_id,
                       vocab.encode(["the"]).tolist()[0]]
    assert text.startswith("the cat sleeps.\nthe ")  # the lines kept, each joined as the tokenizer joins


def test_blank_prompt_lines_are_shown_as_the_corpus_shows_them(corpus: Corpus, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[list[int]] = []
    real = generation._Reader.read
    monkeypatch.setattr(generation._Reader, "read", lambda self, ids: read.append(list(ids)) or real(self, ids))
    path = _saved(corpus, tmp_path / "m.irlm")
    eos, the = corpus.vocab.eos_id, corpus.vocab.encode(["the"]).tolist()[0]
    text = generate_text(path, "the\n\nthe", max_tokens=2, temperature=0)
    assert read[0] == [eos, the, eos, the]  # no end-of-line pair: the corpus has no blank lines
    assert text.startswith("the\n\nthe")  # the prompt's lines as typed
    read.clear()
    generate_text(path, "the\n", max_tokens=1, temperature=0)
    assert read[0] == [eos, the, eos]  # a final line break: continue on a new line


@pytest.mark.parametrize("window", [None, 4])
def test_each_new_token_costs_one_step_of_a_recurrent_model(corpus: Corpus, tmp_path: Path, window: int | None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    lengths: list[int] = []
    real = RNNLanguageModel.forward

    def spy(self: RNNLanguageModel, tokens: torch.Tensor, hidden: Any = None) -> Any:
        lengths.append(tokens.shape[1])
        return real(self, tokens, hidden)

    monkeypatch.setattr(RNNLanguageModel, "forward", spy)
    path = _saved(corpus, tmp_path / "m.irlm", window)
    generate_text(path, "the old dog", max_tokens=40, seed=3)
    assert lengths[0] == (4 if window is None else window)  # <eos> and three words, or the window
    assert set(lengths[1:]) <= {1 if window is None else window}


@pytest.mark.parametrize(("options", "problem"), [
    ({"max_tokens": 2.5}, "max_tokens must be a positive integer, got 2.5"),
    ({"max_tokens": True}, "max_tokens must be a positive integer, got True"),
    ({"top_k": 2.5}, "top_k must be a non-negative integer, got 2.5"),
    ({"temperature": "0.5"}, "temperature must be a finite number >= 0"),
    ({"temperature": -1.0}, "temperature must be a finite number >= 0"),
])
def test_bad_arguments_are_one_clear_error(corpus: Corpus, tmp_path: Path, options: dict[str, Any],
                                           problem: str) -> None:
    with pytest.raises(IrlmError, match=problem):
        generate_text(_saved(corpus, tmp_path / "m.irlm"), "the", **options)
