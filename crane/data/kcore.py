"""Cleaning and iterative k-core filtering of raw (user, item) interactions.

Works on a frame with string columns `user`, `item` and optional `rating`, `timestamp`.
The k-core loop runs over iterations (a handful), each one vectorised with bincount.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


class EmptyDatasetError(ValueError):
    """Filtering left nothing to recommend."""


@dataclass(frozen=True)
class KCore:
    """Minimum number of interactions per user and per item."""

    user: int = 5
    item: int = 5

    @classmethod
    def from_spec(cls, value: int | dict | None) -> "KCore":
        """`kcore: 5` (both sides) or `kcore: {user: 5, item: 3}`; 0 or null disables it."""
        if value is None:
            return cls(0, 0)
        if isinstance(value, bool) or not isinstance(value, (int, dict)):
            raise ValueError(f"kcore: expected an integer or {{user, item}}, got {value!r}")
        if isinstance(value, int):
            return cls(value, value)
        unknown = set(value) - {"user", "item"}
        if unknown:
            raise ValueError(f"kcore: unknown key(s) {sorted(unknown)}; expected user, item")
        return cls(int(value.get("user", 0)), int(value.get("item", 0)))

    def describe(self) -> str:
        return f"{self.user}-core" if self.user == self.item else \
            f"k-core (users >= {self.user}, items >= {self.item})"

    def as_json(self) -> dict:
        return {"user": self.user, "item": self.item}


def drop_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop rows without a user or an item (missing or blank)."""
    valid = np.ones(len(frame), dtype=bool)
    for column in ("user", "item"):
        values = frame[column]
        valid &= values.notna().to_numpy()
        valid &= (values.astype(str).str.strip() != "").to_numpy()
    dropped = int((~valid).sum())
    if dropped:
        log.info("dropped %d interactions without user or item", dropped)
    return frame.loc[valid].reset_index(drop=True)


def drop_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep one row per (user, item): the earliest by timestamp (file order on ties)."""
    if "timestamp" in frame:
        frame = frame.sort_values("timestamp", kind="stable")
    deduplicated = frame.drop_duplicates(["user", "item"], keep="first")
    dropped = len(frame) - len(deduplicated)
    if dropped:
        log.info("dropped %d duplicate (user, item) interactions", dropped)
    return deduplicated.sort_index().reset_index(drop=True)


def kcore_mask(user_codes: np.ndarray, item_codes: np.ndarray, kcore: KCore) -> np.ndarray:
    """Rows kept by iterative k-core filtering of integer-coded users and items.

    Removing a user can push an item below k and the other way round, so repeat until no
    row is removed: the result is the unique largest sub-graph meeting both minimums.
    """
    keep = np.ones(len(user_codes), dtype=bool)
    n_users = int(user_codes.max()) + 1 if len(user_codes) else 0
    n_items = int(item_codes.max()) + 1 if len(item_codes) else 0
    iteration = 0
    while True:
        iteration += 1
        user_degree = np.bincount(user_codes[keep], minlength=n_users)
        item_degree = np.bincount(item_codes[keep], minlength=n_items)
        next_keep = keep & (user_degree[user_codes] >= kcore.user) \
            & (item_degree[item_codes] >= kcore.item)
        if np.array_equal(next_keep, keep):
            break
        keep = next_keep
    log.debug("%s converged after %d iterations", kcore.describe(), iteration)
    return keep


def apply_kcore(frame: pd.DataFrame, kcore: KCore, dataset: str = "dataset") -> pd.DataFrame:
    """Filter `frame` (columns user, item) to its k-core; raise when nothing is left."""
    user_codes, _ = pd.factorize(frame["user"])
    item_codes, _ = pd.factorize(frame["item"])
    keep = kcore_mask(user_codes.astype(np.int64), item_codes.astype(np.int64), kcore)
    result = frame.loc[keep].reset_index(drop=True)
    if result.empty:
        raise EmptyDatasetError(
            f"empty after filtering: {kcore.describe()} of {dataset} leaves 0 users "
            f"(from {frame['user'].nunique()} users, {frame['item'].nunique()} items, "
            f"{len(frame)} interactions)")
    log.info("%s of %s: %d users, %d items, %d interactions", kcore.describe(), dataset,
             result["user"].nunique(), result["item"].nunique(), len(result))
    return result
