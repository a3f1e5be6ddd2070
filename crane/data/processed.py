"""The processed dataset folder: the one contract between data preparation and everything after.

Layout of `<results>/<dataset>/data/`:

- `interactions.parquet`: columns `user_id` (int64, dense 0-based), `item_id` (int64, dense
  0-based), `rating` (float32), `timestamp` (int64, 0 when unknown), `split` (int8: 0 train,
  1 validation, 2 test). Sorted by user, then split, then item.
- `items.parquet`: `item_id`, `asin`, `title`, `brand`, `categories` (first category path,
  list of strings), `description`, `image_url`, `text` (the whole rendered text of the
  `table` source, '' for the others): the item text and image pointers that feature
  extraction reads. Items without metadata keep empty strings.
- `<name>.inter`, `u_id_mapping.csv`, `i_id_mapping.csv`: the same split in MMRec's format.
- `stats.json`: users, items, interactions, sparsity, split counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from crane import files

TRAIN, VALID, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VALID: "valid", TEST: "test"}
INTERACTION_COLUMNS = ["user_id", "item_id", "rating", "timestamp", "split"]


@dataclass(frozen=True)
class Interactions:
    """All interactions of a split dataset, as flat numpy arrays."""

    n_users: int
    n_items: int
    user: np.ndarray  # int64
    item: np.ndarray  # int64
    split: np.ndarray  # int8
    rating: np.ndarray | None = None
    timestamp: np.ndarray | None = None

    def part(self, which: int) -> tuple[np.ndarray, np.ndarray]:
        mask = self.split == which
        return self.user[mask], self.item[mask]

    def csr(self, which: int) -> sp.csr_matrix:
        """Binary U x N matrix of one split (duplicates collapse to 1)."""
        users, items = self.part(which)
        matrix = sp.csr_matrix(
            (np.ones(len(users), dtype=np.float32), (users, items)),
            shape=(self.n_users, self.n_items),
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, n_users: int | None = None,
                   n_items: int | None = None) -> "Interactions":
        user = frame["user_id"].to_numpy(np.int64)
        item = frame["item_id"].to_numpy(np.int64)
        return cls(
            n_users=int(n_users if n_users is not None else user.max() + 1),
            n_items=int(n_items if n_items is not None else item.max() + 1),
            user=user,
            item=item,
            split=frame["split"].to_numpy(np.int8),
            rating=frame["rating"].to_numpy(np.float32) if "rating" in frame else None,
            timestamp=frame["timestamp"].to_numpy(np.int64) if "timestamp" in frame else None,
        )

    def to_frame(self) -> pd.DataFrame:
        n = len(self.user)
        return pd.DataFrame({
            "user_id": self.user.astype(np.int64),
            "item_id": self.item.astype(np.int64),
            "rating": (self.rating if self.rating is not None else np.ones(n)).astype(np.float32),
            "timestamp": (self.timestamp if self.timestamp is not None
                          else np.zeros(n)).astype(np.int64),
            "split": self.split.astype(np.int8),
        })


def load_interactions(data_dir: str | Path) -> Interactions:
    """Read `interactions.parquet`; n_users/n_items come from the id mappings."""
    data_dir = Path(data_dir)
    frame = pd.read_parquet(data_dir / "interactions.parquet")
    missing = [c for c in INTERACTION_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{data_dir / 'interactions.parquet'}: missing column(s) {missing}")
    n_users = n_items = None
    stats_path = data_dir / "stats.json"
    if stats_path.exists():
        stats = files.read_json(stats_path)
        n_users, n_items = stats["users"], stats["items"]
    return Interactions.from_frame(frame, n_users, n_items)


def save_interactions(data_dir: str | Path, interactions: Interactions) -> None:
    frame = interactions.to_frame().sort_values(["user_id", "split", "item_id"], kind="stable")
    with files.atomic_path(Path(data_dir) / "interactions.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
