"""crane.engine.topk: the blocked top-k equals a full stable sort, ties to the lower column."""

import numpy as np
import pytest

from crane.engine.topk import reference_top_k, top_k_rows


def stable_order(scores, k):
    """The reference order: score descending, lower column first among equal scores."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("n_rows,n_cols,k", [(50, 3000, 50), (20, 777, 10), (5, 60, 50),
                                             (4, 30, 50), (3, 1, 5)])
def test_matches_a_full_stable_sort(n_rows, n_cols, k):
    rng = np.random.default_rng(n_cols)
    scores = rng.standard_normal((n_rows, n_cols)).astype(np.float32)
    scores[:, rng.integers(0, n_cols, n_cols // 10)] = -np.inf  # masked items
    expected = stable_order(scores, k)
    np.testing.assert_array_equal(top_k_rows(scores, k), expected)
    np.testing.assert_array_equal(reference_top_k(scores, k), expected)


def test_ties_go_to_the_lower_column_even_at_the_cut():
    rng = np.random.default_rng(1)
    # few distinct values: many ties inside the top-k and at its boundary
    scores = rng.integers(0, 6, (40, 2000)).astype(np.float32)
    scores[0] = 0.0   # one row all tied
    scores[1, ::3] = -0.0  # -0.0 ties with +0.0
    np.testing.assert_array_equal(top_k_rows(scores, 50), stable_order(scores, 50))


def test_rows_with_nan_or_mostly_masked_take_the_exact_path():
    rng = np.random.default_rng(2)
    scores = rng.standard_normal((6, 1000)).astype(np.float32)
    scores[0, 5] = np.nan           # NaN ranks first, as in torch.topk
    scores[1, 20:] = -np.inf        # fewer finite scores than k
    top = top_k_rows(scores, 50)
    assert top[0, 0] == 5
    np.testing.assert_array_equal(top[1], np.r_[stable_order(scores[1:2, :20], 20)[0],
                                                np.arange(20, 50)])
    np.testing.assert_array_equal(top[2:], stable_order(scores[2:], 50))


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="float32"):
        top_k_rows(np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match="k must be"):
        top_k_rows(np.zeros((2, 3), np.float32), -1)


def test_nan_past_the_last_whole_block_ranks_first():
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((3, 1003)).astype(np.float32)  # 50 blocks of 20, 3 left over
    scores[1, 1002] = np.nan
    top = top_k_rows(scores, 10)
    assert top[1, 0] == 1002
    np.testing.assert_array_equal(top[[0, 2]], stable_order(scores[[0, 2]], 10))


def test_identical_rows_of_few_values_as_popularity_scores():
    rng = np.random.default_rng(4)
    scores = np.tile(rng.integers(0, 40, 3000).astype(np.float32), (30, 1))
    scores[np.arange(30), rng.integers(0, 3000, 30)] = -np.inf  # a masked item per user
    np.testing.assert_array_equal(top_k_rows(scores, 50), stable_order(scores, 50))
