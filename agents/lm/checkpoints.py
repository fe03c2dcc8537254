"""Save and load trained models in a format that can never run code.

``torch.save`` writes a pickle, and loading a pickle runs whatever code it names, so a
downloaded checkpoint would be a program. A ``.irlm`` checkpoint is a `safetensors
<https://huggingface.co/docs/safetensors>`_ file instead: raw little-endian tensor bytes behind a
JSON header. The header's metadata carries, as JSON, the model configuration, the vocabulary
(with its content hash), the tokenizer settings, caller extras and a SHA-256 of the weights, so
one file is enough to rebuild, check and use the model, and any safetensors tool can read it.

Writes are atomic: the file is written to a temporary name in the same directory and moved into
place with ``os.replace``, so a crash mid-save leaves the previous checkpoint intact and no
temporary file behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from irlm_agents.lm.devices import resolve_device
from irlm_env.corpus import Corpus, load_corpus
from irlm_env.corpus_spec import CorpusSpec
from irlm_env.errors import IrlmError
from irlm_env.fileio import atomic_write_bytes
from irlm_env.options import check_int
from irlm_env.rewards import CheckedReward, make_reward
from irlm_agents.lm.model import ModelConfig, RNNLanguageModel, parameter_shapes
from irlm_env.tokenizers import Tokenizer, make_tokenizer
from irlm_env.vocabulary import Vocabulary

FORMAT = "irlm-checkpoint"
FORMAT_VERSION = 1
#: The output layer of a tied model is the embedding; it is stored once and re-tied on load.
TIED_KEY = "decoder.weight"
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")
#: The safetensors dtypes a model's weights may be stored in.
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
#: safetensors' own limit on the JSON header; a larger claimed size is a corrupt or crafted file.
MAX_HEADER_BYTES = 100 * 2**20
REQUIRED_FIELDS = frozenset({"format", "version", "model", "vocabulary", "tokenizer", "extra", "weights_sha256"})
#: ``corpus``: the training run's corpus spec (absent in a checkpoint saved by hand).
OPTIONAL_FIELDS = frozenset({"corpus"})


@dataclass
class Checkpoint:
    """A loaded model with everything needed to use it on the right data.

    ``corpus`` is the training run's corpus spec as saved (``None`` for a checkpoint saved by
    hand without one). A run also records, in ``extra``, the reward it was trained with and the
    context window it was scored with; the properties below read them back, checked.
    """

    model: RNNLanguageModel
    vocab: Vocabulary
    tokenizer_config: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    corpus: dict[str, Any] | None = None
    path: Path | None = None

    def check_vocabulary(self, vocab: Vocabulary) -> None:
        """Refuse to pair the model with a different vocabulary, even one of the same size.

        Token ids only mean something relative to the vocabulary they were trained with: a
        model fed another vocabulary's ids runs without error and predicts nonsense.
        """
        check_vocabulary(self.vocab, vocab, self.path)

    def check_tokenizer(self, tokenizer: Tokenizer) -> None:
        """Refuse text cut by another tokenizer than the model's, even with the same token list
        (a BPE tokenizer's merges decide which tokens a text becomes)."""
        saved = make_tokenizer(**self.tokenizer_config)
        if saved != tokenizer:
            raise IrlmError(
                f"{_described(self.path)} was trained with another tokenizer ({saved!r}) than the environment's "
                f"({tokenizer!r}); use the corpus, tokenizer and max_vocab/min_freq settings the model was "
                "trained with"
            )

    @property
    def eval_context_length(self) -> int | None:
        """The window the model was scored with during training; ``None``: recurrent, whole text."""
        value = self.extra.get("eval_context_length")
        if value is None:
            return None
        try:
            return check_int("eval_context_length", value)
        except IrlmError as error:
            raise _corrupt(self.path, f"extra field {error}") from None

    @property
    def reward(self) -> tuple[str, dict[str, Any]]:
        """The reward name and options the model was trained with (``exact`` if none recorded)."""
        value = self.extra.get("reward", {"name": "exact", "options": {}})
        if not (isinstance(value, dict) and isinstance(value.get("name"), str) and isinstance(value.get("options"), dict)):
            raise _corrupt(self.path, f"extra field 'reward' must be {{'name': str, 'options': {{...}}}}, got {value!r}")
        return value["name"], dict(value["options"])

    def corpus_spec(self) -> CorpusSpec:
        """The corpus settings the model was trained on, read back rather than reconstructed."""
        if self.corpus is None:
            raise IrlmError(
                f"checkpoint {str(self.path)!r} records no corpus settings (it was saved without "
                "corpus_spec); save it with save_model(..., corpus_spec=corpus.spec), or name its corpus "
                "(irlm eval FILE --corpus NAME, checkpoint.load_corpus(NAME))"
            )
        return CorpusSpec.from_dict(self.corpus, where=f"checkpoint {str(self.path)!r} corpus spec")

    def load_corpus(self, name: str | None = None, options: Mapping[str, Any] | None = None) -> Corpus:
        """The training corpus, or corpus ``name`` (with ``options``) cut the same way.

        Without ``name``, ``options`` update the training corpus's own. The result's vocabulary is
        checked against the model's: another corpus must give the same token list.
        """
        if name is not None and self.corpus is None:
            return self._load_named_corpus(name, options)
        saved = self.corpus_spec()
        if name is None and not options:
            corpus = self._rebuild_training_corpus(saved)
        else:
            if name is not None:
                spec = dataclasses.replace(saved, name=name, options=dict(options or {}))
            else:
                spec = dataclasses.replace(saved, options={**saved.options, **(options or {})})
            corpus = load_corpus(spec)
            self.check_vocabulary(corpus.vocab)
        self.check_tokenizer(corpus.tokenizer)
        return corpus

    def _load_named_corpus(self, name: str, options: Mapping[str, Any] | None) -> Corpus:
        """Corpus ``name`` for a checkpoint saved without corpus settings, cut as its model was.

        The tokenizer is the checkpoint's own. Its vocabulary's size serves as ``max_vocab``:
        tokens are ranked by their count in the train split, so a text that gave the model its
        vocabulary gives the same token list again, whatever ``min_freq`` built it, and the
        vocabulary check says when another text does not. A ``bpe`` tokenizer's tokens depend on
        the text it was trained on, so it cannot be rebuilt from the name alone.
        """
        where = _described(self.path)
        unsaved = f"{where} records no corpus settings, so corpus {name!r} was cut with its tokenizer and a " \
                  f"vocabulary of its size ({len(self.vocab)} tokens)"
        tokenizer = make_tokenizer(**self.tokenizer_config)
        if tokenizer.learns_from_text:
            raise IrlmError(f"{where} records no corpus settings, and its {tokenizer.name} tokenizer learnt its tokens "
                            "from the training text, which only those settings name; save the model with "
                            "save_model(..., corpus_spec=corpus.spec)")
        spec = CorpusSpec(name, dict(options or {}), tokenizer.name, tokenizer.lowercase, len(self.vocab), 1)
        corpus = load_corpus(spec)
        try:
            self.check_vocabulary(corpus.vocab)
        except IrlmError as error:
            raise IrlmError(f"{error} ({unsaved}; save the model with save_model(..., corpus_spec=corpus.spec) to "
                            "record how it was cut)") from None
        return corpus

    def _rebuild_training_corpus(self, spec: CorpusSpec) -> Corpus:
        """The corpus from the settings saved at training time, with errors that say so.

        Those settings are as typed then: a relative path is read from the current folder, and a
        file may have changed since, which shows as another vocabulary or, for a checkpoint that
        recorded it, another hash of the text.
        """
        where = f"the training corpus of checkpoint {str(self.path)!r}" if self.path else "the training corpus"
        described = f"{where} ({spec.name!r}, options {dict(spec.options)})"
        again = "or give the corpus again (irlm eval --corpus NAME --corpus-option KEY=VALUE)"
        changed = ("its text has changed since training (an edited file, or another at the same path); restore "
                   f"that text, {again}")
        try:
            corpus = load_corpus(spec)
        except IrlmError as error:
            raise IrlmError(
                f"{described} cannot be rebuilt: {error}. A relative path is read from the current folder: run "
                f"from the folder the model was trained in, {again}"
            ) from None
        if corpus.vocab != self.vocab:
            raise IrlmError(
                f"{described}, rebuilt with the settings saved in the checkpoint, has another vocabulary "
                f"({len(corpus.vocab)} tokens, hash {corpus.vocab.content_hash[:12]}) than the model "
                f"({len(self.vocab)} tokens, hash {self.vocab.content_hash[:12]}): {changed}"
            )
        trained = self.extra.get("corpus_source_hash")  # recorded by training runs since it was added
        if isinstance(trained, str) and trained != corpus.source_hash:
            raise IrlmError(
                f"{described}, rebuilt with the settings saved in the checkpoint, holds other text than at "
                f"training (source hash {corpus.source_hash[:12]} against {trained[:12]}), with the same vocabulary: "
                f"{changed}"
            )
        return corpus

    def make_reward(self, corpus: Corpus) -> CheckedReward:
        """The training reward, built for ``corpus``."""
        name, options = self.reward
        return make_reward(name, corpus, **options)


def _described(path: str | Path | None) -> str:
    """A checkpoint as messages name it."""
    return f"checkpoint {str(path)!r}" if path is not None else "the checkpoint"


def check_vocabulary(saved: Vocabulary, current: Vocabulary, path: str | Path | None = None) -> None:
    """Raise ``IrlmError`` unless ``saved`` and ``current`` are the same token list (by hash)."""
    if saved.content_hash == current.content_hash:
        return
    raise IrlmError(
        f"{_described(path)} was trained with a different vocabulary ({len(saved)} tokens, hash "
        f"{saved.content_hash[:12]}) than the environment's ({len(current)} tokens, hash "
        f"{current.content_hash[:12]}); use the corpus, tokenizer and max_vocab/min_freq settings "
        "the model was trained with"
    )


def load_warm_start(path: str | Path, vocab: Vocabulary | None, vocab_size: int, how_to_pass: str) -> RNNLanguageModel:
    """The model of checkpoint ``path`` for a policy whose env has ``vocab`` and ``vocab_size`` actions.

    A policy (SB3's, RLlib's) is built from spaces alone, and a size says nothing of which
    tokens the ids stand for: two corpora capped at the same ``max_vocab`` would load each
    other's weights and predict nonsense. So the env's vocabulary is required, not optional.
    ``how_to_pass`` tells the user where to put it.
    """
    if vocab is None:
        raise IrlmError(
            f"init_from={str(path)!r} needs the env's vocabulary to check the checkpoint against (a model "
            f"trained on another vocabulary of the same size would load and predict nonsense); {how_to_pass}"
        )
    if not isinstance(vocab, Vocabulary):
        raise IrlmError(f"vocab must be the env corpus's Vocabulary, got {type(vocab).__name__}; {how_to_pass}")
    if len(vocab) != vocab_size:
        raise IrlmError(
            f"vocab has {len(vocab)} tokens but the env's action space has {vocab_size}; pass the vocabulary "
            f"of the env the policy acts in: {how_to_pass}"
        )
    return load_model(path, vocab=vocab).model


def _weights_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_model(
    model: RNNLanguageModel,
    path: str | Path,
    vocab: Vocabulary,
    tokenizer_config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    *,
    corpus_spec: CorpusSpec | None = None,
) -> Path:
    """Write ``model`` with its configuration and vocabulary to ``path`` atomically.

    ``extra`` is any JSON-serializable information to keep alongside (metrics, training
    arguments); it comes back as ``Checkpoint.extra``. ``corpus_spec`` (``corpus.spec``) lets
    ``irlm eval`` rebuild the corpus without being told. Returns the path written.
    """
    if not isinstance(model, RNNLanguageModel):
        raise IrlmError(f"save_model() saves an RNNLanguageModel, got {type(model).__name__}")
    if model.config.vocab_size != len(vocab):
        raise IrlmError(
            f"the model predicts {model.config.vocab_size} tokens but the vocabulary has {len(vocab)}; "
            "save the vocabulary the model was trained with"
        )
    path = Path(path)
    if not path.parent.is_dir():
        raise IrlmError(f"cannot save checkpoint {str(path)!r}: directory {str(path.parent)!r} does not exist")
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    if model.config.tie_weights:
        del state[TIED_KEY]
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "vocabulary": vocab.to_dict(),
        "tokenizer": dict(tokenizer_config),
        "extra": dict(extra or {}),
        "weights_sha256": _weights_digest(state),
    }
    if corpus_spec is not None:
        header["corpus"] = corpus_spec.to_dict()
    try:
        metadata = {"irlm": json.dumps(header)}
    except (TypeError, ValueError) as error:
        raise IrlmError(f"cannot save checkpoint {str(path)!r}: tokenizer_config/extra must be JSON-serializable ({error})") from None
    atomic_write_bytes(path, save_tensors(state, metadata=metadata))
    return path


