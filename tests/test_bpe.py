"""The bpe tokenizer: trained on the train split only, deterministic, cached with the corpus,
carried by checkpoints, decoded by ``irlm generate``, and every corpus works with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import irlm_env
from irlm_agents.cli import main
from irlm_agents.lm.checkpoints import load_model, save_model
from irlm_agents.lm.generation import generate_text
from irlm_agents.lm.model import ModelConfig, RNNLanguageModel
from irlm_env.corpus import Corpus, clear_memo, load_corpus
from irlm_env.corpus_spec import CorpusSpec
from irlm_env.corpus_stats import corpus_statistics
from irlm_env.errors import IrlmError
from irlm_env.tokenizers import BpeTokenizer, make_tokenizer

PROVERBS = """The quick brown fox jumps over the lazy dog.
A stitch in time saves nine, they say.
Rome was not built in a day, but it was built.
All that glitters is not gold, and not all those who wander are lost.
"""


@pytest.fixture(autouse=True)
def fresh_memo() -> Iterator[None]:
    clear_memo()
    yield
    clear_memo()


@pytest.fixture
def proverbs(tmp_path: Path) -> Path:
    path = tmp_path / "proverbs.txt"
    path.write_text(PROVERBS * 40, encoding="utf-8")
    return path


def _learned(tokenizer: BpeTokenizer) -> list[str]:
    assert tokenizer.model is not None
    return list(json.loads(tokenizer.model)["model"]["vocab"])


def test_bpe_cuts_bytes_and_joins_back_to_the_text(proverbs: Path) -> None:
    corpus = load_corpus("text", path=str(proverbs), tokenizer="bpe", max_vocab=400)
    tok = corpus.tokenizer
    assert isinstance(tok, BpeTokenizer) and len(corpus.vocab) <= 400
    assert tok.join(tok.split("Hello, Wörld! 😀 <eos>")) == "hello, wörld! 😀 <eos>"
    assert tok.split("the lazy dog") == ["Ġthe", "Ġlazy", "Ġdog"]  # learnt whole words
    first_line = corpus.vocab.decode(corpus.split("train")[1:12])
    assert tok.join(first_line[: first_line.index("<eos>")]) == "the quick brown fox jumps over the lazy dog."
    assert corpus.best_accuracy is None and corpus.split("train").dtype == corpus.vocab.id_dtype
    # leading spaces and tabs come back too (ByteLevel's own prefix space skips a text that starts with one)
    for text in ("  indented line", " x", "\ttabbed", "x", ""):  # lowercased: the default
        assert tok.join(tok.split(text)) == text


def test_bpe_is_trained_on_the_train_split_only(tmp_path: Path) -> None:
    common = [f"line {i % 7} of plain words here" for i in range(300)]
    rare = ["zyzzyva zyzzyva zyzzyva"] * 20
    late, early = tmp_path / "late.txt", tmp_path / "early.txt"
    late.write_text("\n".join(common + rare) + "\n")  # the rare lines are the test split
    early.write_text("\n".join(rare + common) + "\n")
    held_out = load_corpus("text", path=str(late), tokenizer="bpe", max_vocab=400).tokenizer
    seen = load_corpus("text", path=str(early), tokenizer="bpe", max_vocab=400).tokenizer
    assert not any("zyz" in token for token in _learned(held_out))
    assert "Ġzyzzyva" in _learned(seen)


def test_bpe_is_deterministic_and_cached_with_the_corpus(proverbs: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = load_corpus("text", path=str(proverbs), tokenizer="bpe", max_vocab=300)
    script = ("import sys; from irlm_env.corpus import load_corpus; "
              "c = load_corpus('text', path=sys.argv[1], tokenizer='bpe', max_vocab=300); "
              "print(c.tokenizer.model == open(sys.argv[2]).read(), c.vocab.content_hash)")
    (tmp_path / "model.json").write_text(corpus.tokenizer.model or "")
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "IRLM_CACHE_DIR": str(tmp_path / f"cache{seed}")}
        result = subprocess.run([sys.executable, "-c", script, str(proverbs), str(tmp_path / "model.json")],
                                capture_output=True, text=True, env=env, check=True)
        assert result.stdout.split() == ["True", corpus.vocab.content_hash]

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained again despite the cache")

    clear_memo()
    monkeypatch.setattr(BpeTokenizer, "train", never)
    cached = load_corpus("text", path=str(proverbs), tokenizer="bpe", max_vocab=300)
    assert cached is not corpus and cached.tokenizer == corpus.tokenizer and cached.vocab == corpus.vocab
    np.testing.assert_array_equal(cached.split("test"), corpus.split("test"))


@pytest.mark.parametrize(("max_vocab", "message"), [
    (100, r"max_vocab=100 is too small for the bpe tokenizer: it needs at least 259 \(3 special tokens \+ 256 "
          r"byte tokens\); use max_vocab >= 259"),
    (258, r"max_vocab=258 is too small .* at least 259"),
    (None, r"the bpe tokenizer needs max_vocab, its vocabulary size \(at least 259\)"),
    (10**9, r"max_vocab=1000000000 is too large for the bpe tokenizer, whose trainer allocates its tables up front; "
            r"use max_vocab <= 1,048,576"),
])
def test_a_bpe_vocabulary_below_the_specials_and_bytes_is_one_line(max_vocab: int | None, message: str) -> None:
    with pytest.raises(IrlmError, match=message) as caught:
        load_corpus("grammar", tokenizer="bpe", max_vocab=max_vocab)
    assert "\n" not in str(caught.value)
    with pytest.raises(IrlmError, match=message):
        CorpusSpec.from_dict({**CorpusSpec("grammar").to_dict(), "tokenizer": "bpe", "max_vocab": max_vocab})


def test_an_untrained_bpe_tokenizer_says_how_to_get_a_trained_one() -> None:
    with pytest.raises(IrlmError, match=r"not trained yet: load_corpus\(\.\.\., tokenizer='bpe'\) trains it"):
        make_tokenizer("bpe").split("text")


@pytest.mark.parametrize("model", ["not json", json.dumps({"model": {"type": "WordPiece"}}), 3])
def test_a_bpe_model_that_is_not_ours_is_refused(model: object) -> None:
    with pytest.raises(IrlmError, match="bpe tokenizer's model"):
        make_tokenizer("bpe", model=model)


# --- every corpus ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["grammar", "text", "pydocs"])
def bpe_corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    options: dict[str, object] = {}
    if request.param == "grammar":
        options = {"n_sentences": 2000}
    elif request.param == "text":
        path = tmp_path_factory.mktemp("bpe") / "proverbs.txt"
        path.write_text(PROVERBS * 30, encoding="utf-8")
        options = {"path": str(path)}
    return load_corpus(request.param, tokenizer="bpe", max_vocab=600, **options)


@pytest.mark.parametrize("mode", ["window", "line"])
def test_env_checkers_pass_on_every_corpus_cut_by_bpe(bpe_corpus: Corpus, mode: str) -> None:
    def make(**kwargs: object) -> gym.Env:
        return gym.make(irlm_env.ENV_ID, corpus=bpe_corpus, mode=mode, **kwargs).unwrapped

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(make(episode_length=16))
        sb3_check_env(make(episode_length=16))
        gym_check_env(make(context_length=1, render_mode="ansi"))
    env = make(context_length=3, render_mode="ansi")
    env.reset(seed=0)
    assert "Ġ" not in env.render()  # the frame is decoded text


def test_corpus_stats_with_bpe(bpe_corpus: Corpus, capsys: pytest.CaptureFixture[str]) -> None:
    stats = corpus_statistics(bpe_corpus, max_k=2)
    assert stats["tokenizer"]["name"] == "bpe" and "model" not in stats["tokenizer"]
    assert 259 <= stats["tokenizer"]["trained_tokens"] <= 597 and stats["vocab_size"] <= 600
    assert stats["splits"]["train"]["oov_rate"] == 0.0
    if bpe_corpus.name == "grammar":
        main(["corpus-stats", "grammar", "--corpus-option", "n_sentences=2000", "--tokenizer", "bpe",
              "--max-vocab", "600", "--max-k", "2", "--json"])
        assert json.loads(capsys.readouterr().out)["tokenizer"] == stats["tokenizer"]


# --- checkpoints ----------------------------------------------------------------------------


def _save(corpus: Corpus, path: Path, tokenizer_config: dict | None = None) -> Path:
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(vocab_size=len(corpus.vocab), embedding_dim=8, hidden_size=8))
    return save_model(model, path, corpus.vocab, tokenizer_config or corpus.tokenizer.config(),
                      corpus_spec=corpus.spec)


def test_checkpoints_carry_the_trained_tokenizer_and_generate_decodes_it(
    proverbs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = load_corpus("text", path=str(proverbs), tokenizer="bpe", max_vocab=300)
    path = _save(corpus, tmp_path / "m.irlm")
    checkpoint = load_model(path, vocab=corpus.vocab, tokenizer=corpus.tokenizer)
    assert make_tokenizer(**checkpoint.tokenizer_config) == corpus.tokenizer
    clear_memo()
    assert checkpoint.load_corpus().tokenizer == corpus.tokenizer  # rebuilt from the cache, checked
    text = generate_text(path, "The Quick", max_tokens=6, seed=1)
    assert text.startswith("the quick") and "Ġ" not in text and len(text) > len("the quick")
    capsys.readouterr()
    main(["generate", str(path), "--prompt", "The Quick", "--max-tokens", "6", "--seed", "1"])
    assert capsys.readouterr().out == text + "\n"


def test_a_checkpoint_with_another_tokenizer_is_refused(proverbs: Path, tmp_path: Path) -> None:
    corpus = load_corpus("text", path=str(proverbs), tokenizer="bpe", max_vocab=300)
    other = load_corpus("grammar", n_sentences=300, tokenizer="bpe", max_vocab=300).tokenizer
    assert other != corpus.tokenizer
    path = _save(corpus, tmp_path / "m.irlm", other.config())  # the model's tokens, cut another way
    with pytest.raises(IrlmError, match=r"m\.irlm' was trained with another tokenizer \(BpeTokenizer\(.*model_sha256"):
        load_model(path, vocab=corpus.vocab, tokenizer=corpus.tokenizer)
    with pytest.raises(IrlmError, match="another tokenizer"):
        load_model(path).load_corpus()


def test_a_checkpoint_with_a_crafted_bpe_model_is_unusable(proverbs: Path, tmp_path: Path) -> None:
    corpus = load_corpus("text", path=str(proverbs), tokenizer="bpe", max_vocab=300)
    crafted = {"name": "bpe", "lowercase": True, "model": json.dumps({"model": {"type": "Unigram"}})}
    path = _save(corpus, tmp_path / "m.irlm", crafted)
    with pytest.raises(IrlmError, match=r"m\.irlm' is unusable: the bpe tokenizer's model is not a byte-level BPE"):
        load_model(path)
