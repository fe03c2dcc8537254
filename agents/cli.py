"""The ``irlm`` command line: train, evaluate, generate, plot, and inspect plugins and corpora.

``irlm train AGENT`` is built in ``train_command.py`` from each agent's ``Args`` dataclass. Every
user mistake ends as one ``Error: ...`` line and a non-zero exit, for ``irlm`` and for
``python -m irlm_agents.AGENT`` alike (:func:`run_agent`).
"""

from __future__ import annotations

import json
import math
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from irlm_agents.train_command import CONTEXT_SETTINGS, AgentGroup, OrNone, parse_pairs
from irlm_env.errors import IrlmError
from irlm_env.options import SEED_MAX


# -- the command group -------------------------------------------------------------------------
@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="irlm-env", prog_name="irlm")
def cli() -> None:
    """Next-word prediction as reinforcement learning with immediate rewards.

    \b
    Examples:
      irlm corpora
      irlm train ppo --corpus grammar --total-tokens 20000 --run-dir runs/ppo
      irlm eval runs/ppo --json
      irlm generate runs/ppo/final.irlm --prompt "the cat"
      irlm plot runs/ppo runs/a2c -o compare.png
    """


@cli.group(cls=AgentGroup, context_settings=CONTEXT_SETTINGS)
def train() -> None:
    """Train AGENT and write a run directory (config, metrics, TensorBoard, checkpoints, curve).

    \b
    Examples:
      irlm train ppo --corpus grammar --total-tokens 20000 --run-dir runs/ppo
      irlm train a2c --help
    """


def _checkpoint_path(target: str, which: str, chosen: bool = False) -> Path:
    """``target`` itself, or its ``which`` checkpoint if it is a run directory; ``chosen``: the
    user typed ``--checkpoint``, which a checkpoint file cannot honour."""
    path = Path(target).expanduser()
    if chosen and path.is_file():
        raise IrlmError(f"{target} is a checkpoint file, and --checkpoint {which} picks a file inside a run directory; "
                        f"pass the run directory ({path.parent}) or the file you want, without --checkpoint")
    if path.is_dir():
        path = path / f"{which}.irlm"
        if not path.is_file():
            raise IrlmError(f"{target}: no {which}.irlm in this run directory; is the run finished?")
    elif not path.is_file():
        raise IrlmError(f"{target}: no such checkpoint or run directory")
    return path


#: ``--checkpoint`` of eval and generate: which file of a run directory they read.
checkpoint_option = click.option(
    "--checkpoint", "which", type=click.Choice(["final", "best", "best-perplexity"]), default="final",
    show_default=True, help="which checkpoint of a run directory: the last, the best validation top-1, "
                            "or the lowest validation perplexity",
)


@cli.command("eval", context_settings=CONTEXT_SETTINGS)
@click.argument("target", metavar="RUN_OR_CHECKPOINT")
@click.option("--split", default="validation", show_default=True, help="train, validation or test")
@checkpoint_option
@click.option("--corpus", default=None, help="evaluate on this corpus instead of the training one (its vocabulary must be the checkpoint's, "
                   "ids included)")
@click.option("--corpus-option", "corpus_options", multiple=True, metavar="KEY=VALUE",
              callback=parse_pairs, help="options for --corpus, or without it changes to the training corpus's options, "
                                         "say a path=... the text has moved to (repeatable)")
@click.option("--reward", "reward_name", default=None,
              help="score the reward metric with this reward instead of the one the checkpoint was trained with")
@click.option("--reward-option", "reward_options", multiple=True, metavar="KEY=VALUE",
              callback=parse_pairs, help="options for --reward (repeatable)")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="score only this many tokens")
@click.option("--horizon", type=click.IntRange(min=1), default=16, show_default=True,
              help="block length of free_top1 (the model reads its own predictions inside each block)")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N, mps or auto")
@click.option("--json", "as_json", is_flag=True,
              help="print JSON instead of a table (a metric that is not finite, such as a diverged model's "
                   "perplexity, is null)")
