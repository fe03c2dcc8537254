"""load_corpus: splits, vocabulary from train only, the disk cache, the memo and bad input."""

from __future__ import annotations

import io
import json
import re
import time
import tracemalloc
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from irlm_env.corpus import Corpus, CorpusWarning, _check_units, clear_memo, load_corpus
from irlm_env.corpus_encoding import SPLITS, split_boundaries
from irlm_env import cache as cache_module
from irlm_env.cache import CacheWarning
from irlm_env.errors import IrlmError
from irlm_env.tokenizers import make_tokenizer
from irlm_env.vocabulary import EOS, Vocabulary


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh cache folder and memo per test, so each test sees exactly what it built."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("IRLM_CACHE_DIR", str(folder))
    clear_memo()
    yield folder
    clear_memo()


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    lines = [f"line {i} says the {'cat' if i % 3 else 'dog'} sat ." for i in range(200)]
    lines[-1] = "zebra only appears in the test split ."
    return write_lines(tmp_path / "small.txt", lines)


def test_splits_frame_every_unit_with_eos(text_file: Path) -> None:
    corpus = load_corpus("text", path=str(text_file))
    eos = corpus.vocab.eos_id
    total_units = 0
    for name in SPLITS:
        ids = corpus.split(name)
        assert ids.dtype == corpus.vocab.id_dtype and ids.ndim == 1 and ids.flags.c_contiguous
        assert ids[0] == eos and ids[-1] == eos
        assert not ids.flags.writeable  # shared by many envs: nobody may change it
        total_units += int(np.count_nonzero(ids == eos)) - 1
    assert total_units == 200


def test_splits_are_contiguous_blocks_in_order_and_disjoint(text_file: Path) -> None:
    corpus = load_corpus("text", path=str(text_file), max_vocab=None)
    vocab, tok = corpus.vocab, corpus.tokenizer
    units: list[list[str]] = []
    for name in SPLITS:
        tokens = vocab.decode(corpus.split(name))
        ends = [i for i, t in enumerate(tokens) if t == "<eos>"]
        units.extend(tokens[a + 1 : b] for a, b in zip(ends, ends[1:]))
    expected = [[t if t in vocab else "<unk>" for t in tok.split(line)] for line in text_file.read_text().splitlines()]
    assert units == expected


def test_split_sizes_are_90_5_5_by_tokens(text_file: Path) -> None:
    corpus = load_corpus("text", path=str(text_file))
    sizes = np.array([len(corpus.split(s)) for s in SPLITS], dtype=float)
    assert np.allclose(sizes / sizes.sum(), [0.9, 0.05, 0.05], atol=0.02)


def test_every_split_gets_a_unit_even_for_three_units(tmp_path: Path) -> None:
    corpus = load_corpus("text", path=str(write_lines(tmp_path / "t.txt", ["a b", "c a b", "b"])))
    assert [corpus.vocab.decode(corpus.split(s)) for s in SPLITS] == [
        ["<eos>", "a", "b", "<eos>"], ["<eos>", "<unk>", "a", "b", "<eos>"], ["<eos>", "b", "<eos>"],
    ]
    assert split_boundaries(np.array([100, 1, 1, 1])) == (1, 2)
    assert split_boundaries(np.array([1, 1, 1, 100])) == (2, 3)


def test_split_boundaries_give_train_the_unit_that_reaches_90_percent() -> None:
    """Where the units allow it the split is exactly 90/5/5; a unit that crosses a boundary
    belongs to the split it starts in. Every corpus's splits, and so every reported figure,
    rest on these indices."""
    assert split_boundaries(np.ones(100, dtype=np.int64)) == (90, 95)
    assert split_boundaries(np.full(20, 5, dtype=np.int64)) == (18, 19)
    # Unit 1 (cumulative 10 -> 95 of 100) crosses 90%: it stays in train; unit 2 ends at 97.
    assert split_boundaries(np.array([10, 85, 2, 3])) == (2, 3)


def test_fewer_than_three_units_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(IrlmError, match="only 2 line.*at least 3"):
        load_corpus("text", path=str(write_lines(tmp_path / "t.txt", ["a b", "c"])))


def test_vocabulary_comes_from_train_only(text_file: Path) -> None:
    corpus = load_corpus("text", path=str(text_file))
    assert "zebra" not in corpus.vocab
    assert corpus.vocab.unk_id in corpus.split("test")
    assert corpus.vocab.unk_id not in corpus.split("train")


