"""Vocabulary: deterministic order, size limits, encode/decode and tamper-evident JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from irlm_env.errors import IrlmError
from irlm_env.vocabulary import EOS, PAD, UNK, Vocabulary

TOKENS = "b a c a b d e e f g g g".split()


def test_specials_first_then_by_count_with_ties_broken_by_token() -> None:
    vocab = Vocabulary.build(TOKENS)
    assert vocab.tokens == (PAD, UNK, EOS, "g", "a", "b", "e", "c", "d", "f")
    assert (vocab.pad_id, vocab.unk_id, vocab.eos_id) == (0, 1, 2)


def test_max_vocab_counts_the_special_tokens() -> None:
    vocab = Vocabulary.build(TOKENS, max_vocab=5)
    assert len(vocab) == 5
    assert vocab.tokens[3:] == ("g", "a")
    assert len(Vocabulary.build(TOKENS, max_vocab=3)) == 3


def test_min_freq_drops_rare_tokens() -> None:
    assert Vocabulary.build(TOKENS, min_freq=2).tokens[3:] == ("g", "a", "b", "e")


@pytest.mark.parametrize("bad", [0, 2, -1])
def test_max_vocab_below_the_specials_is_an_error(bad: int) -> None:
    with pytest.raises(IrlmError, match=rf"max_vocab={bad}.*>= 3"):
        Vocabulary.build(TOKENS, max_vocab=bad)


def test_min_freq_below_one_is_an_error() -> None:
    with pytest.raises(IrlmError, match="min_freq"):
        Vocabulary.build(TOKENS, min_freq=0)


def test_special_tokens_in_the_text_are_refused() -> None:
    with pytest.raises(IrlmError, match="reserved"):
        Vocabulary.build(["a", EOS])


def test_constructor_requires_the_specials_and_no_repeats() -> None:
    with pytest.raises(IrlmError, match="special tokens"):
        Vocabulary(["a", "b", "c"])
    with pytest.raises(IrlmError, match="repeat"):
        Vocabulary([PAD, UNK, EOS, "a", "a"])


def test_encode_decode_and_unknown_tokens() -> None:
    vocab = Vocabulary.build(TOKENS)
    ids = vocab.encode(["g", "zzz", "a"])
    assert ids.dtype == np.int64
    assert ids.tolist() == [3, vocab.unk_id, 4]
    assert vocab.decode(ids) == ["g", UNK, "a"]
    assert vocab.id_of("zzz") == vocab.unk_id and vocab.token(3) == "g"
    with pytest.raises(IrlmError, match="out of range"):
        vocab.token(len(vocab))


def test_save_load_round_trip(tmp_path: Path) -> None:
    vocab = Vocabulary.build(TOKENS)
    path = tmp_path / "vocab.json"
    vocab.save(path)
    loaded = Vocabulary.load(path)
    assert loaded == vocab and loaded.content_hash == vocab.content_hash
    assert json.loads(path.read_text())["hash"] == vocab.content_hash
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temporary file left


def test_a_tampered_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "vocab.json"
    Vocabulary.build(TOKENS).save(path)
    data = json.loads(path.read_text())
    data["tokens"][3], data["tokens"][4] = data["tokens"][4], data["tokens"][3]
    path.write_text(json.dumps(data))
    with pytest.raises(IrlmError, match=r"vocab\.json.*modified or corrupted"):
        Vocabulary.load(path)


def test_missing_and_garbled_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(IrlmError, match="does not exist"):
        Vocabulary.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(IrlmError, match="bad.json.*not valid JSON"):
        Vocabulary.load(bad)
    bad.write_text('{"words": []}')
    with pytest.raises(IrlmError, match="not a saved vocabulary"):
        Vocabulary.load(bad)


def test_independent_of_pythonhashseed() -> None:
    """Sets and dicts iterate in hash order; the vocabulary must not."""
    code = (
        "from irlm_env.vocabulary import Vocabulary\n"
        "words = [f'w{i % 97}' for i in range(5000)] + [chr(0x61 + i % 26) * 3 for i in range(2600)]\n"
        "print(Vocabulary.build(set(words) | set(words[:50]), max_vocab=60).content_hash,"
        " Vocabulary.build(words, max_vocab=60).content_hash)\n"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.add(result.stdout)
    assert len(outputs) == 1


def test_from_counts_is_build_without_the_counting() -> None:
    counts = {token: TOKENS.count(token) for token in set(TOKENS)}
    assert Vocabulary.from_counts(counts, max_vocab=6, min_freq=2) == Vocabulary.build(TOKENS, max_vocab=6, min_freq=2)
    assert Vocabulary.from_counts({"a": 2, EOS: 0}).tokens == (PAD, UNK, EOS, "a")  # unseen: not produced


@pytest.mark.parametrize(("size", "dtype"), [(3, np.uint8), (256, np.uint8), (257, np.uint16), (65536, np.uint16),
                                             (65537, np.uint32)])
def test_id_dtype_is_the_smallest_unsigned_type_that_holds_every_id(size: int, dtype: type) -> None:
    vocab = Vocabulary([PAD, UNK, EOS, *(f"t{i}" for i in range(size - 3))])
    assert vocab.id_dtype == dtype
