from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import TRPO
from stable_baselines3 import A2C, PPO

from irlm_agents.lm.checkpoints import save_model
from irlm_agents.lm.devices import resolve_device
from irlm_env.errors import IrlmError
from irlm_agents.lm.model import RNNLanguageModel
from irlm_agents.sb3 import RNNLanguagePolicy, make_self_contained, make_vec_env
from irlm_agents.sb3.distributions import LogProbEntropy, TokenDistribution, draw_tokens

ENV = {"corpus": "grammar", "corpus_options": {"n_sentences": 1000}, "context_length": 4, "episode_length": 16}
TINY = {"embedding_dim": 8, "hidden_size": 12}



def _ppo(seed: int = 0, **policy_kwargs: object) -> PPO:
    env = make_vec_env(n_envs=4, seed=seed, **ENV)
    return PPO(RNNLanguagePolicy, env, n_steps=8, batch_size=16, n_epochs=2, seed=seed, device="cpu",
               policy_kwargs={**TINY, **policy_kwargs})


@pytest.mark.parametrize("algo", [PPO, A2C])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_learn_runs_for_every_cell(algo: type, cell: str) -> None:
    env = make_vec_env(n_envs=4, seed=0, **ENV)
    extra = {"batch_size": 16, "n_epochs": 1} if algo is PPO else {}
    model = algo(RNNLanguagePolicy, env, n_steps=8, seed=0, device="cpu",
                 policy_kwargs={**TINY, "cell": cell, "num_layers": 2}, **extra)
    before = [p.detach().clone() for p in model.policy.language_model.parameters()]
    model.learn(64)
    lm = model.policy.language_model
    assert isinstance(lm, RNNLanguageModel) and lm.config.cell == cell and lm.config.num_layers == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, lm.parameters()))


def test_trpo_reads_the_distribution_as_torch_categorical() -> None:
    """sb3-contrib's TRPO takes the KL divergence of ``.distribution``, which the policy builds on demand."""
    env = make_vec_env(n_envs=4, seed=0, **ENV)
    agent = TRPO(RNNLanguagePolicy, env, n_steps=8, batch_size=16, seed=0, device="cpu", policy_kwargs=TINY)
    before = [p.detach().clone() for p in agent.policy.language_model.parameters()]
    agent.learn(64)
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.policy.language_model.parameters()))
    distribution = agent.policy.get_distribution(torch.randint(0, 65, (3, 4)))
    assert torch.allclose(distribution.distribution.probs, distribution.log_probs.exp())


def test_policy_is_the_language_model() -> None:
    policy = _ppo(tie_weights=True).policy
    lm = policy.language_model
    obs = torch.randint(0, lm.config.vocab_size, (5, 4))
    logits, _ = lm(obs)
    distribution = policy.get_distribution(obs)
    expected = torch.log_softmax(logits[:, -1], -1)
    assert torch.allclose(distribution.log_probs, expected, atol=1e-6)
    # one set of weights: the actor adds nothing of its own; the critic is one linear layer
    lm_params = {id(p) for p in lm.parameters()}
    own = [p for p in policy.parameters() if id(p) not in lm_params]
    assert sum(p.numel() for p in own) == lm.config.hidden_size + 1
    actions, values, log_prob = policy(obs, deterministic=True)
    assert torch.equal(actions, logits[:, -1].argmax(-1))
    assert values.shape == (5, 1)
    assert torch.allclose(log_prob, expected.max(-1).values, atol=1e-6)
    # float observations (as some SB3 buffers store them) give the same result
    assert torch.equal(policy.get_distribution(obs.float()).log_probs, distribution.log_probs)


