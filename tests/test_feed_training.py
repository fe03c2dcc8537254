"""Training on the agent's own actions (``feed="action"``): the native agents' fused update sees
exactly what the env showed, every agent trains with the option, and bad values fail early."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from irlm_agents import group, ppo
from irlm_agents.lm.checkpoints import load_model
from irlm_agents.lm.model import RNNLanguageModel
from irlm_agents.lm.sampling import sample_candidates
from irlm_agents.native.estimators import cross_entropy_loss, reinforce_weights
from irlm_agents.native.gradients import Workspace, head_surrogate, policy_gradient_logits
from irlm_agents.native.rollout import Rollout, Segment
from irlm_agents.native.training import NativeArgs, Setup, build
from irlm_agents.sb3.vec_env import SB3VecEnvAdapter
from irlm_env.errors import IrlmError

TINY = {
    "corpus": "grammar",
    "corpus_options": {"n_sentences": 3000},
    "hidden_size": 32,
    "embedding_dim": 16,
    "eval_every": 10**9,
    "eval_tokens": 2000,
    "progress": False,
    "device": "cpu",
    "learning_rate": 1e-2,
}


K = 4


def _candidates(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """K distinct candidates, as the group agent draws them; the env is stepped with the first."""
    return sample_candidates(logits, K, replacement=False, temperature=1.0)


class _Recorded:
    """The observations the env returned, and where episodes started, seen from outside the rollout."""

    def __init__(self, rollout_env: Any) -> None:
        self.shown: list[np.ndarray] = []
        self.starts: list[np.ndarray] = []
        reset, step = rollout_env.reset, rollout_env.step

        def recording_reset(**kwargs: Any) -> Any:
            obs, info = reset(**kwargs)
            self.shown.append(np.asarray(obs)[:, 0].copy())
            self.starts.append(np.ones(len(obs), dtype=bool))
            return obs, info

        def recording_step(actions: np.ndarray) -> Any:
            obs, rewards, terminated, truncated, info = step(actions)
            self.shown.append(np.asarray(obs)[:, 0].copy())
            self.starts.append(np.logical_or(terminated, truncated))
            return obs, rewards, terminated, truncated, info

        rollout_env.reset, rollout_env.step = recording_reset, recording_step


def _action_segment(feed_probability: float | None) -> tuple[Setup, Rollout, Segment, torch.Tensor, torch.Tensor]:
    """A segment collected with fed-back actions (episodes restart inside it), and the env's
    observations at its steps with their episode starts, as the env returned them."""
    torch.manual_seed(0)
    args = NativeArgs(**{**TINY, "episode_length": 7, "n_envs": 3, "rollout_steps": 12, "feed": "action",
                         "feed_probability": feed_probability})
    setup = build(args)
    env = setup.rollout.env
    recorded = _Recorded(env)
    rollout = Rollout(env, setup.model, setup.device, seed=5)
    segment = rollout.collect(args.rollout_steps, _candidates, score=True)
    shown = torch.from_numpy(np.stack(recorded.shown[: args.rollout_steps], 1))
    starts = torch.from_numpy(np.stack(recorded.starts[: args.rollout_steps], 1))
    return setup, rollout, segment, shown, starts


Loss = Callable[[Setup, Segment, torch.Tensor], torch.Tensor]


def _supervised_loss(setup: Setup, segment: Segment, features: torch.Tensor) -> torch.Tensor:
    return cross_entropy_loss(setup.model.head(features), segment.targets)


def _reinforce_loss(setup: Setup, segment: Segment, features: torch.Tensor) -> torch.Tensor:
    """The reinforce agent's policy-gradient surrogate on the stepped actions (no baseline)."""
    contexts = segment.num_tokens
    direction = policy_gradient_logits(
        segment.probs.reshape(contexts, -1), segment.actions[..., :1].reshape(contexts, 1),
        reinforce_weights(segment.rewards[..., 0]).reshape(contexts, 1), scale=1 / contexts,
        out=Workspace(setup.model.config.vocab_size, setup.device).rows(contexts),
    )
    return -head_surrogate(setup.model, features, direction)