def eval_command(
    target: str,
    split: str,
    which: str,
    corpus: str | None,
    corpus_options: dict[str, Any],
    reward_name: str | None,
    reward_options: dict[str, Any],
    max_tokens: int | None,
    horizon: int,
    device: str,
    as_json: bool,
) -> None:
    """Top-1/top-5 accuracy, perplexity, mean reward and free-running top-1 of a checkpoint on a split.

    known_perplexity is the perplexity over the tokens whose true word is not <unk>: where the
    train split holds no <unk> (every word of it in the vocabulary), no model learns its rate,
    and the words new to the split, all <unk>, moved perplexity by about 15% on pydocs.

    The corpus, tokenizer, reward and context window are those the checkpoint was trained
    with (stored in it); --corpus evaluates on another corpus whose vocabulary is the
    checkpoint's: the same tokens with the same ids, which a vocabulary built from another
    text's word counts rarely has (the checkpoint's vocabulary hash is checked). The
    whole split is scored unless --max-tokens says otherwise: training validated on the first
    --eval-tokens of it, so --max-tokens with that number gives the run's own figures.

    \b
    Examples:
      irlm eval runs/ppo
      irlm eval runs/ppo --checkpoint best --split test --json
      irlm eval runs/ppo --checkpoint best-perplexity --split test
      irlm eval runs/ppo/final.irlm --max-tokens 5000 --horizon 8
    """
    from irlm_agents.lm.checkpoints import load_model
    from irlm_agents.lm.devices import resolve_device
    from irlm_agents.lm.evaluation import evaluate
    from irlm_env.rewards import make_reward

    chosen = click.get_current_context().get_parameter_source("which") is ParameterSource.COMMANDLINE
    path = _checkpoint_path(target, which, chosen)
    checkpoint = load_model(path, device=resolve_device(device))
    loaded = checkpoint.load_corpus(corpus, corpus_options)
    if reward_name is not None:
        reward = make_reward(reward_name, loaded, **reward_options)
    elif reward_options:
        raise IrlmError("--reward-option needs --reward: name the reward its options are for")
    else:
        try:
            reward = checkpoint.make_reward(loaded)
        except IrlmError as error:
            trained, options = checkpoint.reward
            raise IrlmError(
                f"{path} was trained with reward {trained!r} (options {options}), which cannot be rebuilt here: "
                f"{error} Install its plugin or fix what it names, or pass --reward exact to score with another "
                "reward (top-1 and perplexity do not depend on it)"
            ) from None
    scores = evaluate(checkpoint.model, loaded, split, reward=reward,
                      context_length=checkpoint.eval_context_length, max_tokens=max_tokens, horizon=horizon)
    metrics = {**scores, "tokens": int(scores["tokens"])}
    if as_json:
        finite = {key: None if isinstance(value, float) and not math.isfinite(value) else value
                  for key, value in metrics.items()}
        click.echo(json.dumps({"checkpoint": str(path), "split": split, **finite}, indent=2, allow_nan=False))
        return
    rows = [{"metric": key, "value": f"{value:.4f}" if isinstance(value, float) else value}
            for key, value in metrics.items()]
    _show(rows, f"{path} on {split}", as_json=False)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("target", metavar="RUN_OR_CHECKPOINT")
@checkpoint_option
@click.option("--prompt", required=True, help="text to continue")
@click.option("--max-tokens", type=click.IntRange(min=1), default=30, show_default=True,
              help="tokens to generate (stops early at end of line)")
@click.option("--temperature", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="sampling temperature; 0 picks the most likely token")
@click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True,
              help="sample among the k most likely tokens only; 0 means all")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, show_default=True, help="sampling seed")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N, mps or auto")