@pytest.mark.parametrize(("options", "named"), [
    ({"max_vocab": 3}, r"max_vocab=3 keeps only the 0 most frequent.*raise max_vocab"),
    ({"min_freq": 10**9}, r"min_freq=1000000000 turns every token seen fewer times.*lower min_freq"),
])
def test_a_vocabulary_that_leaves_most_train_tokens_unknown_warns(text_file: Path, options: dict, named: str) -> None:
    with pytest.warns(CorpusWarning, match=rf"corpus 'text': 100\.0% of the train split's tokens are <unk>.*{named}"):
        load_corpus("text", path=str(text_file), **options)
    clear_memo()
    with pytest.warns(CorpusWarning, match="are <unk>"):  # from the disk cache too
        load_corpus("text", path=str(text_file), **options)


def test_a_few_unknown_train_tokens_do_not_warn(text_file: Path) -> None:
    full = len(load_corpus("text", path=str(text_file), max_vocab=None).vocab)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        corpus = load_corpus("text", path=str(text_file), max_vocab=full - 1)
    assert corpus.vocab.unk_id in corpus.split("train")
    assert issubclass(CorpusWarning, UserWarning)


def test_line_starts_are_the_eos_before_each_unit(text_file: Path) -> None:
    corpus = load_corpus("text", path=str(text_file))
    for name in SPLITS:
        ids, starts = corpus.split(name), corpus.line_starts(name)
        assert starts.dtype == np.int64 and starts[0] == 0
        assert np.all(ids[starts] == corpus.vocab.eos_id)
        assert len(starts) == np.count_nonzero(ids == corpus.vocab.eos_id) - 1
        assert starts[-1] < len(ids) - 1
        assert corpus.line_starts(name) is starts  # computed once


def test_unknown_split_suggests(text_file: Path) -> None:
    corpus = load_corpus("text", path=str(text_file))
    with pytest.raises(IrlmError, match=r"unknown split 'valid'.*did you mean 'validation'"):
        corpus.split("valid")


def test_memo_shares_one_corpus_and_is_deterministic(text_file: Path) -> None:
    first = load_corpus("text", path=str(text_file))
    assert load_corpus("text", path=str(text_file)) is first
    clear_memo()
    again = load_corpus("text", path=str(text_file))
    assert again is not first and again.vocab == first.vocab
    for name in SPLITS:
        np.testing.assert_array_equal(again.split(name), first.split(name))


def test_cache_is_written_atomically_and_keyed_by_settings(text_file: Path, cache: Path) -> None:
    load_corpus("text", path=str(text_file))
    load_corpus("text", path=str(text_file), tokenizer="char")
    load_corpus("text", path=str(text_file), max_vocab=10)
    files = sorted(p.name for p in (cache / "corpora").iterdir())
    assert len(files) == 6 and all(not name.startswith(".") for name in files)  # no temp files left