def _corrupt(path: Path | None, problem: str) -> IrlmError:
    return IrlmError(f"checkpoint {str(path)!r} is unusable: {problem}")


def _read_parts(path: Path) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """The irlm header, the safetensors tensor index and the whole file, read header first.

    A file that is not a regular file, or whose header size is out of range, is refused before
    anything else is read, so ``irlm eval /dev/zero`` fails at once instead of reading forever.
    """
    try:
        if path.is_dir():
            raise IrlmError(f"checkpoint {str(path)!r} is a directory; pass the .irlm file inside it")
        if not path.exists():
            raise IrlmError(f"checkpoint {str(path)!r} does not exist")
        if not path.is_file():
            raise IrlmError(f"checkpoint {str(path)!r} is not a regular file; pass an .irlm file")
        with path.open("rb") as handle:
            file_size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
            size = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
            head = handle.read(size) if 0 < size <= min(MAX_HEADER_BYTES, file_size - 8) else b""
            try:
                index = json.loads(head)
                header = json.loads(index.pop("__metadata__")["irlm"])
            except (ValueError, KeyError, AttributeError, TypeError):
                if prefix.startswith(b"PK\x03\x04") and _is_sb3_zip(path):
                    raise _corrupt(
                        path,
                        "it is a Stable-Baselines3 zip (PPO.save or the like), not an .irlm checkpoint; pass "
                        "the run directory's final.irlm, or save agent.policy.language_model with "
                        "irlm_agents.lm.checkpoints.save_model",
                    ) from None
                if prefix.startswith(_PICKLE_MAGIC):
                    raise _corrupt(
                        path,
                        "it looks like a pickle/torch.save file, and loading pickles can run arbitrary "
                        "code, so irlm refuses it; re-save the model with irlm_agents.lm.checkpoints.save_model",
                    ) from None
                raise _corrupt(path, "no irlm header found (truncated, corrupt, or not an .irlm checkpoint)") from None
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise _corrupt(path, "not an .irlm checkpoint")
            version = header.get("version")
            if version != FORMAT_VERSION:
                newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
                fix = ("it was written by a newer irlm-env: upgrade this one (pip install -U irlm-env)" if newer
                       else "re-save the model with irlm_agents.lm.checkpoints.save_model")
                raise _corrupt(path, f"format version {version!r}, where this irlm-env reads version {FORMAT_VERSION}; {fix}")
            return header, index, prefix + head + handle.read()
    except OSError as error:
        raise IrlmError(f"cannot read checkpoint {str(path)!r} ({error.strerror or error}); check the path and its permissions") from None


