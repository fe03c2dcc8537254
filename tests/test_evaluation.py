from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from irlm_env.corpus import Corpus, load_corpus
from irlm_env.errors import IrlmError
from irlm_agents.lm.evaluation import evaluate, perplexity
from irlm_agents.lm.model import ModelConfig, RNNLanguageModel
from irlm_env.rewards import Reward



@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return load_corpus("grammar", n_sentences=3000)


def _model(corpus: Corpus, cell: str = "gru") -> RNNLanguageModel:
    torch.manual_seed(0)
    return RNNLanguageModel(ModelConfig(vocab_size=len(corpus.vocab), embedding_dim=8, hidden_size=12, cell=cell))


def _brute_force(
    model: RNNLanguageModel, text: np.ndarray, context_length: int | None, streams: int, reward_context: int,
    unknown: int = 1,
) -> dict[str, float]:
    """One prediction at a time: the definition evaluate() must reproduce."""
    n = len(text) - 1
    length = math.ceil(n / min(streams, n))
    nll = top1 = top5 = reward = known_nll = known = 0.0
    hidden = None
    with torch.no_grad():
        for i in range(n):
            if context_length is None:
                if i % length == 0:
                    hidden = None  # each stream starts from the zero state
                logits, hidden = model(torch.tensor([[int(text[i])]]), hidden)
                logits = logits[0, -1]
            else:
                window = [0] * context_length + text[: i + 1].tolist()
                logits = model(torch.tensor([window[-context_length:]]))[0][0, -1]
            target = int(text[i + 1])
            log_probs = torch.log_softmax(logits.double(), -1)
            nll -= float(log_probs[target])
            if target != unknown:
                known_nll -= float(log_probs[target])
                known += 1
            ranked = torch.argsort(logits, descending=True)[:5].tolist()
            top1 += ranked[0] == target
            top5 += target in ranked
            reward += ranked[0] == target  # the "exact" reward
    return {"top1": top1 / n, "top5": top5 / n, "perplexity": math.exp(nll / n), "reward": reward / n, "tokens": float(n),
            "known_perplexity": math.exp(known_nll / known) if known else math.nan}


@pytest.mark.parametrize("context_length", [None, 3])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_matches_brute_force(corpus: Corpus, context_length: int | None, cell: str) -> None:
    model = _model(corpus, cell)
    text = corpus.split("validation")[:201]
    got = evaluate(model, corpus, "validation", context_length=context_length, max_tokens=200, batch_size=7)
    want = _brute_force(model, text, context_length, 7, context_length or 1)
    assert got["tokens"] == want["tokens"] == 200
    for key in ("top1", "top5", "reward"):
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert got["perplexity"] == pytest.approx(want["perplexity"], rel=1e-5)


