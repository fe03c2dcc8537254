"""Tokenizers: what counts as a token, readable joining, configs, and bad names."""

from __future__ import annotations

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
