"""PPO with ``RNNLanguagePolicy`` (a window of ``context_length`` tokens; the env's default is 8).

The settings of ``irlm train ppo``: ``gamma=0`` because the reward is immediate, an entropy
bonus that keeps sampling alive, and the language model's own sizes in ``policy_kwargs``.
"""

hyperparams = {
    "irlm/NextWord-v0": {
        "policy": "irlm_agents.sb3.RNNLanguagePolicy",
        "n_envs": 32,
        "n_timesteps": 200_000,
        "n_steps": 16,
        "batch_size": 256,
        "n_epochs": 4,
        "gamma": 0.0,
        "gae_lambda": 0.95,
        "learning_rate": 3e-3,
        "clip_range": 0.2,
        "ent_coef": 0.01,
        "vf_coef": 0.5,
        "max_grad_norm": 0.5,
        "policy_kwargs": {"cell": "gru", "embedding_dim": 128, "hidden_size": 256},
    }
}
