"""``irlm train AGENT``: one command per agent, its options generated from the agent's ``Args``.

Each option is described once, next to the code that uses it: a dataclass field's name, type,
default and ``help`` metadata become a click option. Agents are imported only when named or
asked for help, so ``irlm corpora`` stays quick.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import re
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from irlm_env.errors import IrlmError

#: Agent name -> module; the modules define ``Args`` (a TrainArgs dataclass) and ``train``.
AGENTS: dict[str, str] = {
    "ppo": "irlm_agents.ppo",
    "a2c": "irlm_agents.a2c",
    "recurrent-ppo": "irlm_agents.recurrent_ppo",
    "reinforce": "irlm_agents.reinforce",
    "group": "irlm_agents.group",
    "expected": "irlm_agents.expected",
    "supervised": "irlm_agents.supervised",
    "mixer": "irlm_agents.mixer",
}

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# -- options generated from dataclasses --------------------------------------------------------
def parse_pairs(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs, the values as typed: the factory's annotations say what each becomes.

    Converted here, ``path=2024`` would reach a text corpus as the number 2024 and
    ``name=NaN`` as a float; :func:`irlm_env.options.bind_options` converts each to its
    declared type instead.
    """
    options: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", ctx=ctx, param=param)
        options[key.strip()] = value
    return options


def _field_type(hint: Any) -> tuple[Any, bool]:
    """The click-relevant type of a dataclass field hint and whether ``None`` is allowed."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return inner[0], len(inner) < len(args)
    return hint, False


class OrNone(click.ParamType):
    """``kind``, or ``none`` for a field that allows None (``--max-vocab none``: no limit)."""

    def __init__(self, kind: Any) -> None:
        self.inner = click.types.convert_type(kind)
        self.name = f"{self.inner.name}|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
            return None
        return self.inner.convert(value, param, ctx)


def dataclass_options(cls: type) -> list[click.Option]:
    """One click option per dataclass field: ``foo_bar: int = 3`` becomes ``--foo-bar 3``.

    Booleans become ``--flag/--no-flag``; ``dict`` fields such as ``corpus_options`` become a
    repeatable ``--corpus-option KEY=VALUE``.
    """
    hints = typing.get_type_hints(cls)
    options = []
    for item in dataclasses.fields(cls):
        kind, optional = _field_type(hints[item.name])
        flag = item.name.replace("_", "-")
        help_text = item.metadata.get("help", "")
        if item.default is not dataclasses.MISSING:
            default = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{item.name} needs a default to become an option")
        if typing.get_origin(kind) is dict or kind is dict:
            singular = flag[:-1] if flag.endswith("s") else flag
            options.append(
                click.Option(
                    [f"--{singular}", item.name],
                    multiple=True,
                    metavar="KEY=VALUE",
                    callback=parse_pairs,
                    help=f"{help_text} (repeatable)",
                )
            )
        elif kind is bool:
            options.append(
                click.Option([f"--{flag}/--no-{flag}", item.name], default=default, show_default=True, help=help_text)
            )
        else:
            options.append(
                click.Option(
                    [f"--{flag}", item.name],
                    type=OrNone(kind) if optional else kind,
                    default=default,
                    show_default=default is not None,
                    help=help_text + (" (default: none)" if optional and default is None
                                      else " (or none)" if optional and "none" not in help_text else ""),
                )
            )
    return options


def check_typed_model_settings(args: Any, ctx: click.Context) -> None:
    """Refuse a model option typed next to ``--init-from`` that the checkpoint's model contradicts.

    The agents can only tell a setting changed from its default; here the command line knows
    which ones the user typed, so ``--hidden-size 256`` (the default) next to a checkpoint of 32
    is refused too, rather than recorded in config.json for a model it did not describe.
    """
    from irlm_agents.lm.checkpoints import load_model
    from irlm_agents.runs.args import MODEL_SETTINGS, check_warm_start

    typed = [name for name in MODEL_SETTINGS if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE]
    if typed:
        check_warm_start(args, load_model(args.init_from).model.config, typed)


#: Env keywords whose agent setting has another name: the env's ``mode`` is ``--episode-mode``.
ENV_KEYWORDS = {"mode": "episode_mode"}
# Not an option's name: one inside a path, a longer word or a quoted value (``/tmp/run_dir``,
# ``my_run_dir``, ``'k_early'``), or a plugin's own option of the same name (``corpus 'grammar'
# option seed=...`` is not ``--seed``).
_UNRELATED = r"(?<![\w/\\.'\"-])(?<!option )"


def option_names(message: str, options: Sequence[click.Option]) -> str:
    """``message`` with the settings it names written as the command line's options.

    The agents' argument checks serve the Python API as well, so they name fields as Python
    does (``k_early``, ``feed='action'``); on a command line ``--k-early`` and ``--feed action``
    are what the user typed and can find in ``--help``. One-word names stay as they are (``k``,
    ``temperature``): there they read the same, and ``--k`` inside ``k=8`` would not.
    """
    flags = {option.name: option.opts[0] for option in options if option.name}
    flags.update({keyword: flags[name] for keyword, name in ENV_KEYWORDS.items() if name in flags})
    for word in sorted(flags, key=len, reverse=True):
        flag = flags[word]
        # The model's own checks qualify the name (ModelConfig.dropout): unambiguous, one word or not.
        message = re.sub(rf"\bModelConfig\.{word}\b", flag, message)
        message = re.sub(rf"{_UNRELATED}{word}='([^']*)'", rf"{flag} \1", message)
        if "_" in word:
            message = re.sub(rf"{_UNRELATED}{word}(?![\w/\\'\"-]|\.\w)", flag, message)
    return message


def agent_command(name: str) -> click.Command:
    """The ``irlm train NAME`` command for one agent module."""
    module = importlib.import_module(AGENTS[name])
    args_cls: type = module.Args
    train: Callable[[Any], Any] = module.train
    summary = (module.__doc__ or f"Train the {name} agent.").strip().splitlines()[0]
    params = dataclass_options(args_cls)

    def run(**kwargs: Any) -> None:
        from irlm_agents.runs.report import training_report  # torch: only once training runs

        try:
            args = args_cls(**kwargs)
            if getattr(args, "init_from", None) is not None:
                check_typed_model_settings(args, click.get_current_context())
            result = train(args)
        except IrlmError as error:
            raise IrlmError(option_names(str(error), params)) from None
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone reports
            click.echo(training_report(name, result.metrics, Path(result.run_dir)))

    epilog = (
        "\b\nExamples:\n"
        f"  irlm train {name} --corpus grammar --total-tokens 20000 --hidden-size 64\n"
        f"  irlm train {name} --corpus text --corpus-option path=notes.txt --run-dir runs/notes\n"
        "Ctrl-C stops training, saves final.irlm in the run directory and exits."
    )
    return click.Command(
        name,
        callback=run,
        params=params,
        help=(module.__doc__ or summary).strip(),
        short_help=summary,
        epilog=epilog,
        context_settings=CONTEXT_SETTINGS,
    )


class AgentGroup(click.Group):
    """Lists agents without importing them; imports one only when it is run or asked for help."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, module in AGENTS.items() if importlib.util.find_spec(module) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.list_commands(ctx):
            return None
        return agent_command(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            from irlm_env.errors import suggest

            raise click.UsageError(f"unknown agent {name!r}; {suggest(name, self.list_commands(ctx))}")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, agent_command(name).get_short_help_str(80)) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Agents"):
                formatter.write_dl(rows)
