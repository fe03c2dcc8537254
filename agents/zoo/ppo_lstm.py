"""sb3-contrib's RecurrentPPO (the zoo's ``ppo_lstm``) with ``RecurrentLanguagePolicy``.

The env must show one token per step: pass ``--env-kwargs context_length:1`` (with the other env
options). The settings of ``irlm train recurrent-ppo``; ``cell`` may be ``rnn``, ``gru`` or ``lstm``.
"""

hyperparams = {
    "irlm/NextWord-v0": {
        "policy": "irlm_agents.sb3.recurrent_policy.RecurrentLanguagePolicy",
        "n_envs": 32,
        "n_timesteps": 200_000,
        "n_steps": 32,
        "batch_size": 512,
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
