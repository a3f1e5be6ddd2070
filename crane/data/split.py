"""Train / validation / test splits of densely-ided interactions.

Methods (config `split: {method: ..., ...}`):
- `mmrec_random` (seed): MMRec's per-user random rule, seeded; reproduces the reference Baby
  split row for row (see docs/protocol.md, section 2).
- `leave_last_out`: per user by time, the last interaction to test, the second last to
  validation.
- `time_cut` (valid_from, test_from): one global time line; each bound a fraction of the
  timestamp distribution (0 < x < 1, a quantile) or an absolute unix time.

Every method drops validation/test rows of users left without a training interaction (they
cannot be scored from training data). Rows come back in the order MMRec writes them: by user,
and within a user in split order (`mmrec_random`: the shuffled order).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import pandas as pd

from crane.data.processed import TEST, TRAIN, VALID

log = logging.getLogger(__name__)

_SMALL_USER = 10  # users with fewer interactions hold out exactly one valid + one test


def split_interactions(frame: pd.DataFrame, spec: dict[str, Any]) -> pd.DataFrame:
    """Return `frame` (user_id, item_id, timestamp, ...) with an int8 `split` column."""
    spec = dict(spec or {})
    method = spec.pop("method", "mmrec_random")
    if method not in SPLIT_METHODS:
        raise ValueError(f"split.method: unknown {method!r}; expected one of "
                         f"{sorted(SPLIT_METHODS)}")
    function, allowed = SPLIT_METHODS[method]
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(f"split: unknown option(s) {sorted(unknown)} for {method}; "
                         f"allowed: {sorted(allowed)}")
    missing = sorted(REQUIRED_OPTIONS.get(method, set()) - set(spec))
    if missing:
        raise ValueError(f"split {method}: missing option(s) {missing}; set "
                         f"{' and '.join(f'split.{key}' for key in missing)} in the dataset's "
                         f"config block (each a fraction in (0, 1) of the timestamps, or a "
                         f"unix time)")
    result = function(frame, **spec)
    return _drop_users_without_training(result)


def mmrec_random(frame: pd.DataFrame, seed: int = 2024) -> pd.DataFrame:
    """MMRec's rule with one `numpy.random.default_rng(seed)`.

    Users in ascending id; a user's item ids sorted ascending, then permuted by the rng; the
    first positions train, then validation, then test. n < 10: all but two train, one
    validation, one test; otherwise k = int(0.2 n) held out, floor(k/2) validation, the
    rest test.
    """
    order = np.lexsort((frame["item_id"].to_numpy(), frame["user_id"].to_numpy()))
    users = frame["user_id"].to_numpy()[order]
    starts, counts = _runs(users)
    rng = np.random.default_rng(seed)
    # The per-user permutations must consume the rng in exactly this sequence to reproduce
    # the reference split, so this one loop over users stays (a permutation per user).
    permuted = np.empty(len(order), dtype=np.int64)
    for start, count in zip(starts.tolist(), counts.tolist()):
        permuted[start:start + count] = start + rng.permutation(count)
    result = frame.iloc[order[permuted]].reset_index(drop=True)
    n_holdout = np.where(counts < _SMALL_USER, np.minimum(2, counts),
                         (0.2 * counts).astype(np.int64))
    n_valid = n_holdout // 2
    n_train = counts - n_holdout
    position = np.arange(len(order)) - np.repeat(starts, counts)
    labels = np.where(position < np.repeat(n_train, counts), TRAIN,
                      np.where(position < np.repeat(n_train + n_valid, counts), VALID, TEST))
    result["split"] = labels.astype(np.int8)
    return result


def leave_last_out(frame: pd.DataFrame) -> pd.DataFrame:
    """Per user by timestamp (item id breaks ties): last -> test, second last -> valid.

    A user keeps at least one training interaction: 2 interactions give train + test, one
    gives train only.
    """
    _require_timestamps(frame, "leave_last_out")
    order = np.lexsort((frame["item_id"].to_numpy(), frame["timestamp"].to_numpy(),
                        frame["user_id"].to_numpy()))
    result = frame.iloc[order].reset_index(drop=True)
    starts, counts = _runs(result["user_id"].to_numpy())
    from_end = np.repeat(starts + counts, counts) - 1 - np.arange(len(result))
    n = np.repeat(counts, counts)
    labels = np.full(len(result), TRAIN, dtype=np.int8)
    labels[(from_end == 0) & (n >= 2)] = TEST
    labels[(from_end == 1) & (n >= 3)] = VALID
    result["split"] = labels
    return result


def time_cut(frame: pd.DataFrame, valid_from: float, test_from: float) -> pd.DataFrame:
    """Global cut: timestamp >= test_from -> test, >= valid_from -> valid, else train."""
    _require_timestamps(frame, "time_cut")
    timestamps = frame["timestamp"].to_numpy(np.int64)
    valid_at = _cut_point(timestamps, valid_from, "valid_from")
    test_at = _cut_point(timestamps, test_from, "test_from")
    if valid_at > test_at:
        raise ValueError(f"split: valid_from ({valid_from} -> {valid_at}) is after "
                         f"test_from ({test_from} -> {test_at})")
    order = np.lexsort((frame["item_id"].to_numpy(), timestamps, frame["user_id"].to_numpy()))
    result = frame.iloc[order].reset_index(drop=True)
    ordered = result["timestamp"].to_numpy(np.int64)
    labels = np.where(ordered >= test_at, TEST, np.where(ordered >= valid_at, VALID, TRAIN))
    result["split"] = labels.astype(np.int8)
    log.info("time_cut: validation from %d, test from %d (unix seconds)", valid_at, test_at)
    return result


SPLIT_METHODS: dict[str, tuple[Callable[..., pd.DataFrame], set[str]]] = {
    "mmrec_random": (mmrec_random, {"seed"}),
    "leave_last_out": (leave_last_out, set()),
    "time_cut": (time_cut, {"valid_from", "test_from"}),
}
# Options without a default: checked first, so that a missing one is named (not a TypeError).
REQUIRED_OPTIONS: dict[str, set[str]] = {"time_cut": {"valid_from", "test_from"}}


def _cut_point(timestamps: np.ndarray, value: float, name: str) -> int:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"split.{name}: expected a fraction in (0, 1) or a unix time, "
                         f"got {value!r}")
    if 0 < value < 1:
        return int(np.quantile(timestamps, value, method="lower"))
    if value <= 1:
        raise ValueError(f"split.{name}: {value} is neither a fraction in (0, 1) nor a "
                         f"unix time")
    return int(value)


def _require_timestamps(frame: pd.DataFrame, method: str) -> None:
    if "timestamp" not in frame or not frame["timestamp"].astype(bool).any():
        raise ValueError(f"split {method} needs timestamps, and this source has none "
                         f"(all 0); use mmrec_random")


def _runs(sorted_users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each run of equal values in a sorted array."""
    if len(sorted_users) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, len(sorted_users)])
    return starts.astype(np.int64), counts.astype(np.int64)


def _drop_users_without_training(frame: pd.DataFrame) -> pd.DataFrame:
    has_train = np.zeros(int(frame["user_id"].max()) + 1 if len(frame) else 0, dtype=bool)
    has_train[frame.loc[frame["split"] == TRAIN, "user_id"].to_numpy()] = True
    keep = has_train[frame["user_id"].to_numpy()]
    dropped = int((~keep).sum())
    if dropped:
        log.info("dropped %d validation/test interactions of %d users without training data",
                 dropped, frame.loc[~keep, "user_id"].nunique())
    return frame.loc[keep].reset_index(drop=True)
