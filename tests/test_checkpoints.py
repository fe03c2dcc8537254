from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from irlm_env import fileio
from irlm_agents.lm.checkpoints import check_vocabulary, load_model, save_model
from irlm_env.corpus import load_corpus
from irlm_env.errors import IrlmError
from irlm_agents.lm.model import ModelConfig, RNNLanguageModel
from irlm_env.vocabulary import Vocabulary

VOCAB = Vocabulary(["<pad>", "<unk>", "<eos>", "the", "cat", "sat"])
TOKENIZER = {"name": "word", "lowercase": True}


def _model(**overrides: object) -> RNNLanguageModel:
    torch.manual_seed(0)
    options = dict(vocab_size=len(VOCAB), embedding_dim=4, hidden_size=5, cell="lstm", num_layers=2)
    options.update(overrides)
    return RNNLanguageModel(ModelConfig(**options))  # type: ignore[arg-type]


def _same_weights(a: RNNLanguageModel, b: RNNLanguageModel) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


@pytest.mark.parametrize("tied", [False, True])
def test_round_trip(tmp_path: Path, tied: bool) -> None:
    model = _model(tie_weights=tied)
    path = save_model(model, tmp_path / "m.irlm", VOCAB, TOKENIZER, extra={"tokens": 123, "metrics": {"top1": 0.5}})
    loaded = load_model(path)
    assert loaded.model.config == model.config
    assert _same_weights(model, loaded.model)
    assert loaded.vocab.tokens == VOCAB.tokens
    assert loaded.tokenizer_config == TOKENIZER
    assert loaded.extra == {"tokens": 123, "metrics": {"top1": 0.5}}
    if tied:
        assert loaded.model.decoder.weight is loaded.model.embedding.weight
    tokens = torch.tensor([[2, 3, 4]])
    assert torch.equal(model(tokens)[0], loaded.model(tokens)[0])
    assert [p.name for p in tmp_path.iterdir()] == ["m.irlm"]


def test_vocabulary_mismatch_same_size_is_refused(tmp_path: Path) -> None:
    path = save_model(_model(), tmp_path / "m.irlm", VOCAB, TOKENIZER)
    other = Vocabulary(["<pad>", "<unk>", "<eos>", "the", "dog", "sat"])
    assert len(other) == len(VOCAB)
    with pytest.raises(IrlmError, match=r"m\.irlm.*different vocabulary"):
        load_model(path, vocab=other)
    checkpoint = load_model(path, vocab=VOCAB)
    with pytest.raises(IrlmError, match="different vocabulary"):
        checkpoint.check_vocabulary(other)
    check_vocabulary(checkpoint.vocab, VOCAB, path)


