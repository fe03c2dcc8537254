from __future__ import annotations

import pytest
import torch

from irlm_env.errors import IrlmError
from irlm_agents.lm.model import ModelConfig, RNNLanguageModel, parameter_shapes


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
def test_shapes_and_hidden(cell: str, layers: int) -> None:
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(vocab_size=11, embedding_dim=6, hidden_size=5, num_layers=layers, cell=cell))
    tokens = torch.randint(0, 11, (3, 4))
    logits, hidden = model(tokens)
    assert logits.shape == (3, 4, 11)
    feats, _ = model.features(tokens)
    assert feats.shape == (3, 4, 5)
    assert torch.allclose(model.head(feats), logits)
    h0 = model.initial_hidden(3)
    first = h0[0] if cell == "lstm" else h0
    assert first.shape == (layers, 3, 5) and not first.any()
    # running step by step with the carried state equals one pass
    state = h0
    for t in range(4):
        step, state = model(tokens[:, t : t + 1], state)
        assert torch.allclose(step[:, 0], logits[:, t], atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_reset_hidden_zeroes_only_masked_streams(cell: str) -> None:
    model = RNNLanguageModel(ModelConfig(vocab_size=7, embedding_dim=4, hidden_size=3, cell=cell))
    _, hidden = model(torch.randint(0, 7, (3, 5)))
    mask = torch.tensor([True, False, True])
    reset = model.reset_hidden(hidden, mask)
    parts_before = hidden if cell == "lstm" else (hidden,)
    parts_after = reset if cell == "lstm" else (reset,)
    for before, after in zip(parts_before, parts_after):
        assert not after[:, 0].any() and not after[:, 2].any()
        assert torch.equal(after[:, 1], before[:, 1])
        assert before[:, 0].abs().sum() > 0  # out of place


def test_reset_stream_matches_fresh_start() -> None:
    torch.manual_seed(1)
    model = RNNLanguageModel(ModelConfig(vocab_size=9, embedding_dim=4, hidden_size=4, cell="lstm"))
    tokens = torch.randint(0, 9, (2, 3))
    _, hidden = model(tokens)
    hidden = model.reset_hidden(hidden, torch.tensor([True, False]))
    nxt = torch.randint(0, 9, (2, 2))
    out, _ = model(nxt, hidden)
    fresh, _ = model(nxt[:1])
    assert torch.allclose(out[0], fresh[0], atol=1e-6)


def test_tied_weights_same_and_projected_sizes() -> None:
    same = RNNLanguageModel(ModelConfig(vocab_size=10, embedding_dim=8, hidden_size=8, tie_weights=True))
    assert same.decoder.weight is same.embedding.weight and same.projection is None
    proj = RNNLanguageModel(ModelConfig(vocab_size=10, embedding_dim=4, hidden_size=8, tie_weights=True))
    assert proj.decoder.weight is proj.embedding.weight and proj.projection is not None
    logits, _ = proj(torch.randint(0, 10, (2, 3)))
    assert logits.shape == (2, 3, 10)
    n_untied = sum(p.numel() for p in RNNLanguageModel(ModelConfig(vocab_size=10, embedding_dim=8, hidden_size=8)).parameters())
    assert sum(p.numel() for p in same.parameters()) == n_untied - 10 * 8


def test_dropout_active_only_in_training() -> None:
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(vocab_size=10, embedding_dim=8, hidden_size=8, num_layers=2, dropout=0.5))
    tokens = torch.randint(0, 10, (2, 5))
    model.eval()
    a, _ = model(tokens)
    b, _ = model(tokens)
    assert torch.equal(a, b)
    model.train()
    c, _ = model(tokens)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"vocab_size": 0}, "vocab_size"),
        ({"vocab_size": 10, "hidden_size": -1}, "hidden_size"),
        ({"vocab_size": 10, "num_layers": 1.5}, "num_layers"),
        ({"vocab_size": 10, "cell": "gur"}, "did you mean 'gru'"),
        ({"vocab_size": 10, "dropout": 1.0}, "dropout"),
        ({"vocab_size": 10, "pad_id": 10}, "pad_id"),
        ({"vocab_size": 10, "tie_weights": "yes"}, "tie_weights"),
    ],
)
def test_config_validation(kwargs: dict, fragment: str) -> None:
    with pytest.raises(IrlmError, match=fragment):
        ModelConfig(**kwargs)


def test_config_dict_round_trip_and_unknown_key() -> None:
    config = ModelConfig(vocab_size=12, cell="lstm", num_layers=2)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(IrlmError, match="hiden_size"):
        ModelConfig.from_dict({"vocab_size": 3, "hiden_size": 4})
    with pytest.raises(IrlmError, match="ModelConfig"):
        RNNLanguageModel({"vocab_size": 3})  # type: ignore[arg-type]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("tied, embedding_dim", [(False, 4), (True, 4), (True, 6)])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_parameter_shapes_match_the_model(cell: str, tied: bool, embedding_dim: int, num_layers: int) -> None:
    config = ModelConfig(vocab_size=11, embedding_dim=embedding_dim, hidden_size=6, num_layers=num_layers,
                         cell=cell, tie_weights=tied)
    state = RNNLanguageModel(config).state_dict()
    assert parameter_shapes(config) == {name: tuple(tensor.shape) for name, tensor in state.items()}