def generate(target: str, which: str, prompt: str, max_tokens: int, temperature: float, top_k: int, seed: int,
             device: str) -> None:
    """Continue PROMPT by sampling from a checkpoint's model.

    \b
    Examples:
      irlm generate runs/ppo/final.irlm --prompt "the cat"
      irlm generate runs/ppo --checkpoint best-perplexity --prompt "return the" --temperature 0.7 --top-k 20
    """
    from irlm_agents.lm.generation import generate_text

    chosen = click.get_current_context().get_parameter_source("which") is ParameterSource.COMMANDLINE
    path = _checkpoint_path(target, which, chosen)
    click.echo(generate_text(path, prompt, max_tokens=max_tokens, temperature=temperature,
                             top_k=top_k, seed=seed, device=device))


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("runs", metavar="RUN [RUN...]", nargs=-1, required=True)
@click.option("-o", "--output", default="curves.png", show_default=True, help="PNG file to write")
@click.option("--metric", default="top1", show_default=True, help="top1, top5, perplexity, reward, ...")
@click.option("--label", "labels", multiple=True, help="legend label per run, in order (repeatable)")
def plot(runs: tuple[str, ...], output: str, metric: str, labels: tuple[str, ...]) -> None:
    """Learning curves of one or more runs on one figure, saved as PNG.

    \b
    Examples:
      irlm plot runs/ppo
      irlm plot runs/ppo runs/a2c --metric perplexity -o compare.png
    """
    from irlm_agents.runs.plotting import plot_runs

    path = plot_runs(runs, output, metric=metric, labels=labels or None)
    click.echo(f"wrote {path}")


def _show(rows: list[dict[str, Any]], title: str, as_json: bool) -> None:
    """Rows as JSON (for scripts) or as a rich table (for people); lists in cells are joined."""
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    # The title goes above the table on its own line: as the table's title, rich would wrap it to
    # the table's width and cut a long checkpoint path in two.
    console = Console()
    if not console.is_terminal:  # a pipe or a file has no width to keep to: cut nothing
        console.width = 400
    console.print(title, markup=False, highlight=False, soft_wrap=True)
    table = Table()
    for column in rows[0] if rows else ():
        table.add_column(column, overflow="fold")  # a long name wraps rather than being cut short
    for row in rows:
        cells = (", ".join(v) if isinstance(v, list) else "-" if v is None else str(v) for v in row.values())
        table.add_row(*cells)
    console.print(table)


def _registry_command(kind: str, what: str) -> None:
    """``irlm corpora`` / ``irlm rewards``: one registry's entries and who registered them."""

    def command(as_json: bool) -> None:
        from irlm_env.corpora.registry import corpus_registry
        from irlm_env.rewards.registry import reward_registry

        registry = corpus_registry() if kind == "corpora" else reward_registry()
        rows = [
            {"name": e.name, "plugin": e.plugin_name, "version": e.plugin_version, "description": e.description}
            for e in registry.entries()
        ]
        _show(rows, kind, as_json)

    command.__doc__ = (
        f"Registered {what} and the plugin that registered each.\n\n"
        f"\b\nExamples:\n  irlm {kind}\n  irlm {kind} --json\n"
    )
    option = click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
    cli.command(kind, context_settings=CONTEXT_SETTINGS)(option(command))


_registry_command("corpora", "corpora")
_registry_command("rewards", "rewards")


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def plugins(as_json: bool) -> None:
    """Loaded plugins with their versions; broken ones are listed with their error.

    \b
    Examples:
      irlm plugins
      IRLM_LOAD_PLUGINS= irlm plugins     # built-ins only
    """
    from irlm_env.corpora.registry import corpus_registry
    from irlm_env.plugins import plugin_report
    from irlm_env.rewards.registry import reward_registry

    provided: dict[str, list[str]] = {}
    for kind, registry in (("corpus", corpus_registry()), ("reward", reward_registry())):
        for entry in registry.entries():
            provided.setdefault(entry.plugin_name, []).append(f"{kind} {entry.name}")
    rows = [
        {
            "name": info.name,
            "kind": info.kind,
            "distribution": info.distribution,
            "version": info.version,
            "provides": provided.get(info.name, []),
            "error": info.error,
        }
        for info in plugin_report()
    ]
    _show(rows, "plugins", as_json)


@cli.command("corpus-stats", context_settings=CONTEXT_SETTINGS)
@click.argument("corpus")
@click.option("--corpus-option", "corpus_options", multiple=True, metavar="KEY=VALUE",
              callback=parse_pairs, help="options passed to the corpus source (repeatable)")
