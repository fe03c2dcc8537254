"""Where an agent's perplexity gap to supervised training lies, token by token.

    python bench/calibration.py bench/figures/results-pydocs-1m.json       # after bench/learning.py
    python bench/calibration.py RESULTS_JSON --checkpoint final              # the end-of-budget models
    python bench/calibration.py RESULTS_JSON --checkpoint best-perplexity    # the lowest-validation-perplexity ones
    python bench/calibration.py RESULTS_JSON --temperatures 0.9,0.95,1,1.05  # and with the logits rescaled

Reads a results file of ``bench/learning.py`` (its runs' folders must still exist), loads every
run's best-validation checkpoint (or, with ``--checkpoint final``, its end-of-budget model, with
``--checkpoint best-perplexity``, its lowest-validation-perplexity one) and
scores the test split token by token. For each agent,
averaged over seeds:

* perplexity, mean entropy of the predicted distribution (nats), how often the true token is
  among the model's 8 most probable, and the probability mass those 8 hold (calibrated: equal);
* the gap in mean negative log-likelihood to the same seed's supervised run, split by the rank
  supervised gives the true token (1, 2-8, 9-100, 101-1000, beyond): which tokens the gap is in;
* the same gap split by how often the true word occurs in the train split (under 30, 30-299,
  300-2999, 3000 and more times), ``<unk>`` apart: which words the queries leave unlearnt, and
  how much of the gap is the rate of words new to the test split, which no model learns where
  the train split holds no ``<unk>`` (``pydocs``);
* how often training would have told the agent the true token of a test context, split the
  same way: for a group agent the chance that its own candidates (drawn as in training, from
  this checkpoint) hold it, for supervised training its label fraction;
* with ``--temperatures``, the test perplexity with the logits divided by each temperature.
  Picking the best one on the test labels is an upper bound on what one temperature, fitted
  any fair way, could do for the model's calibration.

A bandit agent learns a token's probability in a context mostly when it proposes that token
there and is told it is right, so tokens far down its own ranking are learnt slowly. This table
shows whether the gap is in the head (calibration, fixable by a temperature) or in the ordering
of the tail (information the queries did not reveal).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from irlm_agents.lm.checkpoints import load_model
from irlm_agents.lm.sampling import sample_candidates
from irlm_agents.runs.run_dir import BEST_CHECKPOINT, BEST_PERPLEXITY_CHECKPOINT, FINAL_CHECKPOINT

sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning import read_results  # noqa: E402

#: ``--checkpoint``: which of a run's checkpoints is scored.
CHECKPOINTS = {"best": BEST_CHECKPOINT, "best-perplexity": BEST_PERPLEXITY_CHECKPOINT, "final": FINAL_CHECKPOINT}
#: Buckets of the rank the supervised model gives the true token (inclusive bounds).
RANKS = ((1, 1), (2, 8), (9, 100), (101, 1000), (1001, None))
TOP = 8
STREAMS = 64
CHUNK = 128
#: Candidate draws per test token when estimating how often a group agent is told the target.
DRAWS = 8
#: Buckets of how often the true word occurs in the train split (inclusive bounds).
COUNTS = ((0, 29), (30, 299), (300, 2999), (3000, None))


def told_rule(run_args: dict[str, Any]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """How a run's training feedback reveals the target: (logits, targets) -> chance per token.

    Supervised training is told a fixed fraction of the targets; a group agent is told the
    target when one of its candidates is it (estimated by drawing them ``DRAWS`` times as
    training does). None for the other agents, and for a group agent with an answer memory: what
    it proposes depends on the answers of the whole run, which a checkpoint does not hold.
    """
    if "label_fraction" in run_args:
        fraction = float(run_args["label_fraction"])
        return lambda logits, targets: torch.full(targets.shape, fraction)
    if "k" not in run_args or "replacement" not in run_args or run_args.get("memory_context"):
        return None

    def told(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        flat, wanted = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1, 1)
        hits = torch.zeros(wanted.shape[0])
        for _ in range(DRAWS):
            candidates = sample_candidates(flat, run_args["k"], replacement=run_args["replacement"],
                                           temperature=run_args["temperature"], truncate=run_args["truncate"])
            hits += (candidates == wanted).any(-1).float()
        return (hits / DRAWS).reshape(targets.shape)

    return told


def token_scores(checkpoint_path: Path, temperatures: tuple[float, ...] = ()) -> dict[str, torch.Tensor]:
    """Per test token: negative log-likelihood, rank of the true token, its count in the train
    split, whether it is ``<unk>``, top-8 mass, entropy and,
    when the run's ``config.json`` (next to the checkpoint) names a rule, the chance that training
    feedback reveals the true token (see :func:`told_rule`). With ``temperatures``, also
    ``scaled_nll`` (tokens, temperatures): the negative log-likelihood with the logits divided by each.

    The split is read as ``irlm_agents.lm.evaluation.evaluate`` reads it in recurrent mode (64
    contiguous streams, each from the zero state), so the perplexity is the one the benchmark
    reports.
    """
    config = checkpoint_path.parent / "config.json"
    told = told_rule(json.loads(config.read_text())["args"]) if config.is_file() else None
    checkpoint = load_model(checkpoint_path)
    model = checkpoint.model.eval()
    corpus = checkpoint.load_corpus()
    text = corpus.split("test")
    train_counts = torch.from_numpy(np.bincount(corpus.split("train"), minlength=len(corpus.vocab)))
    n = len(text) - 1
    length = math.ceil(n / STREAMS)
    grid = np.zeros((2, STREAMS * length), dtype=np.int64)
    grid[0, :n], grid[1, :n] = text[:-1], text[1:]
    inputs = torch.from_numpy(grid[0].reshape(STREAMS, length))
    targets = torch.from_numpy(grid[1].reshape(STREAMS, length))
    parts: dict[str, list[torch.Tensor]] = defaultdict(list)
    hidden = model.initial_hidden(STREAMS)
    with torch.inference_mode():
        for start in range(0, length, CHUNK):
            features, hidden = model.features(inputs[:, start:start + CHUNK], hidden)
            logits = model.head(features).float()
            log_probs = torch.log_softmax(logits, -1)
            chunk_targets = targets[:, start:start + CHUNK]
            true = log_probs.gather(-1, chunk_targets[..., None])[..., 0]
            if told is not None:
                parts["told"].append(told(logits, chunk_targets))
            parts["nll"].append(-true)
            if temperatures:
                parts["scaled_nll"].append(torch.stack([
                    -torch.log_softmax(logits / temperature, -1).gather(-1, chunk_targets[..., None])[..., 0]
                    for temperature in temperatures
                ], -1))
            parts["rank"].append((log_probs > true[..., None]).sum(-1) + 1)
            parts["train_count"].append(train_counts[chunk_targets])
            parts["unknown"].append(chunk_targets == corpus.vocab.unk_id)
            parts["top_mass"].append(log_probs.topk(TOP, -1).values.exp().sum(-1))
            parts["entropy"].append(-(log_probs.exp() * log_probs).sum(-1))
    return {name: torch.cat(values, 1).flatten(0, 1)[:n] for name, values in parts.items()}


def bucket(ranks: torch.Tensor, low: int, high: int | None) -> torch.Tensor:
    return (ranks >= low) & (ranks <= (high if high is not None else ranks.max()))


def rank_label(low: int, high: int | None) -> str:
    return f">{low - 1}" if high is None else (str(low) if low == high else f"{low}-{high}")


Row = Callable[[str, dict[str, torch.Tensor], dict[str, torch.Tensor], list[torch.Tensor]], list[float] | None]


def seed_means(scores: dict[tuple[str, int], dict[str, torch.Tensor]], row: Row) -> dict[str, list[float]]:
    """Per agent, the seed means of ``row(name, own, reference, buckets)``: ``reference`` is the same
    seed's supervised scores and ``buckets`` its rank masks (:data:`RANKS`). Runs whose seed has no
    supervised run, and rows that return None, are left out.
    """
    rows: dict[str, list[list[float]]] = defaultdict(list)
    for (name, seed), own in scores.items():
        reference = scores.get(("supervised", seed))
        if reference is None:
            continue
        values = row(name, own, reference, [bucket(reference["rank"], *bounds) for bounds in RANKS])
        if values is not None:
            rows[name].append(values)
    return {name: [statistics.fmean(column) for column in zip(*values)] for name, values in rows.items()}


def split_gap(name: str, own: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
              masks: list[torch.Tensor]) -> list[float]:
    """The gap in NLL to supervised summed within each mask, per test token (they add up to the
    mean gap when the masks split the tokens); for supervised itself, each mask's share of tokens.
    """
    if name == "supervised":
        return [float(mask.float().mean()) for mask in masks]
    gap = own["nll"] - reference["nll"]
    return [float((gap * mask).sum()) / len(gap) for mask in masks]


def gap_rows(scores: dict[tuple[str, int], dict[str, torch.Tensor]]) -> dict[str, list[float]]:
    """Per agent, the seed means of: perplexity, entropy, top-8 hit rate, top-8 mass and the gap
    per rank bucket (the supervised row holds each bucket's share of the tokens instead).

    ``scores`` maps (agent, seed) to :func:`token_scores`; runs whose seed has no supervised run
    are left out. The gap columns of a row add up to the log of its perplexity ratio.
    """
    def row(name: str, own: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
            buckets: list[torch.Tensor]) -> list[float]:
        return [
            math.exp(float(own["nll"].mean())),
            float(own["entropy"].mean()),
            float((own["rank"] <= TOP).float().mean()),
            float(own["top_mass"].mean()),
            *split_gap(name, own, reference, buckets),
        ]

    return seed_means(scores, row)


def count_rows(scores: dict[tuple[str, int], dict[str, torch.Tensor]]) -> dict[str, list[float]]:
    """Per agent, the seed means of the gap to supervised split by the true word's train count
    (:data:`COUNTS`), ``<unk>`` last and apart; the supervised row holds each bucket's share of
    the tokens.

    The rank buckets of :func:`gap_rows` say where in supervised's ranking the gap is; these say
    which words: a word the train split holds a few dozen times is one supervised training sees
    each time, and a bandit agent only where it proposes it.
    """
    def row(name: str, own: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
            buckets: list[torch.Tensor]) -> list[float]:
        known = ~own["unknown"]
        words = [bucket(own["train_count"], *bounds) & known for bounds in COUNTS]
        return split_gap(name, own, reference, [*words, own["unknown"]])

    return seed_means(scores, row)


def told_rows(scores: dict[tuple[str, int], dict[str, torch.Tensor]]) -> dict[str, list[float]]:
    """Per agent with a :func:`told_rule`, seed means of the chance its training feedback reveals
    the true token: over all test tokens, then per bucket of supervised's rank of the true token.
    """
    def row(name: str, own: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
            buckets: list[torch.Tensor]) -> list[float] | None:
        if "told" not in own:
            return None
        return [float(own["told"].mean()), *(float(own["told"][mask].mean()) for mask in buckets)]

    return seed_means(scores, row)


def temperature_rows(scores: dict[tuple[str, int], dict[str, torch.Tensor]]) -> dict[str, list[float]]:
    """Per agent, the seed means of the test perplexity at each of :func:`token_scores`' temperatures."""
    def row(name: str, own: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
            buckets: list[torch.Tensor]) -> list[float]:
        return [math.exp(float(column.mean())) for column in own["scaled_nll"].unbind(-1)]

    return seed_means(scores, row)


def temperatures_option(text: str) -> tuple[float, ...]:
    """``--temperatures``: comma-separated numbers above 0."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers, e.g. 0.9,1,1.1") from None
    if not values or not all(math.isfinite(value) and value > 0 for value in values):
        raise argparse.ArgumentTypeError(f"temperatures must be finite numbers above 0, e.g. 0.9,1,1.1; got {text!r}")
    return values


def print_table(title: str, columns: list[str], rows: dict[str, list[float]], formats: list[str]) -> None:
    """A markdown table, supervised first; ``formats`` gives each column's format."""
    print(f"\n{title}")
    print("| " + " | ".join(["agent", *columns]) + " |")
    print("|" + " --- |" * (len(columns) + 1))
    for name, means in sorted(rows.items(), key=lambda item: item[0] != "supervised"):
        print("| " + " | ".join([name, *(format(value, spec) for value, spec in zip(means, formats))]) + " |")
    if any(math.isnan(value) for means in rows.values() for value in means):
        print("(nan: no test token falls in that bucket; a small vocabulary has no ranks beyond its size)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="results-*.json written by bench/learning.py")
    parser.add_argument("--checkpoint", choices=tuple(CHECKPOINTS), default="best",
                        help="each run's best-validation-top-1 checkpoint, its lowest-validation-perplexity one, "
                             "or its end-of-budget model")
    parser.add_argument("--temperatures", type=temperatures_option, default=(),
                        help="comma-separated temperatures: also print each run's test perplexity with its logits "
                             "divided by each (e.g. 0.9,0.95,1,1.05)")
    options = parser.parse_args(argv)
    runs = read_results(parser, Path(options.results), "results file")["runs"]
    if not any(run["name"] == "supervised" for run in runs):
        parser.error(f"{options.results} has no supervised run to compare with")
    checkpoint = CHECKPOINTS[options.checkpoint]
    gone = [str(Path(run["run_dir"]) / checkpoint) for run in runs if not (Path(run["run_dir"]) / checkpoint).is_file()]
    if gone:
        parser.error(f"{len(gone)} of the {len(runs)} runs' checkpoints are gone ({gone[0]}, ...): this script scores "
                     "each run's saved model, so pass a results file whose run folders (under its --out) still exist")
    torch.manual_seed(0)  # the candidate draws of the told rates, so a rerun prints the same table
    scores = {(run["name"], run["seed"]): token_scores(Path(run["run_dir"]) / checkpoint, options.temperatures)
              for run in runs}
    ranks = [f"r{rank_label(*bounds)}" for bounds in RANKS]
    print_table(
        f"{options.checkpoint} checkpoints, mean of seeds; gap columns: mean NLL (nats) over supervised's, "
        "split by supervised's rank of the true token; share of tokens per bucket in supervised row",
        ["ppl", "entropy", f"in top-{TOP}", f"top-{TOP} mass", *(f"gap {rank}" for rank in ranks)],
        gap_rows(scores), [".1f"] + [".3f"] * (4 + len(RANKS)),
    )
    print_table(
        "the same gap (mean NLL over supervised's, nats) split by how often the true word occurs in the "
        "train split, <unk> apart (a word new to the test split: no model learns its rate where the train "
        "split holds none); share of tokens per bucket in supervised row",
        [*(f"gap count {rank_label(*bounds)}" for bounds in COUNTS), "gap <unk>"],
        count_rows(scores), [".3f"] * (len(COUNTS) + 1),
    )
    print_table(
        "how often training feedback reveals the true token (group agents: their own candidates, "
        f"{DRAWS} draws per token), in all and by supervised's rank of the true token",
        ["told", *ranks], told_rows(scores), [".3f"] * (1 + len(RANKS)),
    )
    if options.temperatures:
        print_table(
            "test perplexity with the logits divided by a temperature, mean of seeds",
            [f"T {temperature:g}" for temperature in options.temperatures], temperature_rows(scores),
            [".1f"] * len(options.temperatures),
        )


if __name__ == "__main__":
    main()
