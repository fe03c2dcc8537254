"""Tokenizers: what counts as a token, readable joining, configs, and bad names."""

from __future__ import annotations

import pickle

import pytest

from irlm_env.errors import IrlmError
from irlm_env.tokenizers import CharTokenizer, WordTokenizer, make_tokenizer


def test_word_tokenizer_separates_words_and_punctuation() -> None:
    assert WordTokenizer().split("Hello, world! Don't stop (now).") == [
        "hello", ",", "world", "!", "don't", "stop", "(", "now", ")", ".",
    ]


def test_word_tokenizer_lowercasing_is_optional() -> None:
    assert WordTokenizer(lowercase=False).split("The Cat") == ["The", "Cat"]


def test_word_tokenizer_never_emits_special_tokens() -> None:
    assert WordTokenizer().split("<eos> <pad>") == ["<", "eos", ">", "<", "pad", ">"]


def test_word_join_is_readable() -> None:
    tok = WordTokenizer()
    assert tok.join(tok.split("Hello, world (really)! Yes.")) == "hello, world (really)! yes."


def test_char_tokenizer() -> None:
    assert CharTokenizer().split("Ab c") == ["a", "b", " ", "c"]
    assert CharTokenizer(lowercase=False).split("Ab") == ["A", "b"]
    assert CharTokenizer().join(["a", " ", "b"]) == "a b"


@pytest.mark.parametrize("name", ["word", "char"])
def test_config_rebuilds_the_same_tokenizer(name: str) -> None:
    tok = make_tokenizer(name, lowercase=False)
    config = tok.config()
    assert config == {"name": name, "lowercase": False}
    assert make_tokenizer(**config) == tok


def test_unknown_tokenizer_suggests_the_closest() -> None:
    with pytest.raises(IrlmError, match=r"unknown tokenizer 'wrod'.*did you mean 'word'.*char, word"):
        make_tokenizer("wrod")


def test_unknown_option_lists_the_accepted_ones() -> None:
    with pytest.raises(IrlmError, match=r"no option 'lower'.*lowercase"):
        make_tokenizer("word", lower=True)
    with pytest.raises(IrlmError, match="lowercase must be True or False"):
        make_tokenizer("word", lowercase="yes")


def test_a_trained_bpe_config_rebuilds_exactly_that_tokenizer() -> None:
    untrained = make_tokenizer("bpe", lowercase=False)
    assert untrained.config() == {"name": "bpe", "lowercase": False}
    trained = untrained.train(["Low lower lowest", "new newer newest"] * 20, vocab_size=280, min_freq=2,
                              show_progress=False)
    config = trained.config()
    assert set(config) == {"name", "lowercase", "model"} and trained != untrained
    rebuilt = make_tokenizer(**config)
    assert rebuilt == trained and rebuilt.split("Lowest newer") == trained.split("Lowest newer") == ["ĠLo", "west", "Ġnewer"]
    assert pickle.loads(pickle.dumps(trained)) == trained
    assert trained.summary()["trained_tokens"] <= 277 and "model" not in trained.summary()
    assert trained.split_many(["a b", "Low"]) == [trained.split("a b"), trained.split("Low")]


def test_only_a_tokenizer_that_learns_from_text_trains() -> None:
    with pytest.raises(TypeError, match="'word' tokenizer does not learn from text"):
        make_tokenizer("word").train(["a"], vocab_size=10, min_freq=1, show_progress=False)
