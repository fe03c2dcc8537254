"""The README's ``irlm train group`` commands: each one parses into valid settings, and the ones it
recommends are the configurations whose figures it quotes (``bench/learning.py``), so a figure
and the command a reader copies cannot drift apart."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from irlm_agents import group
from irlm_agents.train_command import agent_command
from test_bench_configs import _bench_agents

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
#: A full command: the README's "irlm train group ..." placeholder is left out.
COMMAND = re.compile(r"irlm train group (--[^`\n]*)")


def _settings(command: str) -> group.Args:
    context = agent_command("group").make_context("group", shlex.split(command))
    return group.Args(**context.params)


def test_every_group_command_in_the_readme_parses_into_valid_settings() -> None:
    commands = COMMAND.findall(README)
    assert len(commands) >= 5
    for command in commands:
        _settings(command)


@pytest.mark.parametrize(
    "name",
    [
        "likelihood-k8-t07-memory-marginal",
        "likelihood-k2-t05-memory-marginal",
        "likelihood-k1-t05-memory-marginal",
        "likelihood-budget1-k4-t05-memory-marginal-trust",
        "likelihood-budget8-k32-t05-memory-marginal10-unqueried07",
    ],
)
def test_a_recommended_configuration_has_its_command_in_the_readme(name: str) -> None:
    module, options, _ = _bench_agents()[name]
    assert module == "group"
    matching = [
        command for command in COMMAND.findall(README)
        if (settings := _settings(command)).weight_decay == 0.3  # the benchmarks' setting
        and all(getattr(settings, key) == value for key, value in options.items())
    ]
    assert matching, f"no README command trains {name} ({options}, --weight-decay 0.3)"