@pytest.mark.parametrize("context_length", [None, 3])
def test_known_perplexity_leaves_out_the_unknown_words(tmp_path, context_length: int | None) -> None:
    """Where the vocabulary lacks words of the split, <unk> is scored in ``perplexity`` and left
    out of ``known_perplexity``; the other tokens are scored alike in both."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(60)]
    path = tmp_path / "text.txt"
    path.write_text("\n".join(" ".join(rng.choice(words, 8, p=np.arange(60, 0, -1) / 1830)) for _ in range(400)))
    corpus = load_corpus("text", path=str(path), max_vocab=50)
    text = corpus.split("validation")[:301]
    unknown = text[1:] == corpus.vocab.unk_id
    assert 0 < unknown.mean() < 0.5
    model = _model(corpus)
    with torch.no_grad():
        model.decoder.bias[corpus.vocab.unk_id] = -4.0  # <unk> rated far below its share, as pydocs' models do
    got = evaluate(model, corpus, "validation", context_length=context_length, max_tokens=300, batch_size=7)
    want = _brute_force(model, text, context_length, 7, context_length or 1, unknown=corpus.vocab.unk_id)
    assert got["known_perplexity"] == pytest.approx(want["known_perplexity"], rel=1e-5)
    assert got["perplexity"] == pytest.approx(want["perplexity"], rel=1e-5)
    assert got["known_perplexity"] < got["perplexity"]


def test_trained_signal_and_train_mode_restored(corpus: Corpus) -> None:
    model = _model(corpus)
    model.train()
    untrained = evaluate(model, corpus, context_length=4, max_tokens=500)
    assert model.training
    # make the model always predict the most frequent validation token: accuracy must follow
    text = corpus.split("validation")[:501]
    frequent = int(np.bincount(text[1:]).argmax())
    with torch.no_grad():
        model.decoder.bias.zero_()
        model.decoder.weight.zero_()
        model.decoder.bias[frequent] = 10.0
    scores = evaluate(model, corpus, context_length=4, max_tokens=500)
    assert scores["top1"] == pytest.approx(float(np.mean(text[1:] == frequent)))
    assert scores["top1"] != untrained["top1"]


class _ContextReward(Reward):
    """Rewards an action by the last context token, to check which context the reward sees."""

    name = "context"

    def __call__(self, action: int, target: int, context: np.ndarray) -> float:
        return float(context[-1])

    def batch(self, actions: np.ndarray, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        assert contexts.shape[1] == self.expected_width
        return np.repeat(contexts[:, -1:].astype(np.float64), actions.shape[1], axis=1)


@pytest.mark.parametrize("context_length, width", [(None, 1), (5, 5)])
def test_reward_sees_environment_context(corpus: Corpus, context_length: int | None, width: int) -> None:
    reward = _ContextReward()
    reward.expected_width = width  # type: ignore[attr-defined]
    scores = evaluate(_model(corpus), corpus, reward=reward, context_length=context_length, max_tokens=100)
    text = corpus.split("validation")
    assert scores["reward"] == pytest.approx(float(text[:100].mean()))


class _RecordingReward(Reward):
    """Pays nothing and keeps the contexts it was handed."""

    name = "recording"

    def __call__(self, action: int, target: int, context: np.ndarray) -> float:
        return 0.0

    def batch(self, actions: np.ndarray, targets: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        self.contexts = np.array(contexts)
        self.targets = np.array(targets)
        return np.zeros(actions.shape, dtype=np.float64)


@pytest.mark.parametrize("context_length, width", [(None, 1), (5, 5)])
def test_reward_contexts_are_exactly_the_inputs_before_each_target(
    corpus: Corpus, context_length: int | None, width: int
) -> None:
    """Prediction i is judged on the context an env shows there, the last ``width`` tokens up to
    and including text[i] (left-padded at the start), never one step off: a mean over the
    contexts can agree by chance (text[0] == text[100] in this split)."""
    reward = _RecordingReward()
    model = _model(corpus)
    evaluate(model, corpus, reward=reward, context_length=context_length, max_tokens=100)
    text = corpus.split("validation")[:101].tolist()
    pad = [model.config.pad_id] * width
    expected = np.array([(pad + text[: i + 1])[-width:] for i in range(100)])
    assert np.array_equal(reward.contexts, expected)
    assert np.array_equal(reward.targets, np.array(text[1:]))


def test_errors(corpus: Corpus) -> None:
    model = _model(corpus)
    with pytest.raises(IrlmError, match="max_tokens"):
        evaluate(model, corpus, max_tokens=0)
    with pytest.raises(IrlmError, match="context_length"):
        evaluate(model, corpus, context_length=-2)
    with pytest.raises(IrlmError, match="did you mean"):
        evaluate(model, corpus, "valid")
    with pytest.raises(IrlmError, match="vocabulary"):
        evaluate(RNNLanguageModel(ModelConfig(vocab_size=len(corpus.vocab) + 1)), corpus)
    with pytest.raises(IrlmError, match="did you mean"):
        evaluate(model, corpus, reward="exakt")
    if not torch.cuda.is_available():
        with pytest.raises(IrlmError, match="not usable"):
            evaluate(model, corpus, device="cuda")


def test_no_warning_about_read_only_arrays() -> None:
    """torch warns (once per process, so in a fresh one) when handed a read-only NumPy view.

    A one-row last chunk (2049 = 2048 + 1 predictions) and a width-1 window are the cases where
    the context windows were passed to torch without a copy.
    """
    script = (
        "import torch\n"
        "from irlm_env.corpus import load_corpus\n"
        "from irlm_agents.lm.evaluation import evaluate\n"
        "from irlm_agents.lm.model import ModelConfig, RNNLanguageModel\n"
        "corpus = load_corpus('grammar', n_sentences=3000)\n"
        "model = RNNLanguageModel(ModelConfig(vocab_size=len(corpus.vocab), embedding_dim=4, hidden_size=4))\n"
        "for k in (None, 1, 4):\n"
        "    evaluate(model, corpus, context_length=k, max_tokens=2049)\n"
    )
    result = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_diverged_model_scores_infinite_perplexity_instead_of_crashing() -> None:
    assert perplexity(math.log(7.0)) == pytest.approx(7.0)
    assert perplexity(800.0) == math.inf  # math.exp(800) overflows
    assert math.isnan(perplexity(math.nan))
    corpus = load_corpus("grammar", n_sentences=300)
    model = RNNLanguageModel(ModelConfig(vocab_size=len(corpus.vocab), embedding_dim=4, hidden_size=8))
    with torch.no_grad():
        model.decoder.weight.mul_(1e6)  # logits in the millions: a mean loss far past 709 nats
    assert evaluate(model, corpus, "validation", max_tokens=200)["perplexity"] == math.inf