def test_same_seed_same_parameters() -> None:
    runs = []
    for _ in range(2):
        model = _ppo(seed=7)
        model.learn(64)
        runs.append([p.detach().clone() for p in model.policy.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    other = _ppo(seed=8)
    other.learn(64)
    assert any(not torch.equal(a, b) for a, b in zip(runs[0], other.policy.parameters()))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_sb3_moves_an_absent_device_to_the_cpu_and_resolve_device_refuses_it(device: str) -> None:
    """What the README says: SB3's own get_device falls back silently; resolve_device does not."""
    env = make_vec_env(n_envs=2, **ENV)
    assert PPO(RNNLanguagePolicy, env, device=device, policy_kwargs=TINY).device == torch.device("cpu")
    with pytest.raises(IrlmError, match=f"device '{device}' is not usable"):
        PPO(RNNLanguagePolicy, env, device=resolve_device(device), policy_kwargs=TINY)


def test_actor_is_the_language_models_own_head() -> None:
    model = _ppo()
    policy = model.policy
    obs = torch.as_tensor(model.env.reset(), device=policy.device)
    logits = policy.language_model(obs)[0][:, -1]
    torch.testing.assert_close(policy.get_distribution(obs).log_probs, torch.log_softmax(logits, -1))
    names = [name for name, _ in policy.named_parameters()]
    assert not [name for name in names if not name.startswith(("features_extractor.model.", "value_net."))]


RELOAD = """
import json, sys, numpy as np, torch
from stable_baselines3 import PPO
from irlm_agents.sb3 import make_vec_env
model = PPO.load(sys.argv[1], device="cpu")
obs = np.array(json.loads(sys.argv[2]), dtype=np.int64)
actions, _ = model.predict(obs, deterministic=True)
digest = float(sum(p.double().sum() for p in model.policy.parameters()))
model.set_env(make_vec_env(n_envs=4, seed=1, **json.loads(sys.argv[3])))
model.learn(32, reset_num_timesteps=False)
print(json.dumps({"actions": actions.tolist(), "digest": digest,
                  "type": type(model.policy).__name__, "steps": model.num_timesteps}))
"""


def test_sb3_zip_round_trip_in_fresh_process(tmp_path: Path) -> None:
    model = _ppo(cell="lstm")
    model.learn(32)
    path = tmp_path / "agent.zip"
    model.save(path)
    obs = np.random.default_rng(0).integers(0, model.action_space.n, size=(6, 4))
    actions, _ = model.predict(obs, deterministic=True)
    digest = float(sum(p.detach().double().sum() for p in model.policy.parameters()))
    out = subprocess.run(
        [sys.executable, "-c", RELOAD, str(path), json.dumps(obs.tolist()), json.dumps(ENV)],
        capture_output=True, text=True, check=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["actions"] == actions.tolist()
    assert result["digest"] == pytest.approx(digest, rel=1e-12)
    assert result["type"] == "RNNLanguagePolicy"
    assert result["steps"] == model.num_timesteps + 32


def test_warm_start_from_checkpoint(tmp_path: Path) -> None:
    source = _ppo(cell="lstm", tie_weights=True, hidden_size=8)
    source.learn(32)
    env = source.get_env()
    vocab = env.get_attr("vocab")[0]  # type: ignore[union-attr]
    path = save_model(source.policy.language_model, tmp_path / "m.irlm", vocab, {"name": "word"})
    warm_start = {"init_from": str(path), "vocab": vocab}
    warm = PPO(RNNLanguagePolicy, make_vec_env(n_envs=4, **ENV), device="cpu", policy_kwargs=warm_start)
    a, b = source.policy.language_model.state_dict(), warm.policy.language_model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert warm.policy.language_model.config.cell == "lstm"
    # saved as given, the agent's policy_kwargs name the checkpoint, which loading reads again;
    # made self-contained, it reloads without the checkpoint or the vocabulary
    warm.save(tmp_path / "as-given.zip")
    make_self_contained(warm)
    warm.save(tmp_path / "warm.zip")
    moved = path.rename(tmp_path / "moved.irlm")
    with pytest.raises(IrlmError, match="does not exist"):
        PPO.load(tmp_path / "as-given.zip", device="cpu")
    loaded = PPO.load(tmp_path / "warm.zip", device="cpu").policy.language_model
    assert loaded.config.cell == "lstm" and loaded.config.hidden_size == 8
    assert all(torch.equal(a[k], loaded.state_dict()[k]) for k in a)
    moved.rename(path)
    with pytest.raises(IrlmError, match="hidden_size=32 \\(checkpoint has 8\\)"):
        PPO(RNNLanguagePolicy, make_vec_env(n_envs=2, **ENV), policy_kwargs={**warm_start, "hidden_size": 32})
    with pytest.raises(IrlmError, match=r"needs the env's vocabulary.*vocab=env.get_attr\('vocab'\)\[0\]"):
        PPO(RNNLanguagePolicy, make_vec_env(n_envs=2, **ENV), policy_kwargs={"init_from": str(path)})
    # a checkpoint for another vocabulary is refused, of another size or of the same size
    small = make_vec_env(n_envs=2, corpus="grammar", corpus_options={"n_sentences": 1000}, max_vocab=20)
    with pytest.raises(IrlmError, match="vocab has 65 tokens but the env's action space has 20"):
        PPO(RNNLanguagePolicy, small, policy_kwargs=warm_start)
    with pytest.raises(IrlmError, match="different vocabulary"):
        PPO(RNNLanguagePolicy, small, policy_kwargs={**warm_start, "vocab": small.get_attr("vocab")[0]})
    same_size = make_vec_env(n_envs=2, **{**ENV, "corpus_options": {"n_sentences": 1000, "seed": 1}})
    other = same_size.get_attr("vocab")[0]
    assert len(other) == len(vocab) and other != vocab
    with pytest.raises(IrlmError, match="different vocabulary"):
        PPO(RNNLanguagePolicy, same_size, policy_kwargs={**warm_start, "vocab": other})


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"ortho_init": True}, "ortho_init"),
        ({"net_arch": [64]}, "net_arch"),
        ({"share_features_extractor": False}, "share"),
        ({"cell": "transformer"}, "unknown RNN cell"),
        ({"hidden_size": 0}, "hidden_size"),
    ],
)
def test_bad_policy_kwargs(kwargs: dict, fragment: str) -> None:
    with pytest.raises(IrlmError, match=fragment):
        _ppo(**kwargs)


