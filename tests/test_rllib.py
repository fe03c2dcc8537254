"""Ray RLlib on the next-word env: PPO with ``LanguageModelRLModule`` on two env runners, the
clear error for RLlib's default model, and the module's checks.

Runs where ``ray[rllib]`` is installed: RLlib pins its own Gymnasium, so ``.ci/run`` builds a
second environment for it (``.venv-rllib``) and ``tests/test_rllib_venv.py`` runs this file
there on every CI run. The PPO configuration is the README's, read from its ``rllib_ppo.py``
block, so the documented lines are the tested ones.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

ray = pytest.importorskip("ray")

from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402
from ray.rllib.callbacks.callbacks import RLlibCallback  # noqa: E402

from irlm_agents.lm.model import RNNLanguageModel  # noqa: E402
from irlm_agents.rllib.env import ENV_NAME, TokenIds, make_env  # noqa: E402
from irlm_agents.rllib.module import LanguageModelRLModule  # noqa: E402
from irlm_env.envs.vector import NextWordVectorEnv  # noqa: E402
from irlm_env.errors import IrlmError  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
BUILD = "algo = config.build_algo()"


def readme_example() -> str:
    """The README's ``rllib_ppo.py`` block."""
    match = re.search(r"^```python file=rllib_ppo\.py\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    assert match, "the README needs a ```python file=rllib_ppo.py block"
    return match[1]


def steps_per_runner() -> type[RLlibCallback]:
    """A callback counting the env steps each env runner sampled, under its worker index.

    Made in a function, so Ray ships the class itself to the env runners (they cannot import
    this test module).
    """

    class StepsPerRunner(RLlibCallback):
        def on_sample_end(self, *, env_runner: Any, metrics_logger: Any, samples: list[Any], **kwargs: Any) -> None:
            steps = sum(len(episode) for episode in samples)
            metrics_logger.log_value(f"steps_of_runner_{env_runner.worker_index}", steps, reduce="sum")

    return StepsPerRunner


@pytest.fixture(scope="module")
def readme_config() -> Any:
    """The README's ``config`` (its lines up to building the algorithm run here, Ray included)."""
    code = readme_example()
    assert BUILD in code
    scope: dict[str, Any] = {}
    exec(code.split(BUILD)[0], scope)  # noqa: S102 - the README's own example
    yield scope["config"]
    ray.shutdown()


def test_ppo_with_the_language_model_on_two_env_runners(readme_config: PPOConfig) -> None:
    start = time.perf_counter()
    algo = readme_config.copy(copy_frozen=False).callbacks(steps_per_runner()).build_algo()
    built = time.perf_counter() - start
    returns = []
    for _ in range(2):
        result = algo.train()
        returns.append(result["env_runners"]["episode_return_mean"])
    trained = time.perf_counter() - start - built
    module = algo.get_module()
    algo.stop()
    print(f"RLlib PPO: built in {built:.1f} s, 2 iterations in {trained:.1f} s, episode returns {returns}")
    runners = result["env_runners"]
    assert runners["steps_of_runner_1"] > 0 and runners["steps_of_runner_2"] > 0, runners
    learner = result["learners"]["default_policy"]
    assert learner and math.isfinite(learner["total_loss"]) and learner["num_module_steps_trained"] > 0
    assert isinstance(module.language_model, RNNLanguageModel)


def test_the_default_model_fails_at_build_naming_the_cause(readme_config: PPOConfig) -> None:
    """Without the module, RLlib's default model is refused when it is built (with remote env
    runners RLlib logs this error and raises its own; without them it raises this one)."""
    config = PPOConfig().environment(ENV_NAME, env_config={"corpus": "grammar"}).env_runners(num_env_runners=0)
    with pytest.raises(ValueError, match="token ids need an embedding.*LanguageModelRLModule"):
        config.build_algo()


def test_the_env_declares_token_ids_single_and_vectorised() -> None:
    single = make_env({"corpus": "grammar", "context_length": 3})
    assert isinstance(single.observation_space, TokenIds) and single.observation_space.shape == (3,)
    assert single.observation_space.contains(single.reset(seed=0)[0])
    vector = make_env({"corpus": "grammar", "context_length": 3, "num_envs": 4})
    assert isinstance(vector, NextWordVectorEnv) and isinstance(vector.single_observation_space, TokenIds)
    assert vector.observation_space.contains(vector.reset(seed=0)[0])
    # the README's driver-side check: the error a remote runner would hide behind an IndexError
    with pytest.raises(IrlmError, match="context_len"):
        make_env({"corpus": "grammar", "context_len": 4})


def test_the_module_refuses_observations_that_are_not_token_ids() -> None:
    with pytest.raises(IrlmError, match="needs a 1-D integer Box observation"):
        LanguageModelRLModule(
            observation_space=gym.spaces.Box(0, 1, (4,), np.float32), action_space=gym.spaces.Discrete(10)
        )


def test_the_module_refuses_unknown_model_config_keys() -> None:
    with pytest.raises(IrlmError, match=r"unknown model_config keys \['hidden'\]"):
        LanguageModelRLModule(
            observation_space=TokenIds(10, 4), action_space=gym.spaces.Discrete(10), model_config={"hidden": 8}
        )
    # RLlib's default-model settings would be ignored: refused unless left at RLlib's defaults
    with pytest.raises(IrlmError, match=r"does not use RLlib's default-model settings \['lstm_cell_size', 'use_lstm'\]"):
        LanguageModelRLModule(observation_space=TokenIds(10, 4), action_space=gym.spaces.Discrete(10),
                              model_config={"use_lstm": True, "lstm_cell_size": 32})
    module = LanguageModelRLModule(observation_space=TokenIds(10, 4), action_space=gym.spaces.Discrete(10),
                                   model_config={"use_lstm": False, "vf_share_layers": False, "hidden_size": 8})
    assert module.language_model.config.hidden_size == 8


def test_the_module_gives_logits_over_the_vocabulary_and_values() -> None:
    import torch
    from ray.rllib.core.columns import Columns

    module = LanguageModelRLModule(
        observation_space=TokenIds(10, 4), action_space=gym.spaces.Discrete(10),
        model_config={"hidden_size": 8, "embedding_dim": 4},
    )
    batch = {Columns.OBS: torch.randint(0, 10, (5, 4))}
    out = module.forward_train(batch)
    assert out[Columns.ACTION_DIST_INPUTS].shape == (5, 10)
    assert module.compute_values(batch, out[Columns.EMBEDDINGS]).shape == (5,)


def test_the_module_warm_starts_only_against_the_env_vocabulary(tmp_path: Path) -> None:
    import torch

    from irlm_agents.lm.checkpoints import save_model
    from irlm_agents.lm.model import ModelConfig
    from irlm_env.corpus import load_corpus

    corpus = load_corpus("grammar", n_sentences=1000)
    other = load_corpus("grammar", n_sentences=1000, seed=1)
    assert len(other.vocab) == len(corpus.vocab) and other.vocab != corpus.vocab
    model = RNNLanguageModel(ModelConfig(vocab_size=len(corpus.vocab), embedding_dim=4, hidden_size=8))
    path = save_model(model, tmp_path / "m.irlm", corpus.vocab, corpus.tokenizer.config())
    spaces = {"observation_space": TokenIds(len(corpus.vocab), 4), "action_space": gym.spaces.Discrete(len(corpus.vocab))}
    warm = LanguageModelRLModule(**spaces, model_config={"init_from": str(path), "vocab": corpus.vocab})
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), warm.language_model.state_dict().values()))
    with pytest.raises(IrlmError, match=r"needs the env's vocabulary.*\"vocab\": load_corpus"):
        LanguageModelRLModule(**spaces, model_config={"init_from": str(path)})
    with pytest.raises(IrlmError, match="different vocabulary"):
        LanguageModelRLModule(**spaces, model_config={"init_from": str(path), "vocab": other.vocab})
