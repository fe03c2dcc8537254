"""Arguments every training program shares, and the set-up steps they all repeat.

Each agent file declares ``@dataclass class Args(TrainArgs)`` with its own extra fields. The
``irlm train`` command builds its options from these dataclass fields (name, type, default and
the ``help`` metadata), so an option is described exactly once, here or in the agent file.

This module stays free of torch so the command line can list options quickly; the helpers that
need torch import it when called.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from irlm_env.corpus_spec import CorpusSpec
from irlm_env.errors import IrlmError
from irlm_env.options import SEED_MAX, check_int
from irlm_env.rewards.checked import bound_reward_options

if TYPE_CHECKING:
    from collections.abc import Collection

    import numpy as np

    from irlm_env.corpus import Corpus
    from irlm_agents.lm.model import ModelConfig, RNNLanguageModel


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class TrainArgs:
    """Corpus, reward, model, budget and logging settings shared by every agent."""

    corpus: str = field(default="pydocs", metadata=_help("registered corpus name (see `irlm corpora`)"))
    corpus_options: dict[str, Any] = field(
        default_factory=dict,
        metadata=_help("options passed to the corpus source, e.g. path=notes.txt or seed=3"),
    )
    reward: str = field(default="exact", metadata=_help("registered reward name (see `irlm rewards`)"))
    reward_options: dict[str, Any] = field(
        default_factory=dict, metadata=_help("options passed to the reward factory")
    )
    tokenizer: str = field(default="word", metadata=_help("tokenizer: word, char or bpe (bpe: max_vocab is its size)"))
    lowercase: bool = field(default=True, metadata=_help("lowercase text before tokenizing"))
    max_vocab: int | None = field(
        default=10000, metadata=_help("vocabulary size cap, specials included (rarer tokens become <unk>); none: no cap")
    )
    min_freq: int = field(default=1, metadata=_help("drop tokens seen fewer times than this in train"))
    cell: str = field(default="gru", metadata=_help("RNN cell: rnn, gru or lstm"))
    embedding_dim: int = field(default=128, metadata=_help("token embedding size"))
    hidden_size: int = field(default=256, metadata=_help("RNN hidden state size"))
    num_layers: int = field(default=1, metadata=_help("stacked RNN layers"))
    dropout: float = field(default=0.0, metadata=_help("dropout on embeddings and RNN outputs"))
    tie_weights: bool = field(default=False, metadata=_help("share input embedding and output layer"))
    device: str = field(default="auto", metadata=_help("cpu, cuda, cuda:N, mps or auto"))
    seed: int = field(default=0, metadata=_help("seed for numpy, torch and the environments"))
    total_tokens: int = field(default=200_000, metadata=_help("training budget in env tokens (steps x envs)"))
    n_envs: int = field(default=32, metadata=_help("parallel environment streams"))
    learning_rate: float = field(default=3e-3, metadata=_help("optimizer learning rate"))
    eval_every: int = field(default=50_000, metadata=_help("evaluate on validation every this many tokens"))
    eval_tokens: int = field(default=20_000, metadata=_help("validation tokens scored per evaluation"))
    run_dir: str | None = field(
        default=None, metadata=_help("output directory (default runs/<agent>-<UTC timestamp>)")
    )
    unigram_init: bool = field(
        default=False,
        metadata=_help("start the output bias at the train split's log unigram frequencies, so the "
                       "first samples are common words rather than uniform over the vocabulary"),
    )
    init_from: str | None = field(
        default=None,
        metadata=_help("warm-start from this .irlm checkpoint: its model (cell, sizes, dropout, output bias) "
                       "replaces the model options, and one set otherwise is an error; --unigram-init is not applied"),
    )
    progress: bool = field(default=True, metadata=_help("show a progress bar"))
    feed: str = field(
        default="truth",
        metadata=_help("what the training env shows after each step: truth (the true token, teacher "
                       "forcing) or action (the agent's own action; scheduled sampling with "
                       "feed_probability)"),
    )
    feed_probability: float | None = field(
        default=None,
        metadata=_help("with feed=action, the chance that a step shows the action rather than the true "
                       "token; none means 1 (free running)"),
    )

    def __post_init__(self) -> None:
        for name in ("total_tokens", "n_envs", "eval_every", "eval_tokens"):
            check_int(name, getattr(self, name))
        # numpy and torch take seeds in [0, 2**32): say so here, not in a traceback from np.random.seed.
        check_int("seed", self.seed, minimum=0, maximum=SEED_MAX)
        # Every agent's float options at once: a NaN passes each "x < 0" check and trains a ruined model.
        for option in dataclasses.fields(self):
            value = getattr(self, option.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise IrlmError(f"{option.name} must be a finite number, got {value!r}")
        if self.run_dir is not None and not str(self.run_dir).strip():
            raise IrlmError("run_dir is empty; name a folder, or leave --run-dir out for runs/<agent>-<UTC timestamp>")
        if not self.learning_rate > 0:
            raise IrlmError(f"learning_rate must be positive, got {self.learning_rate!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def feed_options(self) -> dict[str, Any]:
        """The training env's feed arguments, as ``NextWordEnv`` takes them (it validates them)."""
        return {"feed": self.feed, "feed_probability": self.feed_probability}

    def recorded(self, model: ModelConfig) -> dict[str, Any]:
        """The arguments as a run records them: with a warm start, the model settings are the
        checkpoint's (``model``), which the run trained, whatever ``self`` says, and the output
        bias is the checkpoint's too (``unigram_init``, on by default for the SB3 agents, is not
        applied)."""
        record = self.to_dict()
        # Options typed on a command line arrive as text: recorded as the reward takes them.
        record["reward_options"] = bound_reward_options(self.reward, self.reward_options)
        if self.init_from is not None:
            record.update({name: getattr(model, name) for name in MODEL_SETTINGS}, unigram_init=False)
        return record

    def corpus_spec(self) -> CorpusSpec:
        """The corpus and tokenizer settings as one value (its options bound and checked)."""
        return CorpusSpec(self.corpus, self.corpus_options, self.tokenizer, self.lowercase, self.max_vocab,
                          self.min_freq)