@click.option("--tokenizer", default="word", show_default=True,
              help="word, char or bpe (byte-level BPE trained on the train split)")
@click.option("--lowercase/--no-lowercase", default=True, show_default=True, help="lowercase text")
@click.option("--max-vocab", type=OrNone(click.INT), default=10000, show_default=True,
              help="vocabulary size cap, or none for every word (for bpe: its vocabulary size, at least 259)")
@click.option("--min-freq", type=int, default=1, show_default=True, help="minimum train frequency")
@click.option("--max-k", type=click.IntRange(1, 8), default=4, show_default=True,
              help="largest oracle context length")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def corpus_stats(corpus: str, corpus_options: dict[str, Any], tokenizer: str, lowercase: bool,
                 max_vocab: int | None, min_freq: int, max_k: int, as_json: bool) -> None:
    """Token counts, vocabulary size, OOV rate and k-token oracle accuracy per split.

    The oracle for context length k predicts, for each run of k tokens, the continuation most
    frequent after it *in the same split*, and "oracle@k" is the fraction of next tokens it gets
    right. Because it is fitted to the very text it is scored on, it is an upper bound for any
    predictor that sees only the last k tokens (on small splits a loose one). "best" is the
    corpus's exact best achievable accuracy where known (the grammar corpus).

    \b
    Examples:
      irlm corpus-stats grammar
      irlm corpus-stats text --corpus-option path=notes.txt --tokenizer char --json
      irlm corpus-stats pydocs --tokenizer bpe --max-vocab 4000
    """
    from irlm_env.corpus_stats import corpus_statistics
    from irlm_env.corpus import load_corpus

    loaded = load_corpus(corpus, tokenizer=tokenizer, lowercase=lowercase, max_vocab=max_vocab,
                         min_freq=min_freq, **corpus_options)
    stats = corpus_statistics(loaded, max_k=max_k)
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{corpus}: vocabulary {stats['vocab_size']} tokens, best accuracy "
                        f"{'unknown' if stats['best_accuracy'] is None else format(stats['best_accuracy'], '.4f')}")
    columns = ["tokens", "oov_rate", *[f"oracle@{k}" for k in range(1, max_k + 1)]]
    table.add_column("split")
    for column in columns:
        table.add_column(column, justify="right")
    for split, row in stats["splits"].items():
        table.add_row(split, *(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    Console().print(table)


#: What click (8.2 and later) raises for a group called without a command.
_NO_ARGS_IS_HELP: type[Exception] | tuple[()] = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """A warning as one ``Warning: ...`` line, like the errors, without Python's file and source line."""
    click.echo(f"Warning: {message}", err=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry: run the group, turning every user error into one line."""
    warnings.showwarning = _show_warning
    try:
        # Without standalone mode click hands back --help/--version's exit code instead of exiting.
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="irlm", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.ClickException as exc:
        if isinstance(exc, _NO_ARGS_IS_HELP):  # bare `irlm` or `irlm train`: help, not an error
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort as exc:
        # Click turns Ctrl-C into Abort; the original KeyboardInterrupt is its cause.
        if isinstance(exc.__cause__, KeyboardInterrupt):
            _interrupted(exc.__cause__)
        click.echo("Error: aborted", err=True)
        sys.exit(1)
    except IrlmError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt as exc:
        _interrupted(exc)


def _interrupted(exc: KeyboardInterrupt) -> NoReturn:
    # TrainingInterrupted (raised after the run saved its model) says where the model went and
    # which signal stopped it; the exit status is the shell's 128 + signal number.
    from irlm_agents.runs.run_dir import TrainingInterrupted

    click.echo(f"Interrupted: {exc}" if str(exc) else "Interrupted; nothing was saved.", err=True)
    stopped_by = exc.signal if isinstance(exc, TrainingInterrupted) else signal.SIGINT
    sys.exit(128 + stopped_by)


def run_agent(name: str) -> None:
    """``python -m irlm_agents.<name> [options]``: the same as ``irlm train <name> [options]``."""
    main(["train", name, *sys.argv[1:]])


if __name__ == "__main__":
    main()
