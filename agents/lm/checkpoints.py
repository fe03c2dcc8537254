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

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from irlm_agents.lm.devices import resolve_device
from irlm_env.errors import IrlmError
from irlm_env.fileio import atomic_write_bytes
from irlm_agents.lm.model import ModelConfig, RNNLanguageModel
from irlm_env.vocabulary import Vocabulary

FORMAT = "irlm-checkpoint"
FORMAT_VERSION = 1
SUFFIX = ".irlm"
#: The output layer of a tied model is the embedding; it is stored once and re-tied on load.
TIED_KEY = "decoder.weight"
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")


@dataclass
class Checkpoint:
    """A loaded model with everything needed to use it on the right data."""

    model: RNNLanguageModel
    vocab: Vocabulary
    tokenizer_config: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def check_vocabulary(self, vocab: Vocabulary) -> None:
        """Refuse to pair the model with a different vocabulary, even one of the same size.

        Token ids only mean something relative to the vocabulary they were trained with: a
        model fed another vocabulary's ids runs without error and predicts nonsense.
        """
        check_vocabulary(self.vocab, vocab, self.path)


def check_vocabulary(saved: Vocabulary, current: Vocabulary, path: str | Path | None = None) -> None:
    """Raise ``IrlmError`` unless ``saved`` and ``current`` are the same token list (by hash)."""
    if saved.content_hash == current.content_hash:
        return
    where = f"checkpoint {str(path)!r}" if path is not None else "the checkpoint"
    raise IrlmError(
        f"{where} was trained with a different vocabulary ({len(saved)} tokens, hash "
        f"{saved.content_hash[:12]}) than the environment's ({len(current)} tokens, hash "
        f"{current.content_hash[:12]}); use the corpus, tokenizer and max_vocab/min_freq settings "
        "the model was trained with"
    )


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
) -> Path:
    """Write ``model`` with its configuration and vocabulary to ``path`` atomically.

    ``extra`` is any JSON-serializable information to keep alongside (metrics, training
    arguments); it comes back as ``Checkpoint.extra``. Returns the path written.
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
    try:
        metadata = {"irlm": json.dumps(header)}
    except (TypeError, ValueError) as error:
        raise IrlmError(f"cannot save checkpoint {str(path)!r}: tokenizer_config/extra must be JSON-serializable ({error})") from None
    atomic_write_bytes(path, save_tensors(state, metadata=metadata))
    return path


def _corrupt(path: Path, problem: str) -> IrlmError:
    return IrlmError(f"checkpoint {str(path)!r} is unusable: {problem}")


def _read_header(path: Path, raw: bytes) -> dict[str, Any]:
    """Parse the safetensors header's metadata without touching the tensor bytes."""
    size = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else -1
    try:
        if not 0 <= size <= len(raw) - 8:
            raise ValueError("header size out of range")
        metadata = json.loads(raw[8 : 8 + size]).get("__metadata__") or {}
        header = json.loads(metadata["irlm"])
    except (ValueError, KeyError, AttributeError, TypeError):
        if raw.startswith(_PICKLE_MAGIC):
            raise _corrupt(
                path,
                "it looks like a pickle/torch.save file, and loading pickles can run arbitrary code, "
                "so irlm refuses it; re-save the model with irlm_agents.lm.checkpoints.save_model",
            ) from None
        raise _corrupt(path, "no irlm header found (truncated, corrupt, or not an .irlm checkpoint)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _corrupt(path, "not an .irlm checkpoint")
    if header.get("version") != FORMAT_VERSION:
        raise _corrupt(path, f"format version {header.get('version')!r}; this irlm_env reads version {FORMAT_VERSION}")
    return header


def load_model(
    path: str | Path, device: str | torch.device = "cpu", vocab: Vocabulary | None = None
) -> Checkpoint:
    """Load a checkpoint onto ``device``; with ``vocab``, also check it is the same vocabulary."""
    path = Path(path)
    target = resolve_device(device)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IrlmError(f"checkpoint {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise IrlmError(f"checkpoint {str(path)!r} is a directory; pass the .irlm file inside it") from None
    header = _read_header(path, raw)
    try:
        tensors = load_tensors(raw)
    except SafetensorError as error:
        raise _corrupt(path, f"the weights cannot be read ({error})") from None
    if _weights_digest(tensors) != header.get("weights_sha256"):
        raise _corrupt(path, "the weights do not match their checksum (the file is corrupt)")
    try:
        config = ModelConfig.from_dict(header["model"])
        saved_vocab = Vocabulary.from_dict(header["vocabulary"])
    except (KeyError, TypeError) as error:
        raise _corrupt(path, f"incomplete header ({error})") from None
    except IrlmError as error:
        raise _corrupt(path, str(error)) from None
    model = RNNLanguageModel(config)
    if config.tie_weights:
        tensors[TIED_KEY] = tensors.get("embedding.weight", torch.empty(0))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:
        raise _corrupt(path, f"the weights do not fit the saved configuration ({error})") from None
    checkpoint = Checkpoint(
        model=model.to(target),
        vocab=saved_vocab,
        tokenizer_config=dict(header.get("tokenizer", {})),
        extra=dict(header.get("extra", {})),
        path=path,
    )
    if vocab is not None:
        checkpoint.check_vocabulary(vocab)
    return checkpoint
