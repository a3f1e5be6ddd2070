"""MMRec's dataset folder format, written and read.

- `<name>.inter`: TSV with header `userID itemID rating timestamp x_label` (x_label 0 train,
  1 validation, 2 test), rows in MMRec's order (by user, then split order).
- `u_id_mapping.csv`: TSV `user_id<TAB>userID` (raw user id -> dense id).
- `i_id_mapping.csv`: TSV `asin<TAB>itemID` (ASIN -> dense id).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crane import files

INTER_COLUMNS = ["userID", "itemID", "rating", "timestamp", "x_label"]
USER_MAPPING = "u_id_mapping.csv"
ITEM_MAPPING = "i_id_mapping.csv"


@dataclass
class MMRecFolder:
    """An MMRec dataset: the split rows (in file order) and both id vocabularies."""

    interactions: pd.DataFrame  # user_id, item_id, rating, timestamp, split
    users: np.ndarray  # raw user id by dense id
    items: np.ndarray  # ASIN by dense id


def write_mmrec(out_dir: str | Path, name: str, interactions: pd.DataFrame,
                users: np.ndarray, items: np.ndarray) -> None:
    """Write `<name>.inter` and both mappings (rows of `interactions` in their given order)."""
    out_dir = Path(out_dir)
    rating = interactions["rating"].to_numpy(np.float64)
    inter = pd.DataFrame({
        "userID": interactions["user_id"].to_numpy(np.int64),
        "itemID": interactions["item_id"].to_numpy(np.int64),
        # Whole-number ratings print as integers, as in MMRec's own files.
        "rating": rating.astype(np.int64) if np.all(rating == np.round(rating)) else rating,
        "timestamp": interactions["timestamp"].to_numpy(np.int64),
        "x_label": interactions["split"].to_numpy(np.int64),
    })
    _write_tsv(out_dir / f"{name}.inter", inter)
    _write_tsv(out_dir / USER_MAPPING,
               pd.DataFrame({"user_id": users, "userID": np.arange(len(users))}))
    _write_tsv(out_dir / ITEM_MAPPING,
               pd.DataFrame({"asin": items, "itemID": np.arange(len(items))}))


def read_mmrec(folder: str | Path, name: str) -> MMRecFolder:
    """Read an MMRec folder, checking columns and that ids are dense and in range."""
    folder = Path(folder)
    inter_path = folder / f"{name}.inter"
    inter = _read_tsv(inter_path, required=["userID", "itemID", "x_label"])
    users = _read_mapping(folder / USER_MAPPING, "user_id", "userID")
    items = _read_mapping(folder / ITEM_MAPPING, "asin", "itemID")
    frame = pd.DataFrame({
        "user_id": _int_column(inter, "userID", inter_path),
        "item_id": _int_column(inter, "itemID", inter_path),
        "rating": (pd.to_numeric(inter["rating"], errors="raise").to_numpy(np.float32)
                   if "rating" in inter else np.ones(len(inter), dtype=np.float32)),
        "timestamp": (_int_column(inter, "timestamp", inter_path) if "timestamp" in inter
                      else np.zeros(len(inter), dtype=np.int64)),
        "split": _int_column(inter, "x_label", inter_path).astype(np.int8),
    })
    for column, vocabulary, mapping in (("user_id", users, USER_MAPPING),
                                        ("item_id", items, ITEM_MAPPING)):
        values = frame[column].to_numpy()
        if len(values) and (values.min() < 0 or values.max() >= len(vocabulary)):
            raise ValueError(f"{inter_path}: {column} outside 0..{len(vocabulary) - 1} "
                             f"(the ids of {folder / mapping})")
    bad_labels = ~frame["split"].isin([0, 1, 2])
    if bad_labels.any():
        row = int(np.flatnonzero(bad_labels.to_numpy())[0])
        raise ValueError(f"{inter_path}: line {row + 2}: x_label must be 0, 1 or 2, got "
                         f"{frame['split'].iloc[row]}")
    return MMRecFolder(frame, users, items)


def _write_tsv(path: Path, frame: pd.DataFrame) -> None:
    with files.atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, lineterminator="\n")


def _read_tsv(path: Path, required: list[str]) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"MMRec file not found: {path}")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(f"{path}: column(s) {missing} missing; the header has "
                         f"{list(frame.columns)}")
    return frame


def _int_column(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{path}: line {row + 2}: {column} is not an integer: "
                         f"{frame[column].iloc[row]!r}")
    return values.to_numpy().astype(np.int64)


def _read_mapping(path: Path, raw_column: str, id_column: str) -> np.ndarray:
    frame = _read_tsv(path, required=[raw_column, id_column])
    ids = _int_column(frame, id_column, path)
    if not np.array_equal(np.sort(ids), np.arange(len(ids))):
        raise ValueError(f"{path}: {id_column} must be the dense ids 0..{len(ids) - 1}, "
                         f"each once")
    vocabulary = np.empty(len(ids), dtype=object)
    vocabulary[ids] = frame[raw_column].to_numpy(dtype=object)
    return vocabulary
