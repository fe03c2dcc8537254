"""CorpusSpec: one value for the corpus and tokenizer settings, checked, saved and read back."""

from __future__ import annotations

import dataclasses
import inspect
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from irlm_env.corpus import Corpus, load_corpus
from irlm_env.corpus_spec import CorpusSpec
from irlm_env.envs.next_word import NextWordEnv
from irlm_env.envs.vector import NextWordVectorEnv
from irlm_env.errors import IrlmError


def test_string_and_number_options_give_one_spec_and_one_corpus() -> None:
    a = CorpusSpec("grammar", {"n_sentences": "400", "seed": 0})
    b = CorpusSpec("grammar", {"seed": "0", "n_sentences": 400})
    assert a == b and hash(a) == hash(b) and dict(a.options) == {"n_sentences": 400, "seed": 0}
    assert load_corpus(a) is load_corpus(b) is load_corpus("grammar", n_sentences="400", seed=0)


def test_a_spec_and_its_options_are_immutable() -> None:
    spec = CorpusSpec("grammar", {"n_sentences": 400})
    with pytest.raises(TypeError):
        spec.options["seed"] = 3  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "pydocs"  # type: ignore[misc]


def test_the_corpus_carries_the_spec_it_was_built_from() -> None:
    corpus = load_corpus("grammar", n_sentences=400, tokenizer="char", max_vocab=None)
    assert corpus.spec == CorpusSpec("grammar", {"n_sentences": 400}, "char", True, None, 1)
    assert corpus.name == "grammar" and load_corpus(corpus.spec) is corpus


def test_to_dict_is_json_and_from_dict_reads_it_back(tmp_path: Path) -> None:
    spec = CorpusSpec("text", {"path": tmp_path / "notes.txt"}, "word", False, 500, 2)
    data = json.loads(json.dumps(spec.to_dict()))
    assert data == {"name": "text", "options": {"path": str(tmp_path / "notes.txt")}, "tokenizer": "word",
                    "lowercase": False, "max_vocab": 500, "min_freq": 2}
    assert CorpusSpec.from_dict(data) == spec
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_defaults_are_the_same_everywhere() -> None:
    """load_corpus and the env spell the spec's defaults out for readers; they must agree."""
    spec = CorpusSpec()
    for function in (load_corpus, NextWordEnv):
        params = inspect.signature(function).parameters
        for name in ("tokenizer", "lowercase", "max_vocab", "min_freq"):
            assert params[name].default == getattr(spec, name), (function, name)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "gramar"}, "unknown corpus 'gramar'; did you mean 'grammar'"),
        ({"name": 3}, "corpus must be a corpus name, a CorpusSpec or a Corpus, got 3"),
        ({"options": {"sead": 1}}, "has no option 'sead'; did you mean 'seed'"),
        ({"options": {"seed": "x"}}, "option seed='x' must be of type int"),
        ({"options": {"seed": [1]}}, r"option seed=\[1\] is a list; options must be strings, numbers"),
        ({"options": ["seed"]}, "corpus options must be a mapping"),
        ({"tokenizer": "words"}, "unknown tokenizer 'words': did you mean 'word'"),
        ({"lowercase": "yes"}, "lowercase must be True or False, got 'yes'"),
        ({"max_vocab": 2}, "max_vocab=2 is not a vocabulary size"),
        ({"min_freq": 0}, "min_freq must be a positive integer, got 0"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(IrlmError, match=match):
        CorpusSpec(**{"name": "grammar", **kwargs})


GOOD = {"name": "grammar", "options": {"seed": 1}, "tokenizer": "word", "lowercase": True, "max_vocab": 100,
        "min_freq": 1}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (["grammar"], "corpus spec must be a JSON object, got list"),
        ({**GOOD, "extra": 1}, "unknown field 'extra'"),
        ({k: v for k, v in GOOD.items() if k != "min_freq"}, r"lacks the field\(s\) min_freq"),
        ({**GOOD, "name": 7}, "field 'name' must be a string, got int 7"),
        ({**GOOD, "options": [1]}, "field 'options' must be a JSON object, got list"),
        ({**GOOD, "options": {"seed": {"x": 1}}}, "field 'options' has 'seed'.*must be strings, numbers"),
        ({**GOOD, "tokenizer": None}, "field 'tokenizer' must be a string, got NoneType"),
        ({**GOOD, "lowercase": 1}, "field 'lowercase' must be true or false, got int 1"),
        ({**GOOD, "max_vocab": "100"}, "field 'max_vocab' must be a non-negative integer, got '100'"),
        ({**GOOD, "min_freq": True}, "field 'min_freq' must be a positive integer, got True"),
        ({**GOOD, "name": "no-such-corpus"}, "unknown corpus 'no-such-corpus'"),
    ],
)
def test_from_dict_checks_every_field_type(data: object, match: str) -> None:
    """Checkpoint headers are read back through from_dict: a crafted one gets a one-line error."""
    with pytest.raises(IrlmError, match=match):
        CorpusSpec.from_dict(data)


def test_load_corpus_takes_a_spec_or_settings_not_both() -> None:
    spec = CorpusSpec("grammar", {"n_sentences": 400})
    with pytest.raises(IrlmError, match=r"load_corpus\(spec\) got seed, tokenizer as well"):
        load_corpus(spec, tokenizer="char", seed=2)


def test_envs_take_a_spec_like_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = CorpusSpec("grammar", {"n_sentences": 400})
    corpus: Corpus = load_corpus(spec)
    assert NextWordEnv(corpus=spec).corpus is corpus
    assert NextWordVectorEnv(2, corpus=spec).corpus is corpus
    assert NextWordEnv(corpus="grammar", corpus_options={"n_sentences": "400"}).corpus is corpus
    with pytest.raises(IrlmError, match="corpus_options only apply when corpus is a name, but a CorpusSpec"):
        NextWordEnv(corpus=spec, corpus_options={"seed": 1})
