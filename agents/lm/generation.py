"""Continue a prompt by sampling from a saved model: what ``irlm generate`` runs.

The checkpoint records its tokenizer and the context window it was scored with, so the prompt is
cut into tokens and shown to the model exactly as during training: each line after an
end-of-line token, through the window of a window model, or with the state carried along for a
recurrent one.
"""

from __future__ import annotations

import math
import warnings
from numbers import Real
from pathlib import Path

import torch

from irlm_agents.lm.checkpoints import load_model
from irlm_agents.lm.devices import resolve_device
from irlm_agents.lm.model import Hidden, RNNLanguageModel
from irlm_env.errors import IrlmError
from irlm_env.options import SEED_MAX, check_int
from irlm_env.tokenizers import make_tokenizer


class GenerationWarning(UserWarning):
    """The prompt holds tokens the model never learnt; it continues from ``<unk>`` in their place."""


class _Reader:
    """Feeds the model the text so far and gives the logits of the next token.

    A window model reads its last ``window`` tokens, left-padded as the env shows them; a
    recurrent one (``window=None``) carries its state, so each new token costs one step.
    """

    def __init__(self, model: RNNLanguageModel, window: int | None, pad_id: int, device: torch.device) -> None:
        self.model, self.window, self.pad_id, self.device = model, window, pad_id, device
        self.ids: list[int] = []
        self.hidden: Hidden | None = None
        self.logits: torch.Tensor | None = None

    def read(self, ids: list[int]) -> torch.Tensor:
        """Append ``ids`` and return the logits after them."""
        self.ids.extend(ids)
        if self.window is not None:
            shown = [self.pad_id] * max(0, self.window - len(self.ids)) + self.ids[-self.window:]
            logits, _ = self.model(torch.tensor([shown], dtype=torch.long, device=self.device))
        else:
            logits, self.hidden = self.model(torch.tensor([ids], dtype=torch.long, device=self.device), self.hidden)
        return logits[0, -1]


def _prompt_lines(prompt: str) -> list[str]:
    """The prompt's lines, as the text corpus cuts a text; a final line break opens an empty line."""
    lines = prompt.splitlines()
    if not lines or prompt.splitlines(keepends=True)[-1] != lines[-1]:
        lines.append("")
    return lines


def _shown(lines: list[list[str]]) -> list[list[str]]:
    """The lines the model reads, each after an end-of-line token: the corpus drops blank lines,
    so only the last (the one continued) may be empty."""
    return [words for words in lines[:-1] if words] + [lines[-1]]


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
    likely. The padding token is never produced. Each line of the prompt is shown as the corpus
    shows a line, after an end-of-line token, and the last line is continued.
    """
    check_int("max_tokens", max_tokens)
    check_int("top_k", top_k, minimum=0)
    if isinstance(temperature, bool) or not isinstance(temperature, Real) or not (
        math.isfinite(temperature) and temperature >= 0
    ):
        raise IrlmError(f"temperature must be a finite number >= 0 (0: the most likely token), got {temperature!r}")
    check_int("seed", seed, minimum=0, maximum=SEED_MAX)
    target = resolve_device(device)
    checkpoint = load_model(path, device=target)
    model, vocab = checkpoint.model, checkpoint.vocab
    model.eval()
    tokenizer = make_tokenizer(**checkpoint.tokenizer_config)
    lines = [tokenizer.split(line) for line in _prompt_lines(prompt)]
    unknown = sorted({tokenizer.join([word]) for words in lines for word in words if word not in vocab})
    if unknown:
        warnings.warn(f"prompt token(s) not in the model's vocabulary, read as {vocab.token(vocab.unk_id)}: "
                      f"{', '.join(unknown)}", GenerationWarning, stacklevel=2)
    ids = [token for words in _shown(lines) for token in (vocab.eos_id, *vocab.encode(words).tolist())]
    reader = _Reader(model, checkpoint.eval_context_length, vocab.pad_id, target)
    generator = torch.Generator(device=target).manual_seed(seed)
    produced: list[str] = []
    with torch.inference_mode():
        logits = reader.read(ids)
        for _ in range(max_tokens):
            logits = logits.float()
            if not bool(torch.isfinite(logits).all()):
                raise IrlmError(
                    "the model's predictions hold nan or inf: its weights diverged during training; generate from "
                    "an earlier checkpoint of the run (best-perplexity.irlm or best.irlm)"
                )
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
            produced.append(vocab.token(token))
            logits = reader.read([token])
    *before, last = lines
    return "\n".join([*(tokenizer.join(words) for words in before), tokenizer.join([*last, *produced])])
