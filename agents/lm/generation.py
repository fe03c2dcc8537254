"""Continue a prompt by sampling from a saved model: what ``irlm generate`` runs.

The checkpoint records its tokenizer and the context window it was scored with, so the prompt is
cut into tokens and shown to the model exactly as during training.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch

from irlm_agents.lm.checkpoints import load_model
from irlm_agents.lm.devices import resolve_device
from irlm_agents.lm.model import RNNLanguageModel
from irlm_env.errors import IrlmError
from irlm_env.options import SEED_MAX, check_int
from irlm_env.tokenizers import make_tokenizer


class GenerationWarning(UserWarning):
    """The prompt holds tokens the model never learnt; it continues from ``<unk>`` in their place."""


def _next_logits(model: RNNLanguageModel, ids: list[int], window: int | None, pad_id: int,
                 device: torch.device) -> torch.Tensor:
    """Logits after ``ids``: over the last ``window`` tokens, left-padded as the env shows them,
    or over the whole text for a recurrent model (``window=None``)."""
    if window is not None:
        ids = [pad_id] * max(0, window - len(ids)) + ids[-window:]
    logits, _ = model(torch.tensor([ids], dtype=torch.long, device=device))
    return logits[0, -1]


def generate_text(
    path: str | Path,
    prompt: str,
    *,
    max_tokens: int = 30,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    device: str = "cpu",
) -> str:
    """``prompt`` continued by sampling from the checkpoint's model until end of line.

    ``temperature=0`` takes the most likely token; ``top_k`` restricts sampling to the k most
    likely. The padding token is never produced.
    """
    if not (math.isfinite(temperature) and temperature >= 0) or top_k < 0 or max_tokens < 1:
        raise IrlmError(f"temperature must be a finite number >= 0 (got {temperature!r}), top_k >= 0 "
                        f"(got {top_k!r}) and max_tokens >= 1 (got {max_tokens!r})")
    check_int("seed", seed, minimum=0, maximum=SEED_MAX)
    target = resolve_device(device)
    checkpoint = load_model(path, device=target)
    model, vocab = checkpoint.model, checkpoint.vocab
    model.eval()
    tokenizer = make_tokenizer(**checkpoint.tokenizer_config)
    words = tokenizer.split(prompt)
    unknown = sorted({word for word in words if word not in vocab})
    if unknown:
        warnings.warn(f"prompt token(s) not in the model's vocabulary, read as {vocab.token(vocab.unk_id)}: "
                      f"{', '.join(unknown)}", GenerationWarning, stacklevel=2)
    ids = [vocab.eos_id, *vocab.encode(words).tolist()]
    window = checkpoint.eval_context_length
    generator = torch.Generator(device=target).manual_seed(seed)
    produced: list[str] = []
    with torch.inference_mode():
        for _ in range(max_tokens):
            logits = _next_logits(model, ids, window, vocab.pad_id, target).float()
            logits[vocab.pad_id] = float("-inf")
            if temperature == 0:
                token = int(logits.argmax())
            else:
                # Shifted first and in float64 (which holds any temperature a float can), so that a tiny
                # temperature sends all but the best token to -inf instead of overflowing into nan.
                logits = (logits.double() - logits.max()) / temperature
                if 0 < top_k < len(logits):
                    cutoff = torch.topk(logits, top_k).values[-1]
                    logits = logits.masked_fill(logits < cutoff, float("-inf"))
                token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
            if token == vocab.eos_id:
                break
            ids.append(token)
            produced.append(vocab.token(token))
    return tokenizer.join([*words, *produced])