def _is_sb3_zip(path: Path) -> bool:
    """Whether ``path`` is a zip holding Stable-Baselines3's ``policy.pth`` (read as a listing only)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "policy.pth" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _object(path: Path, header: dict[str, Any], name: str) -> dict[str, Any]:
    value = header[name]
    if not isinstance(value, dict):
        raise _corrupt(path, f"header field {name!r} must be a JSON object, got {type(value).__name__}")
    return value


def _check_header(path: Path, header: dict[str, Any]) -> tuple[ModelConfig, Vocabulary]:
    """Every header field's type and range; the model configuration and vocabulary it holds."""
    missing = sorted(REQUIRED_FIELDS - set(header))
    unknown = sorted(set(header) - REQUIRED_FIELDS - OPTIONAL_FIELDS)
    if missing or unknown:
        problem = f"missing field(s) {', '.join(missing)}" if missing else f"unknown field(s) {', '.join(unknown)}"
        raise _corrupt(path, f"incomplete or foreign header ({problem})")
    try:
        config = ModelConfig.from_dict(_object(path, header, "model"))
        vocab = Vocabulary.from_dict(_object(path, header, "vocabulary"), where="its vocabulary")
        make_tokenizer(**_object(path, header, "tokenizer"))
    except IrlmError as error:
        raise _corrupt(path, str(error)) from None
    except (TypeError, ValueError) as error:
        raise _corrupt(path, f"malformed header ({error})") from None
    _object(path, header, "extra")
    if "corpus" in header:
        _object(path, header, "corpus")
    digest = header["weights_sha256"]
    if not (isinstance(digest, str) and len(digest) == 64 and set(digest) <= set("0123456789abcdef")):
        raise _corrupt(path, "header field 'weights_sha256' is not a SHA-256 hex digest")
    if len(vocab) != config.vocab_size:
        raise _corrupt(path, f"the model predicts {config.vocab_size} tokens but its vocabulary has {len(vocab)}")
    return config, vocab


