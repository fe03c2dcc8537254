"""The one language model every trainer shares.

The SB3 policy, the native policy-gradient agents and the supervised baseline all train this
class, so a model trained one way can be evaluated, warm-started or fine-tuned another way. It is
pure torch and knows nothing of the environment: it maps token ids to next-token logits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn

from irlm_env.errors import IrlmError, suggest

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}

#: A GRU/RNN hidden state is one tensor; an LSTM's is the pair (h, c). Both are (layers, B, H).
Hidden = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored as JSON in checkpoints.

    With ``tie_weights`` the output layer reuses the embedding matrix. When ``embedding_dim``
    differs from ``hidden_size`` a bias-free projection from the RNN output down to
    ``embedding_dim`` is inserted before the tied layer, so tying works for any sizes.
    """

    vocab_size: int
    embedding_dim: int = 128
    hidden_size: int = 256
    num_layers: int = 1
    cell: str = "gru"
    dropout: float = 0.0
    tie_weights: bool = False
    pad_id: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embedding_dim", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise IrlmError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.cell not in CELLS:
            raise IrlmError(f"unknown RNN cell {self.cell!r}: {suggest(self.cell, CELLS)}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not (
            0.0 <= self.dropout < 1.0
        ):
            raise IrlmError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.tie_weights, bool):
            raise IrlmError(f"ModelConfig.tie_weights must be true or false, got {self.tie_weights!r}")
        if isinstance(self.pad_id, bool) or not isinstance(self.pad_id, int) or not (
            0 <= self.pad_id < self.vocab_size
        ):
            raise IrlmError(
                f"ModelConfig.pad_id must be a token id in [0, {self.vocab_size}), got {self.pad_id!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Rebuild from JSON, rejecting unknown keys so a typo is not silently ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise IrlmError(
                f"unknown model option(s) {', '.join(unknown)}; "
                f"{suggest(unknown[0], known)}"
            )
        return cls(**dict(data))


#: Gate blocks stacked in each RNN weight matrix, per cell (torch's layout).
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def parameter_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The ``state_dict`` names and shapes of ``RNNLanguageModel(config)``, without building it.

    A checkpoint's tensors are checked against these before any model is allocated, so a
    crafted configuration (a million layers, a huge hidden size) costs nothing.
    """
    v, e, h = config.vocab_size, config.embedding_dim, config.hidden_size
    rows = GATES[config.cell] * h
    shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (v, e)}
    for layer in range(config.num_layers):
        shapes[f"rnn.weight_ih_l{layer}"] = (rows, e if layer == 0 else h)
        shapes[f"rnn.weight_hh_l{layer}"] = (rows, h)
        shapes[f"rnn.bias_ih_l{layer}"] = (rows,)
        shapes[f"rnn.bias_hh_l{layer}"] = (rows,)
    if config.tie_weights and e != h:
        shapes["projection.weight"] = (e, h)
    shapes["decoder.weight"] = (v, e if config.tie_weights else h)
    shapes["decoder.bias"] = (v,)
    return shapes


class RNNLanguageModel(nn.Module):
    """Embedding -> RNN (rnn/gru/lstm, batch first) -> linear head over the vocabulary.

    ``features`` and ``head`` are exposed separately so an actor-critic can run the RNN once and
    share its output between the policy (the head) and a value head.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise IrlmError(
                f"RNNLanguageModel needs a ModelConfig, got {type(config).__name__}; "
                "build one with ModelConfig(vocab_size=...)"
            )
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_id)
        # Identity when off: even p=0 dropout copies its input in training mode.
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.rnn = CELLS[config.cell](
            input_size=config.embedding_dim,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        needs_projection = config.tie_weights and config.embedding_dim != config.hidden_size
        self.projection = (
            nn.Linear(config.hidden_size, config.embedding_dim, bias=False) if needs_projection else None
        )
        out_dim = config.embedding_dim if config.tie_weights else config.hidden_size
        self.decoder = nn.Linear(out_dim, config.vocab_size)
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight

    @property
    def is_lstm(self) -> bool:
        return self.config.cell == "lstm"

    def features(self, tokens: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        """RNN outputs (B, T, H) for token ids (B, T), and the final hidden state."""
        embedded = self.dropout(self.embedding(tokens.long()))
        output, hidden = self.rnn(embedded, hidden)
        return self.dropout(output), hidden

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Next-token logits (..., V) from RNN outputs (..., H)."""
        if self.projection is not None:
            features = self.projection(features)
        return self.decoder(features)

    def forward(self, tokens: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        output, hidden = self.features(tokens, hidden)
        return self.head(output), hidden

    def initial_hidden(self, batch_size: int, device: torch.device | str | None = None) -> Hidden:
        """The zero state for ``batch_size`` streams, on ``device`` (default: the model's)."""
        if device is None:
            device = self.embedding.weight.device
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        dtype = self.embedding.weight.dtype
        if self.is_lstm:
            return (torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
        return torch.zeros(shape, device=device, dtype=dtype)

    def reset_hidden(self, hidden: Hidden, mask: torch.Tensor) -> Hidden:
        """Zero the state of streams whose episode restarts (``mask`` (B,) true).

        Out of place, so a state still referenced by an autograd graph is not modified.
        """
        keep = (~mask.to(dtype=torch.bool)).view(1, -1, 1)
        if isinstance(hidden, tuple):
            h, c = hidden
            return (h * keep.to(h.dtype), c * keep.to(c.dtype))
        return hidden * keep.to(hidden.dtype)

    def detach_hidden(self, hidden: Hidden) -> Hidden:
        """Cut the graph at a segment boundary (truncated backpropagation through time)."""
        if isinstance(hidden, tuple):
            return (hidden[0].detach(), hidden[1].detach())
        return hidden.detach()
