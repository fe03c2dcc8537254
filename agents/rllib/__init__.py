"""Ray RLlib on the next-word env: the env registered under a name RLlib's env runners build,
and an RLModule hosting the project's language model (``pip install -e ".[rllib]"``).

- :mod:`irlm_agents.rllib.env`: :data:`~irlm_agents.rllib.env.ENV_NAME` and ``register_env()``.
- :mod:`irlm_agents.rllib.module`: ``LanguageModelRLModule`` (new API stack) and the check that
  turns RLlib's default model on token ids into a clear error.
"""

from importlib.util import find_spec

from irlm_env.errors import IrlmError



class RLlibMissing(IrlmError, ImportError):
    """Ray is not installed: an ``ImportError`` to feature detection, a one-line error to the CLI."""


if find_spec("ray") is None:
    raise RLlibMissing(
        "irlm_agents.rllib needs Ray RLlib; install it with pip install 'irlm-env[rllib]', in an environment "
        "of its own (RLlib pins its own Gymnasium; see the README's Ray RLlib section)"
    )