def test_an_unwritable_cache_folder_warns_once_and_goes_on_without_it(text_file: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")  # even root cannot make a folder under a regular file
    monkeypatch.setenv("IRLM_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(CacheWarning, match=r"cannot write the cache in '.*not_a_folder/cache' \(.*\); going on "
                                          r"without it.*IRLM_CACHE_DIR") as caught:
        first = load_corpus("text", path=str(text_file))
    assert len(caught) == 1
    clear_memo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process and cache folder
        again = load_corpus("text", path=str(text_file), tokenizer="char")
    assert len(first.split("train")) > 0 and again.vocab != first.vocab
    assert blocker.read_text() == ""


def test_no_home_folder_warns_and_goes_on_without_a_cache(text_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container run under a user id with no HOME and no passwd entry: pathlib cannot find ~."""

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("IRLM_CACHE_DIR")
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    monkeypatch.setattr(cache_module, "_WARNED", set())
    with pytest.warns(CacheWarning, match=r"no cache folder \(Could not determine home directory.\).*IRLM_CACHE_DIR"):
        corpus = load_corpus("text", path=str(text_file))
    assert len(corpus.split("train")) > 0


def test_changed_text_is_never_served_from_the_cache(text_file: Path) -> None:
    load_corpus("text", path=str(text_file))
    clear_memo()
    write_lines(text_file, ["brand new words here"] * 5)
    corpus = load_corpus("text", path=str(text_file))
    assert "brand" in corpus.vocab and "cat" not in corpus.vocab


@pytest.mark.parametrize("damage", ["npy", "empty npy", "huge npy", "lengths", "vocab", "json", "list"])
def test_a_corrupt_cache_entry_is_rebuilt(text_file: Path, cache: Path, damage: str) -> None:
    first = load_corpus("text", path=str(text_file))
    clear_memo()
    meta_path = next((cache / "corpora").glob("*.json"))
    if damage == "npy":
        npy = meta_path.with_suffix(".npy")
        data = bytearray(npy.read_bytes())
        data[-8] ^= 0x7F
        npy.write_bytes(bytes(data))
    elif damage == "empty npy":  # numpy raises EOFError
        meta_path.with_suffix(".npy").write_bytes(b"")
    elif damage == "huge npy":  # a header claiming an array no memory holds: numpy raises MemoryError
        npy = meta_path.with_suffix(".npy")
        data = npy.read_bytes()
        start = data.index(b"'shape': (") + len(b"'shape': (")
        end = data.index(b",)", start)
        huge = b"9" * 15
        padding = data.index(b"\n") - data.rindex(b"}", 0, data.index(b"\n")) - 1  # spaces before the newline
        grow = len(huge) - (end - start)
        assert padding > grow
        header_end = data.index(b"\n")
        npy.write_bytes(data[:start] + huge + data[end:header_end - grow] + data[header_end:])
    elif damage == "lengths":  # split boundaries moved: the ids still match, the splits would not
        meta = json.loads(meta_path.read_text())
        meta["lengths"][0] -= 3
        meta["lengths"][1] += 3
        meta_path.write_text(json.dumps(meta))
    elif damage == "vocab":
        meta = json.loads(meta_path.read_text())
        meta["vocab"]["tokens"][3] = "tampered"
        meta_path.write_text(json.dumps(meta))
    elif damage == "json":
        meta_path.write_text("{truncated")
    else:
        meta_path.write_text("[]")
    with pytest.warns(RuntimeWarning, match="rebuilding the corpus cache entry"):
        rebuilt = load_corpus("text", path=str(text_file))
    assert rebuilt.vocab == first.vocab
    np.testing.assert_array_equal(rebuilt.split("train"), first.split("train"))
    clear_memo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_corpus("text", path=str(text_file))  # the rebuilt entry is trusted again


def test_cached_multi_megabyte_corpus_loads_fast(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(5000)])
    lines = [" ".join(words[rng.zipf(1.3, size=12) % 5000]) + "." for _ in range(70000)]
    path = write_lines(tmp_path / "big.txt", lines)
    assert path.stat().st_size > 3_000_000
    built = load_corpus("text", path=str(path))
    clear_memo()
    start = time.perf_counter()
    cached = load_corpus("text", path=str(path))
    elapsed = time.perf_counter() - start
    assert cached is not built and len(cached.split("train")) == len(built.split("train"))
    assert elapsed < 1.0, f"cached load took {elapsed:.2f} s"


def test_string_options_are_converted_to_the_factory_types() -> None:
    corpus = load_corpus("grammar", n_sentences="60", seed="2")
    assert corpus is load_corpus("grammar", n_sentences=60, seed=2) or len(corpus.split("train")) > 0
    with pytest.raises(IrlmError, match=r"n_sentences='many' must be of type int"):
        load_corpus("grammar", n_sentences="many")


def test_unknown_corpus_suggests() -> None:
    with pytest.raises(IrlmError, match=r"unknown corpus 'gramar'.*did you mean 'grammar'"):
        load_corpus("gramar")


@pytest.mark.parametrize("name", ["notes.txt", "data/notes", "docs/*.md"])
def test_a_file_path_given_as_the_corpus_name_points_to_the_text_corpus(name: str) -> None:
    with pytest.raises(IrlmError, match=rf"unknown corpus {re.escape(repr(name))}.*looks like a file path.*'text' "
                                        rf"corpus.*--corpus text --corpus-option path={re.escape(name)}"):
        load_corpus(name)


def test_unknown_tokenizer_suggests() -> None:
    with pytest.raises(IrlmError, match=r"did you mean 'char'"):
        load_corpus("grammar", tokenizer="chars")


def test_unknown_source_option_names_the_accepted_options() -> None:
    with pytest.raises(IrlmError, match=r"no option 'sed'.*did you mean 'seed'.*n_sentences, seed"):
        load_corpus("grammar", sed=1)


def test_missing_required_option_is_named() -> None:
    with pytest.raises(IrlmError, match=r"requires .*option.*path"):
        load_corpus("text")


def test_max_vocab_below_the_specials_fails_before_any_work() -> None:
    with pytest.raises(IrlmError, match=r"max_vocab=2 .*>= 3"):
        load_corpus("pydocs", max_vocab=2)


@pytest.mark.parametrize(
    ("units", "problem"),
    [("one string", "is a str"), (iter(["a", "b", "c"]), "is a list_iterator"), (["a", "  ", "c"], "unit 1 is '  '"),
     ([], "no text")],
)
def test_bad_units_from_a_factory_are_named(units: object, problem: str) -> None:
    with pytest.raises(IrlmError, match=problem):
        _check_units("mine", units)  # type: ignore[arg-type]


def test_repr_is_short(text_file: Path) -> None:
    text = repr(load_corpus("text", path=str(text_file)))
    assert text.startswith("Corpus(name='text'") and len(text) < 200
    assert isinstance(load_corpus("text", path=str(text_file)), Corpus)


# --- streaming encoding -----------------------------------------------------------------------


def _reference_encoding(units: list[str], tokenizer: str, max_vocab: int | None,
                        min_freq: int) -> tuple[Vocabulary, list[list[str]]]:
    """What load_corpus computed before it streamed: every token string at once."""
    tok = make_tokenizer(tokenizer)
    cut = [tok.split(unit) for unit in units]
    b1, b2 = split_boundaries(np.array([len(t) + 1 for t in cut]))
    vocab = Vocabulary.build([t for tokens in cut[:b1] for t in tokens], max_vocab=max_vocab, min_freq=min_freq)
    splits = []
    for lo, hi in ((0, b1), (b1, b2), (b2, len(cut))):
        splits.append([EOS] + [t for tokens in cut[lo:hi] for t in [*tokens, EOS]])
    return vocab, splits


@pytest.mark.parametrize(("tokenizer", "max_vocab", "min_freq"), [("word", None, 1), ("word", 40, 2), ("char", 12, 1)])
def test_streaming_in_small_chunks_gives_the_same_ids_as_encoding_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokenizer: str, max_vocab: int | None, min_freq: int
) -> None:
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(300)] + ["Café", "naïve", "😀", "don't"]
    lines = [" ".join(rng.choice(words[: rng.choice([5, 300, 304])], size=rng.integers(1, 12))) for _ in range(400)]
    monkeypatch.setattr("irlm_env.corpus_encoding.CHUNK_UNITS", 7)  # many chunks, boundaries inside them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorpusWarning)
        corpus = load_corpus("text", path=str(write_lines(tmp_path / "t.txt", lines)), tokenizer=tokenizer,
                             max_vocab=max_vocab, min_freq=min_freq)
    vocab, splits = _reference_encoding(lines, tokenizer, max_vocab, min_freq)
    assert corpus.vocab == vocab
    for name, tokens in zip(SPLITS, splits):
        ids = corpus.split(name)
        assert ids.dtype == vocab.id_dtype
        np.testing.assert_array_equal(ids, vocab.encode(tokens))


def test_token_ids_use_the_smallest_unsigned_type(tmp_path: Path) -> None:
    lines = [" ".join(f"w{i * 7 + j}" for j in range(7)) for i in range(60)]
    path = write_lines(tmp_path / "t.txt", lines)
    assert load_corpus("text", path=str(path), max_vocab=None).split("train").dtype == np.uint16  # 423 tokens
    assert load_corpus("text", path=str(path), tokenizer="char").split("train").dtype == np.uint8


def test_a_chunk_of_exactly_257_distinct_tokens_keeps_the_last_one(tmp_path: Path) -> None:
    """Provisional ids 0..256 need 16 bits: stored in 8, token 256 would wrap to token 0's id and
    the text would silently change (the smallest type is chosen by the largest id, not the count)."""
    words = [f"w{i}" for i in range(257)]
    path = write_lines(tmp_path / "t.txt", [" ".join(words)] * 10)
    corpus = load_corpus("text", path=str(path), max_vocab=None)
    for name in SPLITS:
        ids = corpus.split(name)
        units = (len(ids) - 1) // 258
        assert corpus.vocab.decode(ids) == ["<eos>", *[*words, "<eos>"] * units]


def test_tokenizing_holds_no_token_strings_for_the_whole_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks and chunks as small next to this text as the real ones are next to a large one.
    monkeypatch.setattr("irlm_env.corpora.text._BLOCK_BYTES", 1 << 14)
    monkeypatch.setattr("irlm_env.corpora.text._DECODE_LINES", 128)
    monkeypatch.setattr("irlm_env.corpus_encoding.CHUNK_UNITS", 128)
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(2000)])
    lines = [" ".join(words[rng.zipf(1.3, size=12) % 2000]) + "." for _ in range(25000)]
    path = write_lines(tmp_path / "big.txt", lines)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        corpus = load_corpus("text", path=str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    final = sum(corpus.split(name).nbytes for name in SPLITS)
    # bench/corpus_memory.py holds a 200 MB text to 3x + the final array; the vocabulary and a
    # chunk weigh more next to 1 MB. Holding every token string at once took 15x here.
    assert peak < 4 * size + final, f"peak {peak / size:.1f}x the text"


def test_a_long_build_shows_a_progress_bar_on_a_terminal(text_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    load_corpus("text", path=str(text_file))
    assert terminal.getvalue() == ""  # a short build: nothing
    clear_memo()
    monkeypatch.setattr("irlm_env.corpus_encoding.PROGRESS_DELAY", 0.0)
    load_corpus("text", path=str(text_file), tokenizer="char")
    assert "tokenizing corpus 'text'" in terminal.getvalue()
