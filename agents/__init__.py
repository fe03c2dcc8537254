"""Training programs and the ``irlm`` command line, installed as ``irlm_agents``.

Each agent is one readable module (``irlm_agents.ppo``, ``irlm_agents.a2c``, ...) with an
``Args`` dataclass and a ``train(args) -> TrainResult`` function; run one with
``python -m irlm_agents.ppo`` or ``irlm train ppo``.
"""

from irlm_agents.args import TrainArgs, TrainResult

__all__ = ["TrainArgs", "TrainResult"]