def _check_shapes(path: Path, config: ModelConfig, index: dict[str, Any]) -> None:
    """The tensors the file holds must be exactly those ``config`` describes, before building it.

    Every layer has several tensors, so more layers than tensors is refused before the expected
    shapes are even listed.
    """
    if config.num_layers > len(index):
        raise _corrupt(path, f"the header claims {config.num_layers} RNN layers but the file holds {len(index)} tensors")
    expected = parameter_shapes(config)
    if config.tie_weights:
        del expected[TIED_KEY]
    found = {}
    for name, entry in index.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(isinstance(n, int) for n in shape):
            raise _corrupt(path, f"tensor {name!r} has no valid shape in the file's index")
        if entry.get("dtype") not in FLOAT_DTYPES:
            raise _corrupt(path, f"tensor {name!r} holds {entry.get('dtype')!r} numbers, where weights are "
                                 f"floating point ({', '.join(FLOAT_DTYPES)})")
        found[name] = tuple(shape)
    if found != expected:
        wrong = sorted(set(found) ^ set(expected)) or sorted(n for n in found if found[n] != expected[n])
        raise _corrupt(
            path,
            f"the weights do not fit the saved model configuration (first mismatch: tensor {wrong[0]!r}: "
            f"file {found.get(wrong[0])}, configuration {expected.get(wrong[0])})",
        )


