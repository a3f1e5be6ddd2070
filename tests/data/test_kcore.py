"""Cleaning, iterative k-core and dense ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crane.data.ids import dense_ids
from crane.data.kcore import (EmptyDatasetError, KCore, apply_kcore, drop_duplicates,
                              drop_missing, kcore_mask)


def _frame(pairs, timestamps=None):
    frame = pd.DataFrame(pairs, columns=["user", "item"])
    frame["rating"] = 1.0
    frame["timestamp"] = timestamps if timestamps is not None else 0
    return frame


def test_kcore_prunes_iteratively_on_a_hand_example():
    # 2-core. One pass would only drop u4 and item d; their removal then starves u5 and
    # item c, whose removal starves u3: only the u1/u2 x a/b square survives.
    pairs = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u3", "b"), ("u3", "c"),
             ("u4", "c"), ("u5", "d"), ("u5", "a")]
    result = apply_kcore(_frame(pairs), KCore(2, 2), "toy")
    assert sorted(map(tuple, result[["user", "item"]].to_numpy())) == \
        [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")]


def _reference_kcore(users, items, k_user, k_item):
    """Obviously correct and slow: drop one violating row at a time until none is left."""
    alive = set(range(len(users)))
    changed = True
    while changed:
        changed = False
        user_degree = pd.Series([users[r] for r in alive]).value_counts()
        item_degree = pd.Series([items[r] for r in alive]).value_counts()
        for row in sorted(alive):
            if user_degree[users[row]] < k_user or item_degree[items[row]] < k_item:
                alive.discard(row)
                changed = True
                break
    return np.array(sorted(alive), dtype=np.int64)


@pytest.mark.parametrize("k_user,k_item,seed", [(2, 2, 0), (3, 2, 1), (3, 3, 2), (2, 4, 3)])
def test_kcore_matches_a_brute_force_reference(k_user, k_item, seed):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 25, 160)
    items = (rng.zipf(1.6, 160) % 30).astype(np.int64)
    keep = kcore_mask(users, items, KCore(k_user, k_item))
    assert np.array_equal(np.flatnonzero(keep), _reference_kcore(users, items, k_user, k_item))
    kept_users, kept_items = users[keep], items[keep]
    if keep.any():
        assert np.bincount(kept_users)[np.unique(kept_users)].min() >= k_user
        assert np.bincount(kept_items)[np.unique(kept_items)].min() >= k_item


def test_empty_result_is_a_clear_error():
    pairs = [("u1", "a"), ("u1", "b"), ("u2", "a")]
    with pytest.raises(EmptyDatasetError,
                       match=r"empty after filtering: 3-core of toy leaves 0 users"):
        apply_kcore(_frame(pairs), KCore(3, 3), "toy")


def test_kcore_spec_forms():
    assert KCore.from_spec(5) == KCore(5, 5)
    assert KCore.from_spec({"user": 5, "item": 3}) == KCore(5, 3)
    assert KCore.from_spec(None) == KCore(0, 0)
    with pytest.raises(ValueError, match=r"kcore: unknown key\(s\) \['users'\]"):
        KCore.from_spec({"users": 5})
    with pytest.raises(ValueError, match="kcore: expected an integer"):
        KCore.from_spec("5")


def test_drop_missing_users_and_items():
    frame = _frame([("u1", "a"), (None, "b"), ("u2", None), ("  ", "c"), (np.nan, "d"),
                    ("u3", "")])
    assert drop_missing(frame)[["user", "item"]].values.tolist() == [["u1", "a"]]


def test_duplicates_keep_the_earliest_interaction_in_file_order():
    frame = _frame([("u1", "a"), ("u2", "a"), ("u1", "a"), ("u1", "b")],
                   timestamps=[300, 50, 100, 10])
    result = drop_duplicates(frame)
    assert result[["user", "item", "timestamp"]].values.tolist() == \
        [["u2", "a", 50], ["u1", "a", 100], ["u1", "b", 10]]


def test_dense_ids_follow_string_order():
    frame = _frame([("b", "B0002"), ("A", "0345"), ("a", "B0001"), ("_", "B0002")])
    result, users, items = dense_ids(frame)
    assert users.tolist() == ["A", "_", "a", "b"]
    assert items.tolist() == ["0345", "B0001", "B0002"]
    assert result["user_id"].tolist() == [3, 0, 2, 1]
    assert result["item_id"].tolist() == [2, 0, 1, 2]
