"""Using a saved model: score it on a corpus split, or continue a prompt.

A checkpoint written by ``RunLogger`` records the corpus settings, reward and context window it
was trained with, so ``irlm eval`` and ``irlm generate`` need nothing but the file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from irlm_agents.runs.args import TrainArgs
from irlm_agents.lm.checkpoints import Checkpoint, load_model
from irlm_env.corpus import load_corpus
from irlm_agents.lm.devices import resolve_device
from irlm_env.errors import IrlmError
from irlm_agents.lm.evaluation import evaluate
from irlm_agents.lm.model import RNNLanguageModel
from irlm_env.rewards import make_reward
from irlm_env.tokenizers import make_tokenizer


def _train_args(checkpoint: Checkpoint) -> dict[str, Any]:
    """The TrainArgs fields stored in a checkpoint (empty for a checkpoint saved by hand)."""
    stored = (checkpoint.extra or {}).get("train_args") or {}
    known = {item.name for item in dataclasses.fields(TrainArgs)}
    return {key: value for key, value in stored.items() if key in known}


def evaluate_checkpoint(
    path: str | Path,
    *,
    split: str = "validation",
    corpus: str | None = None,
    corpus_options: dict[str, Any] | None = None,
    max_tokens: int | None = None,
    device: str = "cpu",
) -> dict[str, float | int]:
    """The checkpoint's top1/top5/perplexity/reward on ``split``, scored as during training.

    ``corpus`` (with ``corpus_options``) replaces the training corpus; its vocabulary must be the
    checkpoint's, or token ids would mean different words.
    """
    target = resolve_device(device)
    checkpoint = load_model(path, device=target)
    stored = _train_args(checkpoint)
    if corpus is None and "corpus" not in stored:
        raise IrlmError(f"{path}: the checkpoint does not record its corpus; pass --corpus NAME")
    settings = TrainArgs(**stored)
    if corpus is not None:
        settings.corpus, settings.corpus_options = corpus, dict(corpus_options or {})
    elif corpus_options:
        settings.corpus_options = {**settings.corpus_options, **corpus_options}
    tokenizer = dict(checkpoint.tokenizer_config)
    loaded = load_corpus(
        settings.corpus,
        tokenizer=str(tokenizer.pop("name")),
        max_vocab=settings.max_vocab if stored else len(checkpoint.vocab),
        min_freq=settings.min_freq,
        **tokenizer,
        **settings.corpus_options,
    )
    checkpoint.check_vocabulary(loaded.vocab)
    reward = make_reward(settings.reward, loaded, **settings.reward_options)
    context_length = (checkpoint.extra or {}).get("eval_context_length")
    scores = evaluate(
        checkpoint.model, loaded, split, reward=reward, context_length=context_length,
        max_tokens=max_tokens, device=target,
    )
    return {**scores, "tokens": int(scores["tokens"])}


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
    if temperature < 0 or top_k < 0 or max_tokens < 1:
        raise IrlmError("temperature and top_k must be >= 0 and max_tokens >= 1")
    target = resolve_device(device)
    checkpoint = load_model(path, device=target)
    model, vocab = checkpoint.model, checkpoint.vocab
    model.eval()
    tokenizer = make_tokenizer(**checkpoint.tokenizer_config)
    words = tokenizer.split(prompt)
    ids = [vocab.eos_id, *vocab.encode(words).tolist()]
    window = (checkpoint.extra or {}).get("eval_context_length")
    generator = torch.Generator(device=target).manual_seed(seed)
    produced: list[str] = []
    with torch.inference_mode():
        for _ in range(max_tokens):
            logits = _next_logits(model, ids, window, vocab.pad_id, target).float()
            logits[vocab.pad_id] = float("-inf")
            if temperature == 0:
                token = int(logits.argmax())
            else:
                logits = logits / temperature
                if 0 < top_k < len(logits):
                    cutoff = torch.topk(logits, top_k).values[-1]
                    logits = logits.masked_fill(logits < cutoff, float("-inf"))
                token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
            if token == vocab.eos_id:
                break
            ids.append(token)
            produced.append(vocab.token(token))
    return tokenizer.join([*words, *produced])