def test_crash_mid_save_keeps_old_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.irlm"
    old = _model()
    save_model(old, path, VOCAB, TOKENIZER)
    before = path.read_bytes()

    def crash(handle: object, payload: bytes) -> None:
        handle.write(payload[: len(payload) // 2])  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(fileio, "_write", crash)
    with pytest.raises(IrlmError, match="disk full"):
        save_model(_model(hidden_size=7), path, VOCAB, TOKENIZER)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.irlm"]
    assert _same_weights(old, load_model(path).model)


class _Exploit:
    """Unpickling this writes a marker file: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "pwned"))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_pickle_checkpoint_is_refused_without_running_code(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.irlm"
    payload = {"state_dict": _model().state_dict(), "hook": _Exploit(marker)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(IrlmError, match=r"evil\.irlm.*pickle"):
        load_model(path)
    assert not marker.exists()
    # the file really is an exploit: unpickling it would have created the marker
    pickle.loads(path.read_bytes()) if writer == "pickle" else torch.load(path, weights_only=False)
    assert marker.exists()


def test_truncated_and_corrupt_files(tmp_path: Path) -> None:
    path = save_model(_model(), tmp_path / "m.irlm", VOCAB, TOKENIZER)
    raw = path.read_bytes()
    for cut in (0, 5, 100, len(raw) - 10):
        bad = tmp_path / f"cut{cut}.irlm"
        bad.write_bytes(raw[:cut])
        with pytest.raises(IrlmError, match=rf"cut{cut}\.irlm.*unusable"):
            load_model(bad)
    flipped = bytearray(raw)
    flipped[-3] ^= 0xFF  # inside the tensor data: only the checksum can notice
    bad = tmp_path / "flip.irlm"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(IrlmError, match=r"flip\.irlm.*checksum"):
        load_model(bad)
    text = tmp_path / "notes.irlm"
    text.write_text("hello")
    with pytest.raises(IrlmError, match="notes.irlm"):
        load_model(text)
    with pytest.raises(IrlmError, match="does not exist"):
        load_model(tmp_path / "missing.irlm")


def test_save_errors(tmp_path: Path) -> None:
    with pytest.raises(IrlmError, match="does not exist"):
        save_model(_model(), tmp_path / "nope" / "m.irlm", VOCAB, TOKENIZER)
    with pytest.raises(IrlmError, match="JSON"):
        save_model(_model(), tmp_path / "m.irlm", VOCAB, TOKENIZER, extra={"x": object()})
    with pytest.raises(IrlmError, match="vocabulary has"):
        save_model(_model(vocab_size=9), tmp_path / "m.irlm", VOCAB, TOKENIZER)
    assert list(tmp_path.iterdir()) == []


def test_load_on_cpu_only_in_fresh_process(tmp_path: Path) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = _model().to(device)
    path = save_model(model, tmp_path / "m.irlm", VOCAB, TOKENIZER)
    script = (
        "import sys, torch\n"
        "from irlm_agents.lm.checkpoints import load_model\n"
        "assert not torch.cuda.is_available()\n"
        "c = load_model(sys.argv[1], device='cpu')\n"
        "print(float(sum(p.double().sum() for p in c.model.parameters())))\n"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True, check=True)
    expected = float(sum(p.detach().double().sum() for p in model.parameters()))
    assert float(out.stdout) == pytest.approx(expected, rel=1e-12)


@pytest.mark.skipif(torch.cuda.is_available(), reason="machine has CUDA")
def test_load_on_absent_device_is_an_error(tmp_path: Path) -> None:
    path = save_model(_model(), tmp_path / "m.irlm", VOCAB, TOKENIZER)
    with pytest.raises(IrlmError, match="'cuda' is not usable"):
        load_model(path, device="cuda")


def _with_header(tmp_path: Path, change: Callable[[dict[str, Any]], None], name: str = "crafted.irlm") -> Path:
    """A valid checkpoint whose irlm header ``change`` rewrites (weights and checksum untouched)."""
    raw = save_model(_model(), tmp_path / "valid.irlm", VOCAB, TOKENIZER).read_bytes()
    size = int.from_bytes(raw[:8], "little")
    index = json.loads(raw[8 : 8 + size])
    header = json.loads(index["__metadata__"]["irlm"])
    change(header)
    index["__metadata__"]["irlm"] = json.dumps(header)
    head = json.dumps(index).encode()
    head += b" " * (-len(head) % 8)
    path = tmp_path / name
    path.write_bytes(len(head).to_bytes(8, "little") + head + raw[8 + size :])
    return path


def _set(path: tuple[str, ...], value: object) -> Callable[[dict[str, Any]], None]:
    def change(header: dict[str, Any]) -> None:
        target = header
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (_set(("model", "num_layers"), 10**6), "claims 1000000 RNN layers"),
        (_set(("model", "hidden_size"), 60_000), "do not fit the saved model configuration"),
        (_set(("model", "num_layers"), 3), "do not fit the saved model configuration"),
        (_set(("model", "cell"), "gru"), "do not fit the saved model configuration"),
        (_set(("model", "vocab_size"), 7), "predicts 7 tokens but its vocabulary has 6"),
        (_set(("model", "hidden_size"), "5"), "hidden_size must be a positive integer"),
        (_set(("model",), [1, 2]), "'model' must be a JSON object, got list"),
        (_set(("extra",), ["a", "b"]), "'extra' must be a JSON object, got list"),
        (_set(("tokenizer",), "word"), "'tokenizer' must be a JSON object, got str"),
        (_set(("tokenizer", "name"), "wordpiece-x"), "unknown tokenizer 'wordpiece-x'"),
        (_set(("tokenizer", "lowercase"), {"x": 1}), "unusable"),
        (_set(("vocabulary",), "the cat"), "'vocabulary' must be a JSON object"),
        (_set(("vocabulary", "tokens"), [1, 2]), "every token must be a string"),
        (_set(("corpus",), 3), "'corpus' must be a JSON object, got int"),
        (_set(("weights_sha256",), 12), "not a SHA-256 hex digest"),
        (_set(("surprise",), 1), "unknown field"),
        (lambda header: header.pop("extra"), "missing field"),
        (_set(("version",), 2), r"format version 2, where this irlm-env reads version 1; it was written by a newer "
                                r"irlm-env: upgrade this one \(pip install -U irlm-env\)"),
        (_set(("version",), "1"), "format version '1', where this irlm-env reads version 1; re-save the model"),
    ],
)
def test_crafted_header_is_refused_before_building_the_model(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    path = _with_header(tmp_path, change)
    start = time.perf_counter()
    with pytest.raises(IrlmError, match=rf"crafted\.irlm.*{message}"):
        load_model(path)
    assert time.perf_counter() - start < 2.0


def test_weights_that_are_not_floating_point_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = save_model(_model(), tmp_path / "model.irlm", VOCAB, TOKENIZER)
    raw = path.read_bytes()
    metadata = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])["__metadata__"]
    tensors = load_file(path)
    tensors["decoder.bias"] = tensors["decoder.bias"].to(torch.int64)
    save_file(tensors, tmp_path / "ints.irlm", metadata=metadata)
    with pytest.raises(IrlmError, match="tensor 'decoder.bias' holds 'I64' numbers, where weights are floating point"):
        load_model(tmp_path / "ints.irlm")


def test_a_stable_baselines3_zip_is_named_as_one(tmp_path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(tmp_path / "ppo.zip", "w") as archive:  # the members SB3's save writes
        for member in ("data", "pytorch_variables.pth", "policy.pth", "policy.optimizer.pth", "_stable_baselines3_version"):
            archive.writestr(member, "x")
    with pytest.raises(IrlmError, match="it is a Stable-Baselines3 zip .* pass the run directory's final.irlm"):
        load_model(tmp_path / "ppo.zip")


def test_crafted_header_costs_no_allocation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model is never built from a configuration that the tensors do not match."""
    path = _with_header(tmp_path, _set(("model", "hidden_size"), 60_000))
    built: list[object] = []
    monkeypatch.setattr(RNNLanguageModel, "__init__", lambda self, config: built.append(config))
    with pytest.raises(IrlmError, match="do not fit"):
        load_model(path)
    assert built == []


def test_not_a_regular_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    with pytest.raises(IrlmError, match="not a regular file"):
        load_model("/dev/zero")
    fifo = tmp_path / "pipe.irlm"
    os.mkfifo(fifo)
    with pytest.raises(IrlmError, match="not a regular file"):
        load_model(fifo)  # opening a FIFO for reading would block without a writer


def test_the_corpus_spec_travels_in_the_header(tmp_path: Path) -> None:
    """``irlm eval`` rebuilds the training corpus from the checkpoint, never from guesses."""
    corpus = load_corpus("grammar", n_sentences=400, max_vocab=40)
    model = RNNLanguageModel(ModelConfig(vocab_size=len(corpus.vocab), embedding_dim=4, hidden_size=5))
    extra = {"reward": {"name": "exact", "options": {}}, "eval_context_length": 3}
    path = save_model(model, tmp_path / "m.irlm", corpus.vocab, corpus.tokenizer.config(), extra,
                      corpus_spec=corpus.spec)
    checkpoint = load_model(path)
    assert checkpoint.corpus_spec() == corpus.spec and checkpoint.corpus_spec().max_vocab == 40
    assert checkpoint.load_corpus().vocab.content_hash == corpus.vocab.content_hash
    assert checkpoint.eval_context_length == 3 and checkpoint.reward == ("exact", {})
    with pytest.raises(IrlmError, match="different vocabulary"):
        checkpoint.load_corpus(options={"n_sentences": 50})

    bare = load_model(save_model(model, tmp_path / "bare.irlm", corpus.vocab, corpus.tokenizer.config()))
    with pytest.raises(IrlmError, match=r"bare\.irlm.*records no corpus settings.*corpus_spec=corpus.spec"):
        bare.load_corpus()
    assert bare.eval_context_length is None and bare.reward == ("exact", {})
    # A corpus named for it (irlm eval --corpus) is cut with its tokenizer into a vocabulary of its
    # size: the training text gives the same token list again, another text is refused.
    named = bare.load_corpus("grammar", {"n_sentences": 400})
    assert named.vocab.content_hash == corpus.vocab.content_hash and named.spec.max_vocab == 40
    with pytest.raises(IrlmError, match=r"different vocabulary.*records no corpus settings, so corpus 'grammar' was "
                                        r"cut with its tokenizer and a vocabulary of its size \(40 tokens\)"):
        bare.load_corpus("grammar", {"n_sentences": 50})
    bpe = load_corpus("grammar", n_sentences=400, tokenizer="bpe", max_vocab=300)
    bare_bpe = load_model(save_model(RNNLanguageModel(ModelConfig(vocab_size=len(bpe.vocab), embedding_dim=4,
                                                                  hidden_size=5)),
                                     tmp_path / "bpe.irlm", bpe.vocab, bpe.tokenizer.config()))
    with pytest.raises(IrlmError, match="its bpe tokenizer learnt its tokens from the training text"):
        bare_bpe.load_corpus("grammar", {"n_sentences": 400})


@pytest.mark.parametrize(
    "extra, corpus, message",
    [
        ({"eval_context_length": "8"}, None, "eval_context_length must be a positive integer"),
        ({"eval_context_length": 0}, None, "eval_context_length must be a positive integer"),
        ({"reward": "exact"}, None, "'reward' must be"),
        ({"reward": {"name": "exact", "options": []}}, None, "'reward' must be"),
        ({}, {"name": 3}, "corpus spec"),
        ({}, {"name": "grammar", "options": {}, "tokenizer": "word", "lowercase": "yes", "max_vocab": None,
              "min_freq": 1}, "'lowercase' must be true or false"),
    ],
)
def test_crafted_run_records_are_clear_errors(
    tmp_path: Path, extra: dict[str, Any], corpus: dict[str, Any] | None, message: str
) -> None:
    def change(header: dict[str, Any]) -> None:
        header["extra"] = extra
        if corpus is not None:
            header["corpus"] = corpus

    checkpoint = load_model(_with_header(tmp_path, change))
    with pytest.raises(IrlmError, match=message):
        checkpoint.eval_context_length
        checkpoint.reward
        checkpoint.corpus_spec()
