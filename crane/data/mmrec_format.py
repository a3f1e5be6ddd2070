"""MMRec's dataset folder format, written and read.

- `<name>.inter`: TSV with header `userID itemID rating timestamp x_label` (x_label 0 train,
  1 validation, 2 test), rows in MMRec's order (by user, then split order).
- `u_id_mapping.csv`: TSV `user_id<TAB>userID` (raw user id -> dense id); optional when
  reading, as in MMRec (which trains from the `.inter` alone): without it the ids are their
  own names ("0", "1", ...), 0..the largest id.
- `i_id_mapping.csv`: TSV `asin<TAB>itemID` (ASIN -> dense id); optional likewise.

Reading checks what training would otherwise trip over later, each error naming the file and
line: an empty file, ids outside the mappings or unused (ids must be dense: every id of a
mapping has an interaction), x_label outside 0/1/2, a (user, item) pair in two splits (the
held-out answer would be in training) and rows repeating (userID, itemID, timestamp), which
MMRec's own preprocessing removes. The same pair again in its split at another time is what
that preprocessing keeps (it deduplicates on user, item and timestamp): such rows are dropped
here (the first in file order stays), logged and counted (`repeated_pairs_dropped`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crane import files

log = logging.getLogger(__name__)

INTER_COLUMNS = ["userID", "itemID", "rating", "timestamp", "x_label"]
USER_MAPPING = "u_id_mapping.csv"
ITEM_MAPPING = "i_id_mapping.csv"


@dataclass
class MMRecFolder:
    """An MMRec dataset: the split rows (in file order) and both id vocabularies."""

    interactions: pd.DataFrame  # user_id, item_id, rating, timestamp, split
    users: np.ndarray  # raw user id by dense id
    items: np.ndarray  # ASIN by dense id
    path: Path | None = None  # the `.inter` file read
    repeated_pairs_dropped: int = 0  # rows repeating a pair within its split, dropped


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
    """Read an MMRec folder, checking it as the module docstring says."""
    folder = Path(folder)
    inter_path = folder / f"{name}.inter"
    inter = _read_tsv(inter_path, required=["userID", "itemID", "x_label"])
    frame = pd.DataFrame({
        "user_id": _int_column(inter, "userID", inter_path),
        "item_id": _int_column(inter, "itemID", inter_path),
        "rating": (pd.to_numeric(inter["rating"], errors="raise").to_numpy(np.float32)
                   if "rating" in inter else np.ones(len(inter), dtype=np.float32)),
        "timestamp": (_int_column(inter, "timestamp", inter_path) if "timestamp" in inter
                      else np.zeros(len(inter), dtype=np.int64)),
        "split": _int_column(inter, "x_label", inter_path).astype(np.int8),
    })
    users = _vocabulary(folder / USER_MAPPING, "user_id", "userID", frame["user_id"])
    items = _vocabulary(folder / ITEM_MAPPING, "asin", "itemID", frame["item_id"])
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
    frame, dropped = _drop_repeated_pairs(frame, inter_path)
    if len(frame):  # a header-only file is refused later, by the split check of preprocessing
        _check_dense(frame["user_id"].to_numpy(), len(users), "userID", inter_path,
                     folder / USER_MAPPING)
        _check_dense(frame["item_id"].to_numpy(), len(items), "itemID", inter_path,
                     folder / ITEM_MAPPING)
    return MMRecFolder(frame, users, items, inter_path, dropped)


_SPLIT_NAMES = {0: "train", 1: "validation", 2: "test"}


def _drop_repeated_pairs(frame: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, int]:
    """Refuse a pair in two splits and exact repeats; drop a pair's repeats in its split.

    Line numbers: row + 2 (the header is line 1).
    """
    repeated = frame.duplicated(["user_id", "item_id"], keep=False).to_numpy()
    if not repeated.any():
        return frame, 0
    rows = frame.loc[repeated]
    splits_per_pair = rows.groupby(["user_id", "item_id"])["split"].transform("nunique")
    leaking = rows.loc[splits_per_pair.to_numpy() > 1]
    if len(leaking):
        user, item = leaking["user_id"].iloc[0], leaking["item_id"].iloc[0]
        pair = leaking.loc[(leaking["user_id"] == user) & (leaking["item_id"] == item)]
        first = pair.iloc[0]
        other = pair.loc[pair["split"] != first["split"]].iloc[0]
        n_pairs = len(leaking.drop_duplicates(["user_id", "item_id"]))
        raise ValueError(
            f"{path}: lines {pair.index[0] + 2} and {other.name + 2}: userID {user}, itemID "
            f"{item} is in both the {_SPLIT_NAMES[int(first['split'])]} and the "
            f"{_SPLIT_NAMES[int(other['split'])]} split ({n_pairs} such pair(s)); a pair may "
            f"be in one split only, else the held-out answer is in the training data: keep "
            f"one of the rows, or re-split the data (e.g. the pairs_csv source with `split:`)")
    key = ["user_id", "item_id", "timestamp"]
    exact = frame.duplicated(key, keep="first").to_numpy()
    if exact.any():
        row = frame.loc[exact].iloc[0]
        original = frame.loc[(frame[key] == row[key]).all(axis=1)].index[0]
        raise ValueError(
            f"{path}: line {row.name + 2} repeats line {original + 2} (userID {row['user_id']}, "
            f"itemID {row['item_id']}, timestamp {row['timestamp']}; {int(exact.sum())} such "
            f"row(s)); MMRec's preprocessing removes such duplicates, so the file was damaged "
            f"or written twice: remove the repeated rows")
    later = frame.duplicated(["user_id", "item_id"], keep="first").to_numpy()
    row = frame.loc[later].iloc[0]
    original = frame.loc[(frame["user_id"] == row["user_id"])
                         & (frame["item_id"] == row["item_id"])].index[0]
    log.warning("%s: %d row(s) repeat a (userID, itemID) pair of their split at another time "
                "and are dropped, the first in file order kept (first: line %d repeats line "
                "%d, userID %d, itemID %d)", path, int(later.sum()), row.name + 2,
                original + 2, row["user_id"], row["item_id"])
    return frame.loc[~later].reset_index(drop=True), int(later.sum())


def _vocabulary(mapping: Path, raw_column: str, id_column: str, ids: pd.Series) -> np.ndarray:
    """The raw names by dense id: from the mapping file, else the ids' own names."""
    if mapping.exists():
        return _read_mapping(mapping, raw_column, id_column)
    n_ids = int(ids.max()) + 1 if len(ids) and ids.max() >= 0 else 0
    return np.array([str(n) for n in range(n_ids)], dtype=object)


def _check_dense(ids: np.ndarray, n_ids: int, column: str, path: Path, mapping: Path) -> None:
    used = np.zeros(n_ids, dtype=bool)
    used[ids] = True
    unused = np.flatnonzero(~used)
    if len(unused):
        of = (f"of {mapping}" if mapping.exists()
              else f"no {mapping.name}: the ids 0..the largest")
        raise ValueError(
            f"{path}: {column} is not dense: {len(unused)} of the ids 0..{n_ids - 1} ({of}) "
            f"never occur in it, e.g. {unused[0]}; every id needs an interaction (MMRec "
            f"counts ids as the largest + 1): remove the unused ids and renumber, or build "
            f"the folder from the raw pairs with `crane preprocess`")


def _write_tsv(path: Path, frame: pd.DataFrame) -> None:
    with files.atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, lineterminator="\n")


def _read_tsv(path: Path, required: list[str]) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"MMRec file not found: {path}")
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{path}: the file is empty ({path.stat().st_size} bytes), not even the header "
            f"{required}: copy the file again from a complete MMRec folder "
            f"(`crane acquire`), or rebuild the folder") from None
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