def _group_loss(setup: Setup, segment: Segment, features: torch.Tensor) -> torch.Tensor:
    """The recommended likelihood agent's loss (stop at the first hit, misses weigh too)."""
    args = group.Args(k=K, stop_at_hit=True, miss_weight=1.0)
    scratch = Workspace(setup.model.config.vocab_size, setup.device)
    return group.group_loss(args, setup.model, segment, features, None, scratch, setup.share)[0]


def _grads(setup: Setup, loss: Loss, segment: Segment, features: torch.Tensor) -> list[torch.Tensor]:
    setup.model.zero_grad()
    loss(setup, segment, features).backward()
    return [p.grad.clone() for p in setup.model.parameters()]


def _step_by_step_features(model: RNNLanguageModel, segment: Segment, inputs: torch.Tensor,
                           starts: torch.Tensor) -> torch.Tensor:
    """The reference: the model fed ``inputs`` one step at a time, its state reset at episode starts."""
    hidden = segment.hidden
    features = []
    for t in range(inputs.shape[1]):
        hidden = model.reset_hidden(hidden, starts[:, t])
        step_features, hidden = model.features(inputs[:, t : t + 1], hidden)
        features.append(step_features)
    return torch.cat(features, 1)


@pytest.mark.parametrize(
    "loss", [_supervised_loss, _reinforce_loss, _group_loss], ids=["supervised", "reinforce", "group"]
)
@pytest.mark.parametrize("feed_probability", [None, 0.5], ids=["p=1", "p=0.5"])
def test_the_fused_update_equals_a_step_by_step_loop_over_what_the_env_showed(
    feed_probability: float | None, loss: Loss
) -> None:
    setup, rollout, segment, shown, starts = _action_segment(feed_probability)
    model = setup.model
    assert torch.equal(segment.tokens, shown) and torch.equal(segment.starts, starts)
    assert starts[:, 1:].any(), "an episode should restart inside the segment"

    fused_features = rollout.features(segment)
    # The update reuses the rollout's π: the fused pass must reproduce it.
    with torch.no_grad():
        torch.testing.assert_close(F.softmax(model.head(fused_features), -1), segment.probs, atol=1e-5, rtol=1e-4)
    fused = _grads(setup, loss, segment, fused_features)
    reference = _grads(setup, loss, segment, _step_by_step_features(model, segment, shown, starts))
    assert any(g.abs().sum() > 0 for g in fused)
    for (name, _), got, want in zip(model.named_parameters(), fused, reference):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5, msg=name)

    # The check has teeth: reading the true text instead gives other tokens and other gradients.
    true_tokens = torch.where(starts[:, 1:], shown[:, 1:], segment.targets[:, :-1])
    true_tokens = torch.cat([shown[:, :1], true_tokens], 1)
    in_episode = ~starts[:, 1:]
    fed = shown[:, 1:][in_episode] != true_tokens[:, 1:][in_episode]
    assert fed.any()
    if feed_probability is not None:
        assert not fed.all(), "with p=0.5 some steps should show the true token"
    teacher_forced = _grads(setup, loss, segment, _step_by_step_features(model, segment, true_tokens, starts))
    assert any(not torch.allclose(a, b, atol=1e-6, rtol=1e-5) for a, b in zip(fused, teacher_forced))


def test_a_rollout_without_a_sampler_refuses_an_env_that_shows_actions() -> None:
    args = NativeArgs(**{**TINY, "n_envs": 2, "rollout_steps": 4, "feed": "action", "feed_probability": 0.5})
    with pytest.raises(ValueError, match="needs a sampler"):
        build(args).rollout.collect(args.rollout_steps)


def _train(agent: str, run_dir: Path, **options: Any) -> Any:
    module = importlib.import_module(f"irlm_agents.{agent}")
    return module.train(module.Args(**{**TINY, "run_dir": str(run_dir), **options}))


NATIVE = {"episode_length": 140, "n_envs": 8, "rollout_steps": 10}


