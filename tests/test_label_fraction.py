"""The supervised control that learns from a random fraction of the tokens (``label_fraction``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from irlm_agents import supervised
from irlm_agents.native.estimators import cross_entropy_loss
from irlm_env.errors import IrlmError

TINY = {
    "corpus": "grammar",
    "corpus_options": {"n_sentences": 2000},
    "hidden_size": 32,
    "embedding_dim": 16,
    "eval_every": 10**9,
    "eval_tokens": 2000,
    "progress": False,
    "device": "cpu",
    "n_envs": 8,
    "rollout_steps": 10,
    "total_tokens": 2000,
}


def test_kept_tokens_alone_make_the_loss_over_all_tokens() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 7)
    targets = torch.randint(0, 7, (3, 4))
    keep = torch.rand(3, 4) < 0.5
    nll = F.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1), reduction="none")
    torch.testing.assert_close(cross_entropy_loss(logits, targets, keep), nll[keep.reshape(-1)].sum() / 12)
    torch.testing.assert_close(cross_entropy_loss(logits, targets, torch.ones(3, 4, dtype=torch.bool)),
                               cross_entropy_loss(logits, targets))


@pytest.mark.parametrize("fraction", [0, 1.5, -0.1, float("nan"), True])
def test_a_label_fraction_outside_zero_to_one_is_refused(fraction: Any) -> None:
    with pytest.raises(IrlmError, match=r"label_fraction must be in \(0, 1\]"):
        supervised.Args(**TINY, label_fraction=fraction)


def test_training_labels_about_the_asked_fraction_of_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept: list[float] = []

    def watch(logits: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        assert keep is not None and keep.shape == targets.shape
        kept.append(float(keep.float().mean()))
        return cross_entropy_loss(logits, targets, keep)

    monkeypatch.setattr(supervised, "cross_entropy_loss", watch)
    supervised.train(supervised.Args(**TINY, label_fraction=0.3, run_dir=str(tmp_path / "run")))
    assert len(kept) >= 20
    assert abs(sum(kept) / len(kept) - 0.3) < 0.03