def test_wrong_spaces() -> None:
    with pytest.raises(IrlmError, match="integer Box"):
        PPO(RNNLanguagePolicy, "CartPole-v1", device="cpu")
    env = gym.make("Pendulum-v1")
    with pytest.raises(IrlmError, match="Discrete action space"):
        PPO(RNNLanguagePolicy, env, device="cpu")


def test_token_distribution_samples_and_scores_like_categorical() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 6) * 2
    logits[1, 2] = -1e4  # a token that must never be drawn
    dist = TokenDistribution(6).proba_distribution(logits)
    reference = torch.distributions.Categorical(logits=logits)
    actions = torch.tensor([0, 5, 3])
    assert torch.allclose(dist.log_prob(actions), reference.log_prob(actions), atol=1e-6)
    assert torch.allclose(dist.entropy(), reference.entropy(), atol=1e-5)
    assert torch.equal(dist.mode(), logits.argmax(-1))
    draws = torch.stack([dist.sample() for _ in range(20000)])  # (20000, 3)
    frequencies = torch.stack([torch.bincount(draws[:, row], minlength=6) for row in range(3)]) / 20000
    assert torch.allclose(frequencies, reference.probs, atol=0.015)
    assert frequencies[1, 2] == 0


def test_log_prob_entropy_gradient_matches_autograd() -> None:
    torch.manual_seed(0)
    logits = (torch.randn(4, 7, dtype=torch.float64) * 3).requires_grad_()
    actions = torch.tensor([0, 6, 2, 2])
    assert torch.autograd.gradcheck(lambda z: LogProbEntropy.apply(z, actions), (logits,))
    log_prob, entropy = LogProbEntropy.apply(logits, actions)
    reference = torch.distributions.Categorical(logits=logits)
    weights = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    ours = torch.autograd.grad((log_prob * weights[0]).sum() + (entropy * weights[1]).sum(), logits)[0]
    theirs = torch.autograd.grad(
        (reference.log_prob(actions) * weights[0]).sum() + (reference.entropy() * weights[1]).sum(), logits
    )[0]
    assert torch.allclose(ours, theirs, atol=1e-10)


def test_draw_tokens_matches_the_distribution() -> None:
    torch.manual_seed(1)
    logits = torch.randn(3, 5) * 2
    logits[2, 4] = -1e4
    reference = torch.distributions.Categorical(logits=logits)
    actions, log_prob = draw_tokens(logits, deterministic=True)
    assert torch.equal(actions, logits.argmax(-1))
    assert torch.allclose(log_prob, reference.log_prob(actions), atol=1e-6)
    draws = torch.stack([draw_tokens(logits, deterministic=False)[0] for _ in range(20000)])
    frequencies = torch.stack([torch.bincount(draws[:, row], minlength=5) for row in range(3)]) / 20000
    assert torch.allclose(frequencies, reference.probs, atol=0.015)
    assert frequencies[2, 4] == 0
    sampled, sampled_log_prob = draw_tokens(logits, deterministic=False)
    assert torch.allclose(sampled_log_prob, reference.log_prob(sampled), atol=1e-6)


def test_scaled_observations_are_refused_not_cast_to_a_few_ids() -> None:
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env(n_envs=4, **ENV))
    agent = PPO(RNNLanguagePolicy, env, n_steps=8, batch_size=16, device="cpu", policy_kwargs=TINY)
    with pytest.raises(IrlmError, match="not whole numbers, so not token ids.*VecNormalize with norm_obs=False"):
        agent.learn(64)
    PPO(RNNLanguagePolicy, VecNormalize(make_vec_env(n_envs=4, **ENV), norm_obs=False), n_steps=8, batch_size=16,
        device="cpu", policy_kwargs=TINY).learn(64)
