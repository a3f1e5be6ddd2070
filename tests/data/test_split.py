"""Split rules: MMRec's seeded random rule, leave-last-out, global time cut."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crane.data.split import split_interactions


def _frame(counts, seed=0, timestamps=True):
    """Users 0..len(counts)-1 with counts[u] distinct random items, random timestamps."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for user, count in enumerate(counts):
        users += [user] * count
        items += rng.choice(500, count, replace=False).tolist()
    frame = pd.DataFrame({"user_id": users, "item_id": items})
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # file order
    frame["rating"] = 1.0
    frame["timestamp"] = rng.integers(1, 10**9, len(frame)) if timestamps else 0
    return frame


def _counts_per_user(result):
    table = result.groupby(["user_id", "split"]).size().unstack(fill_value=0)
    return {user: tuple(int(row.get(s, 0)) for s in (0, 1, 2)) for user, row in table.iterrows()}


def test_mmrec_rule_counts():
    counts = [9, 10, 15, 20, 37, 3, 5]
    result = split_interactions(_frame(counts), {"method": "mmrec_random", "seed": 1})
    # n < 10: all but two train; else k = int(0.2 n), valid floor(k/2), test the rest.
    assert _counts_per_user(result) == {0: (7, 1, 1), 1: (8, 1, 1), 2: (12, 1, 2),
                                        3: (16, 2, 2), 4: (30, 3, 4), 5: (1, 1, 1),
                                        6: (3, 1, 1)}


def test_users_without_training_interactions_are_dropped():
    result = split_interactions(_frame([2, 1, 6]), {"method": "mmrec_random", "seed": 1})
    assert sorted(result["user_id"].unique()) == [2]


def _reference_mmrec(frame, seed):
    """The protocol's recipe, written out plainly, one user at a time."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in sorted(frame["user_id"].unique()):
        items = np.sort(frame.loc[frame["user_id"] == user, "item_id"].to_numpy())
        shuffled = rng.permutation(items)
        n = len(items)
        k = 2 if n < 10 else int(0.2 * n)
        n_valid = k // 2
        labels = [0] * (n - k) + [1] * n_valid + [2] * (k - n_valid)
        rows += [(user, item, label) for item, label in zip(shuffled, labels)]
    return rows


def test_mmrec_random_follows_the_recipe_row_for_row():
    frame = _frame([5, 12, 9, 30, 7, 18, 11], seed=3)
    result = split_interactions(frame, {"method": "mmrec_random", "seed": 2024})
    assert list(map(tuple, result[["user_id", "item_id", "split"]].to_numpy())) == \
        _reference_mmrec(frame, 2024)


def test_seeding():
    frame = _frame([12, 25, 9, 40] * 5, seed=4)
    first = split_interactions(frame, {"method": "mmrec_random", "seed": 7})
    again = split_interactions(frame, {"method": "mmrec_random", "seed": 7})
    other = split_interactions(frame, {"method": "mmrec_random", "seed": 8})
    pd.testing.assert_frame_equal(first, again)
    assert not first[["item_id", "split"]].equals(other[["item_id", "split"]])
    assert _counts_per_user(first) == _counts_per_user(other)  # counts do not depend on it


def test_rows_carry_their_rating_and_timestamp():
    frame = _frame([12, 15], seed=5)
    frame["rating"] = np.arange(len(frame), dtype=float)
    result = split_interactions(frame, {"method": "mmrec_random", "seed": 1})
    merged = result.merge(frame, on=["user_id", "item_id"], suffixes=("", "_in"))
    assert (merged["rating"] == merged["rating_in"]).all()
    assert (merged["timestamp"] == merged["timestamp_in"]).all()


def test_leave_last_out():
    frame = pd.DataFrame({"user_id": [0, 0, 0, 0, 1, 1, 2, 3, 3, 3],
                          "item_id": [5, 6, 7, 8, 1, 2, 3, 9, 4, 8],
                          "timestamp": [40, 10, 30, 20, 5, 6, 1, 7, 7, 3]})
    frame["rating"] = 1.0
    result = split_interactions(frame, {"method": "leave_last_out"})
    by_row = {(u, i): s for u, i, s in result[["user_id", "item_id", "split"]].to_numpy()}
    assert by_row[(0, 5)] == 2 and by_row[(0, 7)] == 1
    assert by_row[(0, 6)] == by_row[(0, 8)] == 0
    assert (by_row[(1, 1)], by_row[(1, 2)]) == (0, 2)  # two interactions: train + test
    assert by_row[(2, 3)] == 0  # one interaction: train only
    assert (by_row[(3, 8)], by_row[(3, 4)], by_row[(3, 9)]) == (0, 1, 2)  # ties: item id


def test_time_cut_with_fractions_and_absolute_times():
    frame = pd.DataFrame({"user_id": [0] * 10 + [1] * 2, "item_id": list(range(12)),
                          "timestamp": list(range(100, 1100, 100)) + [950, 1000]})
    frame["rating"] = 1.0
    result = split_interactions(frame, {"method": "time_cut", "valid_from": 800,
                                        "test_from": 1000})
    user0 = result[result["user_id"] == 0]
    assert user0["split"].tolist() == [0] * 7 + [1, 1, 2]
    assert 1 not in result["user_id"].tolist()  # no training interaction before the cut
    by_fraction = split_interactions(frame, {"method": "time_cut", "valid_from": 0.5,
                                             "test_from": 0.9})
    # Quantiles of all 12 timestamps ('lower'): 0.5 -> 600, 0.9 -> 950.
    assert by_fraction["split"].tolist() == [0] * 5 + [1] * 4 + [2]


def test_split_errors_are_clear():
    frame = _frame([12, 15], timestamps=False)
    with pytest.raises(ValueError, match="split.method: unknown 'random'"):
        split_interactions(frame, {"method": "random"})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['sead'\] for mmrec_random"):
        split_interactions(frame, {"method": "mmrec_random", "sead": 1})
    with pytest.raises(ValueError, match="leave_last_out needs timestamps"):
        split_interactions(frame, {"method": "leave_last_out"})
    timed = _frame([12, 15])
    with pytest.raises(ValueError, match="valid_from .* is after test_from"):
        split_interactions(timed, {"method": "time_cut", "valid_from": 0.9, "test_from": 0.5})
    with pytest.raises(ValueError, match="split.test_from: expected a fraction"):
        split_interactions(timed, {"method": "time_cut", "valid_from": 0.5, "test_from": "x"})
