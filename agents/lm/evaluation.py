"""Score a language model on a corpus split: top-1/top-5 accuracy, perplexity, mean reward, and
top-1 when the model reads its own predictions (``free_top1``).

Every trainer reports these same figures, so they are computed in one place and fast enough to
run during training: one batched pass under ``torch.inference_mode``, never a Python loop over
positions.

Two ways of reading the text, matching the two kinds of trainer:

* ``context_length=None`` (recurrent; the native agents): the split is cut into ``batch_size``
  contiguous streams run side by side, the hidden state carried along each stream. Each stream
  starts from the zero state, so its first few predictions see less context than they would in
  one sequential pass. The figures depend a little on ``batch_size``: a GRU trained on 200k
  tokens of Tiny Shakespeare scored 2% lower perplexity on its test split with 64 streams (224
  tokens each) than as one stream. Every agent is scored the same way, so ratios hardly move.
* ``context_length=k`` (the SB3 policy's window): each prediction sees only the last ``k`` tokens,
  left-padded with the pad id at the start of the split.

The reward is that of the greedy (argmax) action, scored with the reward plugin's batched form
against the context the training env showed: the last ``context_length`` tokens of a window
model, the last token for a recurrent one (the native agents' env shows one token a step and the
RNN carries the rest), or the true history of a reward that declares a ``history_length``.

Free running (``free_top1``) measures exposure bias: a model trained only on true text may
never have read its own mistakes. The text is cut into blocks of ``horizon`` tokens (in
recurrent mode, each stream is); the model reads the true text up to a block's start, as
above, and inside the block its own previous greedy prediction instead of each true token,
every prediction being scored against the reference. All blocks run side by side, so this costs
``horizon`` batched steps over ``1/horizon`` of the rows: about one more ordinary pass.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from irlm_env.corpus import Corpus
from irlm_agents.lm.devices import resolve_device
from irlm_env.errors import IrlmError
from irlm_agents.lm.model import Hidden, RNNLanguageModel
from irlm_env.envs.episodes import history_windows, read_only
from irlm_env.rewards import Reward, make_reward

#: Time steps per forward pass in recurrent mode (and windows per stream in window mode). Keeps
#: the (batch, chunk, vocabulary) logits small: 64 x 32 x 10,000 floats is 82 MB.
CHUNK = 32
#: Context shown to the reward when the model itself is recurrent: the one token the native
#: agents' env shows at each step.
DEFAULT_REWARD_CONTEXT = 1


def _positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise IrlmError(f"evaluate(): {name} must be a positive integer or None, got {value!r}")


def _windows(tokens: np.ndarray, length: int, pad_id: int) -> np.ndarray:
    """(N, length) view: row i is the ``length`` tokens ending at position i, left-padded."""
    padded = np.concatenate([np.full(length - 1, pad_id, dtype=np.int64), tokens])
    return np.lib.stride_tricks.sliding_window_view(padded, length)


class _Scores:
    """Accumulates the per-chunk sums so the final figures need no second pass."""

    def __init__(self, n: int, device: torch.device) -> None:
        self.nll = torch.zeros((), dtype=torch.float64, device=device)
        self.top1 = torch.zeros((), dtype=torch.int64, device=device)
        self.top5 = torch.zeros((), dtype=torch.int64, device=device)
        self.greedy = np.empty(n, dtype=np.int64)
        # Of each true token, for known_perplexity. ``nll`` stays its own sum, in torch's order, so
        # that ``perplexity`` (and the checkpoints it picks) keep the bits they had before.
        self.log_likelihood = np.empty(n, dtype=np.float64)

    def add(self, logits: torch.Tensor, targets: torch.Tensor, index: np.ndarray | slice) -> None:
        """``logits`` (M, V) and ``targets`` (M,) for the predictions at ``index``."""
        log_probs = F.log_softmax(logits.float(), dim=-1)
        true = log_probs.gather(1, targets[:, None])
        self.nll -= true.sum(dtype=torch.float64)
        self.log_likelihood[index] = true[:, 0].double().cpu().numpy()
        top = log_probs.topk(min(5, log_probs.shape[-1]), dim=-1).indices
        hits = top == targets[:, None]
        self.top1 += hits[:, 0].sum()
        self.top5 += hits.any(dim=1).sum()
        self.greedy[index] = top[:, 0].cpu().numpy()


def _blocks(grid: np.ndarray, horizon: int, fill: int) -> np.ndarray:
    """(S, L) -> (S · ceil(L / horizon), horizon): row ``k·S + s`` is block ``k`` of row ``s``.

    The tail of the last block is ``fill``.
    """
    streams, length = grid.shape
    n_blocks = math.ceil(length / horizon)
    padded = np.full((streams, n_blocks * horizon), fill, dtype=grid.dtype)
    padded[:, :length] = grid
    return padded.reshape(streams, n_blocks, horizon).transpose(1, 0, 2).reshape(-1, horizon)


def _rows(hidden: Hidden, start: int, stop: int) -> Hidden:
    if isinstance(hidden, tuple):
        return (hidden[0][:, start:stop], hidden[1][:, start:stop])
    return hidden[:, start:stop]


def _free_running_hits(
    model: RNNLanguageModel,
    inputs: np.ndarray,
    hidden: Hidden | None,
    targets: np.ndarray,
    valid: np.ndarray,
    rows: int,
    device: torch.device,
) -> torch.Tensor:
    """Greedy hits over ``horizon = targets.shape[1]`` steps of free running, one block per row.

    Step 0 reads ``inputs`` (the true text). With ``hidden`` (recurrent: the state at each
    block's start, batch-major like the rows) ``inputs`` is one token per row and each later step
    reads the previous prediction on the carried state; without it ``inputs`` are windows, which
    shift by one and take the previous prediction at their end. ``rows`` blocks run at a time.
    """
    hits = torch.zeros((), dtype=torch.int64, device=device)
    for start in range(0, len(inputs), rows):
        x = torch.from_numpy(inputs[start : start + rows]).to(device)
        y = torch.from_numpy(targets[start : start + rows]).to(device)
        keep = torch.from_numpy(valid[start : start + rows]).to(device)
        state = None if hidden is None else _rows(hidden, start, start + rows)
        for step in range(y.shape[1]):
            features, carried = model.features(x, state)
            prediction = model.head(features[:, -1]).argmax(-1)
            hits += ((prediction == y[:, step]) & keep[:, step]).sum()
            if state is not None:
                state, x = carried, prediction[:, None]
            else:
                x = torch.cat([x[:, 1:], prediction[:, None]], 1)
    return hits


def _recurrent_pass(
    model: RNNLanguageModel,
    inputs: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    device: torch.device,
    horizon: int,
) -> tuple[_Scores, torch.Tensor]:
    """The scores and the free-running hits, the blocks starting from the carried states."""
    n = len(inputs)
    streams = min(batch_size, n)
    length = math.ceil(n / streams)
    # Pad to a (streams, length) grid; position b*length + t of the flat split is stream b, step t.
    grid_in = np.zeros(streams * length, dtype=np.int64)
    grid_in[:n] = inputs
    grid_tg = np.zeros(streams * length, dtype=np.int64)
    grid_tg[:n] = targets
    flat_index = np.arange(streams * length).reshape(streams, length)
    x_all = torch.from_numpy(grid_in.reshape(streams, length)).to(device)
    y_all = torch.from_numpy(grid_tg.reshape(streams, length)).to(device)
    scores = _Scores(n, device)
    hidden = model.initial_hidden(streams, device)
    horizon = min(horizon, length)  # a longer block would only add padding
    # Cut the pass at every block start too, to keep the state each block starts from.
    bounds = sorted({*range(0, length, CHUNK), *range(0, length, horizon), length})
    block_states: list[Hidden] = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if start % horizon == 0:
            block_states.append(hidden)
        features, hidden = model.features(x_all[:, start:stop], hidden)
        index = flat_index[:, start:stop].reshape(-1)
        valid = index < n
        logits = model.head(features).reshape(len(index), -1)
        keep = torch.from_numpy(valid).to(device)
        scores.add(logits[keep], y_all[:, start:stop].reshape(-1)[keep], index[valid])

    states: Hidden
    if isinstance(hidden, tuple):
        states = (torch.cat([h for h, _ in block_states], 1), torch.cat([c for _, c in block_states], 1))
    else:
        states = torch.cat(block_states, 1)
    first = np.ascontiguousarray(_blocks(grid_in.reshape(streams, length), horizon, 0)[:, :1])
    block_targets = _blocks(grid_tg.reshape(streams, length), horizon, 0)
    block_valid = _blocks(flat_index, horizon, n) < n
    free_hits = _free_running_hits(model, first, states, block_targets, block_valid, batch_size * CHUNK, device)
    return scores, free_hits


def _window_pass(
    model: RNNLanguageModel,
    windows: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    device: torch.device,
) -> _Scores:
    n = len(targets)
    scores = _Scores(n, device)
    step = batch_size * CHUNK
    for start in range(0, n, step):
        # A copy: the windows are a read-only strided view, and a one-row slice of it (or a
        # width-1 window) is already contiguous, so ascontiguousarray would hand torch the view.
        x = torch.from_numpy(windows[start : start + step].copy()).to(device)
        features, _ = model.features(x)
        logits = model.head(features[:, -1])
        y = torch.from_numpy(targets[start : start + step]).to(device)
        scores.add(logits, y, slice(start, start + len(y)))
    return scores


def _window_free_hits(
    model: RNNLanguageModel,
    windows: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    device: torch.device,
    horizon: int,
) -> torch.Tensor:
    """Free-running hits in window mode: each block starts from the true window at its start."""
    n = len(targets)
    horizon = min(horizon, n)  # a longer block would only add padding
    block_targets = _blocks(targets[None], horizon, 0)
    block_valid = _blocks(np.arange(n)[None], horizon, n) < n
    starts = windows[::horizon].copy()  # the true window at each block's start
    return _free_running_hits(model, starts, None, block_targets, block_valid, batch_size * CHUNK, device)


def perplexity(mean_nll: float) -> float:
    """``exp`` of the mean negative log-likelihood; ``inf`` for a diverged model, whose mean loss
    can pass the 709 nats where ``math.exp`` overflows (a crash at validation would lose the run)."""
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return math.inf


def evaluate(
    model: RNNLanguageModel,
    corpus: Corpus,
    split: str = "validation",
    *,
    reward: str | Reward = "exact",
    context_length: int | None = None,
    max_tokens: int | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    horizon: int = 16,
) -> dict[str, float]:
    """Greedy next-token figures of ``model`` on ``corpus``'s ``split``.

    Returns ``top1``, ``top5`` (fractions), ``perplexity`` (exp of the mean negative
    log-likelihood of the true next token), ``known_perplexity`` (the same over the predictions
    whose true token is not ``<unk>``; NaN if all are), ``reward`` (mean reward of the argmax
    token), ``free_top1`` and ``tokens`` (predictions scored). ``max_tokens`` scores only the
    first that many predictions of the split, so repeated evaluations during training are
    comparable and cheap.

    ``known_perplexity`` is there because ``<unk>`` can weigh on ``perplexity`` out of all
    proportion: where every word of the train split is in the vocabulary (``pydocs``), the
    train split holds no ``<unk>`` and no model can learn its rate, yet the words new to the
    validation and test splits are ``<unk>`` there (about 5% of ``pydocs``' test tokens). Each
    model's figure on them is then whatever its start and its regularisation leave on a token it
    never saw, and three nats on 5% of the tokens moved ``perplexity`` by about 15% there.

    ``free_top1`` is top-1 when the model reads its own greedy predictions: the split (in
    recurrent mode, each of its streams) is cut into blocks of ``horizon`` tokens; the model
    reads the true text up to a block's start, as for ``top1``, then, inside the block, its own
    previous greedy prediction instead of the true token (in window mode the window holds true
    tokens before the block and the model's predictions inside it); each prediction is scored
    against the reference token. A block's first prediction is the ordinary one, so
    ``horizon=1`` gives ``top1``.
    """
    _positive("context_length", context_length)
    _positive("max_tokens", max_tokens)
    _positive("batch_size", batch_size)
    _positive("horizon", horizon)
    if model.config.vocab_size != len(corpus.vocab):
        raise IrlmError(
            f"the model has a vocabulary of {model.config.vocab_size} tokens but corpus "
            f"{corpus.name!r} has {len(corpus.vocab)}; evaluate a model trained on this corpus"
        )
    text = corpus.split(split)
    if max_tokens is not None:
        text = text[: max_tokens + 1]
    if len(text) < 2:
        raise IrlmError(f"split {split!r} of corpus {corpus.name!r} has fewer than 2 tokens; nothing to predict")
    reward_fn = make_reward(reward, corpus) if isinstance(reward, str) else reward
    # Copies: corpus arrays are read-only, and torch wants writable memory to share.
    inputs = np.array(text[:-1], dtype=np.int64)
    targets = np.array(text[1:], dtype=np.int64)

    model_device = next(model.parameters()).device
    target_device = model_device if device is None else resolve_device(device)
    # Evaluating on another device must not move the caller's model as a side effect.
    runner = model if target_device == model_device else _copy_to(model, target_device)
    was_training = runner.training
    runner.eval()
    try:
        with torch.inference_mode():
            if context_length is None:
                scores, free_hits = _recurrent_pass(runner, inputs, targets, batch_size, target_device, horizon)
            else:
                windows = _windows(inputs, context_length, model.config.pad_id)
                scores = _window_pass(runner, windows, targets, batch_size, target_device)
                free_hits = _window_free_hits(runner, windows, targets, batch_size, target_device, horizon)
    finally:
        runner.train(was_training)

    if reward_fn.history_length is None:
        contexts = np.ascontiguousarray(_windows(inputs, context_length or DEFAULT_REWARD_CONTEXT, model.config.pad_id))
    else:  # the true history the reward asks for, by the envs' own rule
        contexts = read_only(history_windows(text, np.arange(1, len(text)), reward_fn.history_length, model.config.pad_id))
    rewards = np.asarray(reward_fn.batch(scores.greedy[:, None], targets, contexts), dtype=np.float64)
    n = len(targets)
    known = targets != corpus.vocab.unk_id
    return {
        "top1": scores.top1.item() / n,
        "top5": scores.top5.item() / n,
        "perplexity": perplexity(scores.nll.item() / n),
        "known_perplexity": perplexity(-scores.log_likelihood[known].mean()) if known.any() else math.nan,
        "reward": float(rewards.mean()),
        "free_top1": free_hits.item() / n,
        "tokens": float(n),
    }


def _copy_to(model: RNNLanguageModel, device: torch.device) -> RNNLanguageModel:
    copy = RNNLanguageModel(model.config).to(device)
    copy.load_state_dict(model.state_dict())
    return copy
