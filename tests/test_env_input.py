"""Edge-case input to the envs gets a clear answer (issue 10.9)."""

from __future__ import annotations

import numpy as np
import pytest

from irlm_env.corpus import Corpus, load_corpus
from irlm_env.envs.next_word import NextWordEnv
from irlm_env.envs.vector import NextWordVectorEnv
from irlm_env.errors import IrlmError


@pytest.fixture(scope="module")
def grammar() -> Corpus:
    return load_corpus("grammar", n_sentences=400)


def test_score_of_no_candidates_is_an_empty_array(grammar: Corpus) -> None:
    """K = 0 is an empty axis, not a mistake: numpy reduces it to an empty result, and so does
    score(), so a caller with a varying number of candidates needs no special case."""
    env = NextWordVectorEnv(3, corpus=grammar)
    env.reset(seed=0)
    for dtype in (np.int64, np.uint8):
        scores = env.score(np.empty((3, 0), dtype))
        assert scores.shape == (3, 0) and scores.dtype == np.float64


def test_score_of_a_wrong_shape_is_still_an_error(grammar: Corpus) -> None:
    env = NextWordVectorEnv(3, corpus=grammar)
    env.reset(seed=0)
    with pytest.raises(IrlmError, match=r"shape \(num_envs, K\) = \(3, K\), or \(M, K\) for M streams, got shape "
                                        r"\(0, 2\) for 3 streams"):
        env.score(np.empty((0, 2), np.int64))


@pytest.mark.parametrize("dtype", [np.uint64, np.uint32])
def test_a_huge_unsigned_action_is_reported_as_itself(grammar: Corpus, dtype: type) -> None:
    huge = int(np.iinfo(dtype).max)
    vocab = len(grammar.vocab)
    message = rf"action {huge} is outside the action space: use an integer token id in \[0, {vocab - 1}\]"
    vector = NextWordVectorEnv(2, corpus=grammar)
    vector.reset(seed=0)
    with pytest.raises(IrlmError, match=message):
        vector.step(np.array([3, huge], dtype))
    with pytest.raises(IrlmError, match=message):
        vector.score(np.array([[3], [huge]], dtype))
    single = NextWordEnv(corpus=grammar)
    single.reset(seed=0)
    for action in (dtype(huge), np.array(huge, dtype)):
        with pytest.raises(IrlmError, match=message):
            single.step(action)


def test_the_single_env_takes_a_numpy_seed_like_the_vector_env(grammar: Corpus) -> None:
    env = NextWordEnv(corpus=grammar)
    by_int = env.reset(seed=5)[0]
    for seed in (np.int64(5), np.int32(5), np.uint16(5)):
        assert np.array_equal(env.reset(seed=seed)[0], by_int)
    vector = NextWordVectorEnv(1, corpus=grammar)
    assert np.array_equal(vector.reset(seed=np.int64(5))[0][0], by_int)