def default(name: str, value: Any) -> Any:
    """A ``TrainArgs`` field with another default for one agent, keeping the shared help text::

        total_tokens: int = default("total_tokens", 30_000)
    """
    return field(default=value, metadata=TrainArgs.__dataclass_fields__[name].metadata)


@dataclass
class TrainResult:
    """What ``train`` hands back: the trained model, its corpus, the final validation metrics."""

    model: RNNLanguageModel
    corpus: Corpus
    metrics: dict[str, float]
    run_dir: Path


def load_corpus_for(args: TrainArgs) -> Corpus:
    """The corpus the arguments describe (memoized and disk-cached by ``load_corpus``).

    Its ``spec`` is the one value the run then carries to the envs and every checkpoint.
    """
    from irlm_env.corpus import load_corpus

    return load_corpus(args.corpus_spec())


def build_model(args: TrainArgs, corpus: Corpus) -> RNNLanguageModel:
    """A fresh model sized by ``args``, or the ``init_from`` checkpoint's model.

    A warm start must speak the corpus's vocabulary: token ids would otherwise mean different
    words, so a mismatch is an error rather than a silent re-initialisation.
    """
    from irlm_agents.lm.model import ModelConfig, RNNLanguageModel

    if args.init_from is not None:
        from irlm_agents.lm.checkpoints import load_model

        model = load_model(args.init_from, vocab=corpus.vocab, tokenizer=corpus.tokenizer).model
        check_warm_start(args, model.config)
        return model
    config = ModelConfig(
        vocab_size=len(corpus.vocab),
        embedding_dim=args.embedding_dim,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        cell=args.cell,
        dropout=args.dropout,
        tie_weights=args.tie_weights,
        pad_id=corpus.vocab.pad_id,
    )
    model = RNNLanguageModel(config)
    if args.unigram_init:
        _unigram_bias(model, corpus)
    return model


#: The model settings a warm start takes from its checkpoint.
MODEL_SETTINGS = ("cell", "embedding_dim", "hidden_size", "num_layers", "dropout", "tie_weights")


def check_warm_start(args: TrainArgs, saved: ModelConfig, given: Collection[str] | None = None) -> None:
    """Refuse a model setting the ``init_from`` checkpoint overrides.

    The checkpoint's weights fix the model, so ``--hidden-size 64`` (or ``--dropout 0.3``) next
    to a checkpoint of another size would be silently dropped. ``given`` names the settings the
    user typed (the command line knows); without it, a setting changed from its default counts
    as given, and one left at its default is taken from the checkpoint without a word.
    """
    fields = type(args).__dataclass_fields__
    clashes = [f"--{name.replace('_', '-')} {getattr(args, name)!r} (the checkpoint has {getattr(saved, name)!r})"
               for name in MODEL_SETTINGS
               if (name in given if given is not None else getattr(args, name) != fields[name].default)
               and getattr(args, name) != getattr(saved, name)]
    if clashes:
        raise IrlmError(f"--init-from {args.init_from}: {', '.join(clashes)}; a warm start keeps the checkpoint's "
                        "model, so drop those options, or train from scratch without --init-from")


def unigram_frequencies(corpus: Corpus, pseudo_count: float = 1.0) -> np.ndarray:
    """The train split's word frequencies, each count raised by ``pseudo_count``, float64 (V,).

    The agents read the train split as their observations, so these counts are known without a
    reward: the best context-free guess of the next word. The default adds one to every count,
    so that no word's log frequency is minus infinity.
    """
    import numpy as np

    counts = np.bincount(corpus.split("train"), minlength=len(corpus.vocab)).astype(np.float64) + pseudo_count
    return counts / counts.sum()


def _unigram_bias(model: RNNLanguageModel, corpus: Corpus) -> None:
    """Output bias = log of the train split's unigram frequencies.

    With a 0/1 reward and a uniform start, a policy over thousands of tokens almost never samples
    the right word, so it gets no signal; starting at the unigram distribution makes frequent
    words (and early rewards) likely from the first step.
    """
    import numpy as np
    import torch

    with torch.no_grad():
        model.decoder.bias.copy_(torch.from_numpy(np.log(unigram_frequencies(corpus))))

