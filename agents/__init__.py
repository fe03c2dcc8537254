"""Everything that learns, installed as ``irlm_agents``.

- ``lm/``: the one language model, sampling, devices, checkpoints, evaluation, n-gram peers.
- ``native/``: the rollout and estimators that the native agents share.
- ``sb3/``: the Stable-Baselines3 policy and VecEnv adapter.
- ``runs/``: arguments, run directories, metric logs, plots.
- one file per agent (``irlm_agents.supervised``, ``.reinforce``, ``.group``, ``.expected``,
  ``.mixer``, ``.ppo``, ``.a2c``), each with an ``Args`` dataclass and ``train(args)``;
  run one with ``python -m irlm_agents.group`` or ``irlm train group``.
- ``cli.py``: the ``irlm`` command line.
"""
