"""Everything that learns, installed as ``irlm_agents``.

- ``lm/``: the one language model (``model``), ``sampling``, ``devices``, ``checkpoints``,
  ``evaluation`` (the one evaluation function), ``generation`` and the n-gram peers (``ngram``).
- ``native/``: what the native agents share: the rollout, the training-loop pieces, estimators
  and gradients.
- ``sb3/``: the Stable-Baselines3 policy, the VecEnv adapter, ``SB3Args``, the validation
  callback and the logged ``learn`` call of the ``ppo`` and ``a2c`` agents.
- ``runs/``: training arguments (``args``), the run directory (``run_dir``), plots (``plotting``).
- one file per agent (``irlm_agents.supervised``, ``.reinforce``, ``.group``, ``.expected``,
  ``.mixer``, ``.ppo``, ``.a2c``), each with an ``Args`` dataclass and ``train(args)``;
  run one with ``python -m irlm_agents.group`` or ``irlm train group``.
- ``cli.py``: the ``irlm`` command line; ``train_command.py``: its ``irlm train AGENT`` commands.
"""
