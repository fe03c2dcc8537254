"""Hyperparameters of ``irlm/NextWord-v0`` for RL Baselines3 Zoo, one module per algorithm.

The zoo reads a ``hyperparams`` dict keyed by env id from the module named by ``--conf-file``::

    python -m rl_zoo3.train --algo ppo --env irlm/NextWord-v0 --gym-packages irlm_env \\
        --conf-file irlm_agents.zoo.ppo --env-kwargs corpus:"'grammar'"
    python -m rl_zoo3.train --algo ppo_lstm --env irlm/NextWord-v0 --gym-packages irlm_env \\
        --conf-file irlm_agents.zoo.ppo_lstm --env-kwargs corpus:"'grammar'" context_length:1

The files hold no ``env_kwargs`` on purpose: the zoo builds its evaluation env from the
command line's ``--env-kwargs`` only, so options given in a file would reach the training env
and not the evaluation env (another corpus, another vocabulary). Env options go on the command
line, where both envs (and ``rl_zoo3.enjoy``, which reads them back from the run) get them.
"""