@pytest.mark.parametrize(
    ("agent", "options"),
    [
        ("supervised", {}),
        ("reinforce", {"baseline": "critic"}),
        ("group", {"k": 4, "stop_at_hit": True, "miss_weight": 1.0, "unigram_init": True}),
    ],
    ids=["supervised", "reinforce", "group"],
)
def test_native_agents_train_on_their_own_actions_reproducibly(
    agent: str, options: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown_actions: list[float] = []
    real_collect = Rollout.collect

    def watch(self: Rollout, *args: Any, **kwargs: Any) -> Segment:
        segment = real_collect(self, *args, **kwargs)
        in_episode = ~segment.starts[:, 1:]
        fed = segment.tokens[:, 1:][in_episode] == segment.actions[:, :-1, 0][in_episode]
        shown_actions.append(float(fed.float().mean()))
        return segment

    monkeypatch.setattr(Rollout, "collect", watch)
    settings = {**NATIVE, "total_tokens": 3000, "feed": "action", "feed_probability": 0.5, **options}
    first = _train(agent, tmp_path / "a", **settings)
    second = _train(agent, tmp_path / "b", **settings)
    assert first.metrics["top1"] == second.metrics["top1"]
    assert first.metrics["free_top1"] == second.metrics["free_top1"]
    for a, b in zip(first.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    # About half the steps showed the sampled action (the rest the true token, which the
    # action sometimes equals too).
    assert 0.4 < np.mean(shown_actions) < 0.8
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (config["args"]["feed"], config["args"]["feed_probability"]) == ("action", 0.5)
    saved = load_model(tmp_path / "a" / "final.irlm")
    assert (saved.extra["train_args"]["feed"], saved.extra["train_args"]["feed_probability"]) == ("action", 0.5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"feed": "actions"}, "unknown feed mode 'actions'"),
        ({"feed": "truth", "feed_probability": 0.5}, "only applies to fed actions"),
        ({"feed": "action", "feed_probability": 1.5}, r"must be a real number in \[0, 1\]"),
    ],
)
@pytest.mark.parametrize("agent", ["supervised", "ppo"])
def test_bad_feed_options_fail_with_the_envs_message_before_training(
    agent: str, options: dict[str, Any], message: str, tmp_path: Path
) -> None:
    extra = {"context_length": 4} if agent == "ppo" else NATIVE
    with pytest.raises(IrlmError, match=message):
        _train(agent, tmp_path / "run", total_tokens=1000, **extra, **options)
    assert not (tmp_path / "run").exists()


def test_ppo_trains_on_its_own_actions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SB3 env shows each stream's action as the newest token of its next window."""
    fed: list[bool] = []
    real_step_wait = SB3VecEnvAdapter.step_wait

    def watch(self: SB3VecEnvAdapter) -> Any:
        actions = np.asarray(self._actions)
        obs, rewards, dones, infos = real_step_wait(self)
        fed.extend((obs[:, -1] == actions)[~dones].tolist())
        return obs, rewards, dones, infos

    monkeypatch.setattr(SB3VecEnvAdapter, "step_wait", watch)
    result = ppo.train(ppo.Args(**{**TINY, "context_length": 4, "n_envs": 8, "total_tokens": 512, "n_steps": 16,
                                   "batch_size": 64, "feed": "action", "run_dir": str(tmp_path / "run")}))
    assert fed and all(fed)
    assert 0.0 <= result.metrics["free_top1"] <= 1.0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["args"]["feed"] == "action"


def test_with_dropout_the_update_takes_pi_at_its_own_features() -> None:
    """Dropout draws new masks for the update's pass, so the rollout's π must be replaced by the
    π at those features; without dropout the rollout's π already is that π."""
    for dropout in (0.0, 0.5):
        setup = build(NativeArgs(**{**TINY, "n_envs": 3, "rollout_steps": 6, "dropout": dropout}))
        rollout = Rollout(setup.rollout.env, setup.model, setup.device, seed=5)
        setup.model.train()
        segment = rollout.collect(6, _candidates, score=True)
        during_rollout = segment.probs.clone()
        features = rollout.features(segment)
        at_features = F.softmax(setup.model.head(features.detach()), -1)
        assert torch.allclose(segment.probs, at_features, atol=1e-6)
        assert torch.equal(segment.probs, during_rollout) == (dropout == 0.0)
