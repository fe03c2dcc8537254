"""The built-in corpora: grammar (exact best accuracy), pydocs (stdlib prose) and text (user files)."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from irlm_env.cache import CacheWarning
from irlm_env.corpora import grammar as grammar_module
from irlm_env.corpora import pydocs
from irlm_env.corpora.grammar import CLASSES, Grammar, grammar_corpus
from irlm_env.corpora.text import text_corpus
from irlm_env.corpora.registry import corpus_registry
from irlm_env.corpus import Corpus, clear_memo, load_corpus
from irlm_env.errors import IrlmError


@pytest.fixture(autouse=True)
def fresh_memo() -> Iterator[None]:
    clear_memo()
    yield
    clear_memo()


def test_builtins_are_registered_through_the_hook() -> None:
    registry = corpus_registry()
    for name in ("pydocs", "grammar", "text"):
        entry = registry.get(name)
        assert entry.plugin_name == "irlm_env.corpora.builtin" and entry.description


# --- grammar --------------------------------------------------------------------------------


def bayes_table(corpus: Corpus, grammar: Grammar) -> np.ndarray:
    """Bayes-optimal next-token id for every token id (the state is the last token's class)."""
    vocab = corpus.vocab
    table = np.full(len(vocab), vocab.unk_id)
    for i, token in enumerate(vocab.tokens):
        if token == "<eos>" or token in grammar.state_of:
            predicted = grammar.predict(None if token == "<eos>" else token)
            table[i] = vocab.eos_id if predicted == grammar_module.END else vocab.id_of(predicted)
    return table


def accuracy(predict: np.ndarray, ids: np.ndarray) -> float:
    return float(np.mean(predict[ids[:-1]] == ids[1:]))


@pytest.fixture(scope="module")
def big_grammar() -> Corpus:
    return load_corpus("grammar", n_sentences=60000, seed=1)


def test_grammar_best_accuracy_is_exposed_and_in_a_useful_range(big_grammar: Corpus) -> None:
    best = Grammar.default().best_accuracy()
    assert big_grammar.best_accuracy == best
    assert 0.5 < best < 0.7


def test_bayes_predictor_scores_the_best_accuracy_on_validation(big_grammar: Corpus) -> None:
    ids = big_grammar.split("validation")
    assert len(ids) > 15000  # standard error of the mean below 0.004
    assert accuracy(bayes_table(big_grammar, Grammar.default()), ids) == pytest.approx(big_grammar.best_accuracy, abs=0.015)


def test_count_bigram_fit_on_train_approaches_the_best_accuracy(big_grammar: Corpus) -> None:
    train, size = big_grammar.split("train"), len(big_grammar.vocab)
    counts = np.zeros((size, size))
    np.add.at(counts, (train[:-1], train[1:]), 1)
    predicted = counts.argmax(axis=1)
    assert accuracy(predicted, big_grammar.split("validation")) == pytest.approx(big_grammar.best_accuracy, abs=0.015)
    assert accuracy(predicted, big_grammar.split("validation")) > 2.5 * unigram_accuracy(big_grammar)


def unigram_accuracy(corpus: Corpus) -> float:
    train = corpus.split("train")
    return float(np.mean(corpus.split("validation")[1:] == np.bincount(train[1:]).argmax()))


def test_best_accuracy_matches_a_monte_carlo_estimate() -> None:
    grammar = Grammar.default()
    sentences = grammar.sample(30000, seed=5)
    correct = total = 0
    for sentence in sentences:
        previous = None
        for token in [*sentence.split(), grammar_module.END]:
            correct += grammar.predict(previous) == token
            total += 1
            previous = token
    assert correct / total == pytest.approx(grammar.best_accuracy(), abs=0.01)


def test_grammar_shape() -> None:
    words = [w for ws in CLASSES.values() for w in ws]
    assert len(words) == len(set(words))  # every word in exactly one class: state = last token
    assert 30 <= len(words) <= 70
    grammar = Grammar.default()
    for state, dist in grammar.next_tokens.items():
        probs = sorted((p for _, p in dist), reverse=True)
        assert sum(probs) == pytest.approx(1.0)
        assert len(probs) == 1 or probs[0] > probs[1]  # a clear favourite in every state
    lengths = [len(s.split()) + 1 for s in grammar.sample(2000, seed=0)]
    assert 5 <= np.mean(lengths) <= 10 and min(lengths) >= 3


def test_grammar_is_seeded() -> None:
    assert grammar_corpus(seed=3, n_sentences=50).units == grammar_corpus(seed=3, n_sentences=50).units
    assert grammar_corpus(seed=3, n_sentences=50).units != grammar_corpus(seed=4, n_sentences=50).units


@pytest.mark.parametrize(("option", "value"), [("n_sentences", 2), ("n_sentences", 1.5), ("seed", -1)])
def test_grammar_rejects_bad_options(option: str, value: object) -> None:
    with pytest.raises(IrlmError, match=option):
        grammar_corpus(**{option: value})


def test_best_accuracy_is_withheld_when_it_does_not_apply() -> None:
    assert load_corpus("grammar", n_sentences=300, tokenizer="char").best_accuracy is None
    assert load_corpus("grammar", n_sentences=300, max_vocab=20).best_accuracy is None
    assert load_corpus("grammar", n_sentences=300).best_accuracy is not None


# --- pydocs ---------------------------------------------------------------------------------

FAKE_MODULE = '''
"""Tools for counting sheep before sleeping.

The counter keeps a running total of sheep.

>>> count(3)
3

Example::

    for sheep in flock:
        count(sheep)

Back to prose after the block.
"""
raise SystemExit("importing this module is forbidden")


class Flock:
    """A group of sheep that move together. Each sheep has a name."""

    def count(self):
        """Return the number of sheep in the flock."""
'''


@pytest.fixture
def fake_stdlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "lib"
    (root / "test").mkdir(parents=True)
    (root / "sheep.py").write_text(FAKE_MODULE)
    (root / "test" / "test_sheep.py").write_text('"""This sentence comes from a test file."""')
    (root / "broken.py").write_text("def (:\n")
    monkeypatch.setattr(pydocs, "stdlib_path", lambda: root)
    monkeypatch.setenv("IRLM_CACHE_DIR", str(tmp_path / "cache"))
    return root


def test_pydocs_extracts_prose_from_docstrings_without_importing(fake_stdlib: Path) -> None:
    units = list(pydocs.pydocs_corpus().units)
    assert units == [
        "Tools for counting sheep before sleeping.",
        "The counter keeps a running total of sheep.",
        "Back to prose after the block.",
        "A group of sheep that move together.",
        "Each sheep has a name.",
        "Return the number of sheep in the flock.",
    ]


def test_pydocs_extraction_is_cached(fake_stdlib: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = pydocs.pydocs_corpus().units

    def forbidden(files: list[Path]) -> list[str]:
        raise AssertionError("extracted again despite the cache")

    monkeypatch.setattr(pydocs, "extract_sentences", forbidden)
    assert pydocs.pydocs_corpus().units == first


def test_a_damaged_pydocs_cache_is_re_extracted(fake_stdlib: Path, tmp_path: Path) -> None:
    first = pydocs.pydocs_corpus().units
    (cache_file,) = (tmp_path / "cache").glob("pydocs-*.json")
    data = json.loads(cache_file.read_text())
    data["units"][0] = "Injected sentence."
    cache_file.write_text(json.dumps(data))
    with pytest.warns(RuntimeWarning, match="re-extracting pydocs"):
        assert pydocs.pydocs_corpus().units == first
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pydocs.pydocs_corpus().units == first


def test_pydocs_goes_on_without_an_unwritable_cache(fake_stdlib: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("IRLM_CACHE_DIR", str(tmp_path / "file" / "cache"))
    with pytest.warns(CacheWarning, match="going on without it"):
        units = list(pydocs.pydocs_corpus().units)
    assert units[0] == "Tools for counting sheep before sleeping."


def test_pydocs_goes_on_when_its_cache_folder_cannot_be_searched(fake_stdlib: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    is_file = Path.is_file

    def denied(path: Path) -> bool:
        if path.name.startswith("pydocs-"):
            raise PermissionError(13, "Permission denied", str(path))
        return is_file(path)

    monkeypatch.setattr(Path, "is_file", denied)
    with pytest.warns(RuntimeWarning, match="re-extracting pydocs.*Permission denied"):
        units = list(pydocs.pydocs_corpus().units)
    assert units[0] == "Tools for counting sheep before sleeping."


def test_real_pydocs_is_a_sizeable_english_corpus() -> None:
    corpus = load_corpus("pydocs")
    assert corpus is load_corpus()  # the default corpus
    train = corpus.split("train")
    assert len(train) > 200_000
    top = corpus.vocab.tokens[3:13]
    assert "the" in top and "." in top and "of" in top
    assert np.mean(train == corpus.vocab.unk_id) < 0.01


# --- text -----------------------------------------------------------------------------------


def test_text_file_units_are_non_empty_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffFirst line  \n\n   \nSecond line\r\nthird".encode())
    assert list(text_corpus(str(path)).units) == ["First line", "Second line", "third"]


def test_text_directory_reads_text_files_recursively_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("from b/z\n")
    (tmp_path / "a.md").write_text("from a\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    # hidden files and folders are left out, as a glob leaves them out
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "a-checkpoint.md").write_text("a stale copy\n")
    (tmp_path / ".hidden.txt").write_text("hidden\n")
    assert list(text_corpus(tmp_path).units) == ["from a", "from b/z"]


def test_text_glob(tmp_path: Path) -> None:
    for name in ("x1.log", "x2.log", "y.log"):
        (tmp_path / name).write_text(f"{name}\n")
    assert list(text_corpus(str(tmp_path / "x*.log")).units) == ["x1.log", "x2.log"]
    # a pattern that yields a file twice reads it once
    assert list(text_corpus(str(tmp_path / "**" / "**" / "x1.log")).units) == ["x1.log"]
    with pytest.raises(IrlmError, match="matches no files"):
        text_corpus(str(tmp_path / "q*.log"))


def test_text_empty_path_is_refused_not_read_as_the_current_folder() -> None:
    for empty in ("", "  "):
        with pytest.raises(IrlmError, match="text corpus path is empty"):
            text_corpus(empty)


def test_text_missing_path(tmp_path: Path) -> None:
    with pytest.raises(IrlmError, match=r"nope\.txt' does not exist; pass an existing file"):
        load_corpus("text", path=str(tmp_path / "nope.txt"))


def test_text_directory_without_text_files(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(b"\x00\x01")
    with pytest.raises(IrlmError, match=r"contains no text files.*\.txt"):
        load_corpus("text", path=str(tmp_path))


@pytest.mark.parametrize("content", ["", "  \n\t\n   "])
def test_text_empty_or_whitespace_only(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.txt"
    path.write_text(content)
    with pytest.raises(IrlmError, match=r"empty\.txt is empty or whitespace only"):
        load_corpus("text", path=str(path))


def test_text_not_utf8_names_the_file_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 ok\n".encode("utf-8") + "na\u00efve\n".encode("latin-1"))
    with pytest.raises(IrlmError, match=r"latin1\.txt' is not valid UTF-8 \(byte offset 11: .*convert it"):
        load_corpus("text", path=str(path))


@pytest.mark.parametrize(("special", "kind"), [("fifo", "a FIFO"), ("devnull", "a character device")])
def test_text_path_that_is_no_regular_file_says_so(tmp_path: Path, special: str, kind: str) -> None:
    path = Path(os.devnull)
    if special == "fifo":
        path = tmp_path / "pipe.txt"
        os.mkfifo(path)
    with pytest.raises(IrlmError, match=rf"'{re.escape(str(path))}' is not a regular file \({kind}\); pass a text file"):
        load_corpus("text", path=str(path))


def test_text_file_that_cannot_be_read_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("hidden\n")
    real_open = open

    def denied(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denied)
    monkeypatch.setattr(Path, "read_bytes", lambda self: denied(self))
    with pytest.raises(IrlmError, match=r"cannot read text corpus file '.*secret\.txt' \(Permission denied\); make it "
                                        r"readable") as caught:
        text_corpus(str(path))
    assert "\n" not in str(caught.value)


def test_text_file_whose_read_fails_names_it() -> None:
    with pytest.raises(IrlmError, match=r"cannot read text corpus file '/proc/self/mem' \(Input/output error\)"):
        text_corpus("/proc/self/mem")


@pytest.mark.parametrize("block", [1, 5, 64, 1 << 20])
def test_text_lines_read_in_blocks_are_the_lines_of_the_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   block: int) -> None:
    monkeypatch.setattr("irlm_env.corpora.text._BLOCK_BYTES", block)
    monkeypatch.setattr("irlm_env.corpora.text._DECODE_LINES", 2)
    text = "\ufeffCafé  \r\nnaïve 😀\n\n \t\nend\u2028of\x85line\rnext\x0cform\r\n\r\nlast  "
    path = tmp_path / "tricky.txt"
    path.write_bytes(text.encode("utf-8"))
    expected = [line.rstrip() for line in text.removeprefix("\ufeff").splitlines() if line.strip()]
    lines = text_corpus(str(path)).units
    assert list(lines) == expected and len(lines) == len(expected) == 8
    assert [lines[i] for i in range(-len(expected), len(expected))] == expected * 2
    assert lines[1:6] == expected[1:6] and lines[::3] == expected[::3] and lines[5:2] == []
    with pytest.raises(IndexError):
        lines[8]


def test_text_not_utf8_in_a_later_block_names_the_file_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("irlm_env.corpora.text._BLOCK_BYTES", 4)
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 ok\n".encode("utf-8") + "na\u00efve\n".encode("latin-1"))
    with pytest.raises(IrlmError, match=r"latin1\.txt' is not valid UTF-8 \(byte offset 11: "):
        text_corpus(str(path))