def load_model(
    path: str | Path, device: str | torch.device = "cpu", vocab: Vocabulary | None = None,
    tokenizer: Tokenizer | None = None,
) -> Checkpoint:
    """Load a checkpoint onto ``device``; with ``vocab`` and ``tokenizer``, also check they are
    the model's.

    Checks run cheapest first: the header's fields, then the tensor shapes against the model
    configuration, then the weights' checksum; the model is built only from a file that passed.
    """
    path = Path(path)
    target = resolve_device(device)
    header, index, raw = _read_parts(path)
    config, saved_vocab = _check_header(path, header)
    _check_shapes(path, config, index)
    try:
        tensors = load_tensors(raw)
    except SafetensorError as error:
        raise _corrupt(path, f"the weights cannot be read ({error})") from None
    if _weights_digest(tensors) != header["weights_sha256"]:
        raise _corrupt(path, "the weights do not match their checksum (the file is corrupt)")
    model = RNNLanguageModel(config)
    if config.tie_weights:
        tensors[TIED_KEY] = tensors["embedding.weight"]
    model.load_state_dict(tensors)
    checkpoint = Checkpoint(
        model=model.to(target),
        vocab=saved_vocab,
        tokenizer_config=dict(header["tokenizer"]),
        extra=dict(header["extra"]),
        corpus=header.get("corpus"),
        path=path,
    )
    if vocab is not None:
        checkpoint.check_vocabulary(vocab)
    if tokenizer is not None:
        checkpoint.check_tokenizer(tokenizer)
    return checkpoint
