"""Raw files -> processed dataset folder: clean, k-core, dense ids, split, write.

`prepare_dataset` is the whole step; the folder it writes follows crane/data/processed.py
and also holds the same split in MMRec's format. A split left with an empty part (train,
validation or test) stops the step with an error naming the dataset, the empty part and what
to change: training could not select or test on it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crane import files
from crane.data import processed
from crane.data.ids import dense_ids
from crane.data.kcore import EmptyDatasetError, KCore, apply_kcore, drop_duplicates, drop_missing
from crane.data.mmrec_format import MMRecFolder, write_mmrec
from crane.data.parse import DEFAULT_MAX_MALFORMED_SHARE
from crane.data.sources import source_module
from crane.data.sources._common import SOURCE_STATS
from crane.data.split import split_interactions
from crane.data.stats import compute_stats

log = logging.getLogger(__name__)

DEFAULT_SPLIT = {"method": "mmrec_random", "seed": 2024}
ITEMS_SCHEMA = pa.schema([
    ("item_id", pa.int64()), ("asin", pa.string()), ("title", pa.string()),
    ("brand", pa.string()), ("categories", pa.list_(pa.string())),
    ("description", pa.string()), ("image_url", pa.string()), ("text", pa.string()),
])


def prepare_dataset(name: str, spec: dict[str, Any], raw_dir: str | Path,
                    out_dir: str | Path) -> dict[str, Any]:
    """Build `out_dir` from the raw files of dataset `name`; return its stats.

    spec is the dataset's config block (`datasets.<name>`): source, kcore, split,
    max_malformed_share. The folder is written whole or not at all.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    module = source_module(spec.get("source"))
    source_spec = dict(spec["source"])
    max_share = float(spec.get("max_malformed_share", DEFAULT_MAX_MALFORMED_SHARE))
    loaded = module.load_interactions(source_spec, raw_dir, max_share)

    if isinstance(loaded, MMRecFolder):
        # An MMRec folder is taken as is: its ids and split define the dataset.
        interactions, users, items = loaded.interactions, loaded.users, loaded.items
        kcore_info: dict | None = None
        split_spec: dict[str, Any] = {"method": "given (mmrec folder)"}
        repeated_pairs_dropped = loaded.repeated_pairs_dropped
        origin = loaded.path or raw_dir
    else:
        kcore = KCore.from_spec(spec.get("kcore", 5))
        frame = drop_missing(loaded)
        n_rows = len(frame)
        frame = drop_duplicates(frame)
        # plus the repeats a source already dropped by its own policy (`table`: duplicates)
        repeated_pairs_dropped = (n_rows - len(frame)
                                  + int(loaded.attrs.get(SOURCE_STATS, {}).get(
                                      "repeated_pairs_dropped", 0)))
        origin = raw_dir
        if frame.empty:
            raise EmptyDatasetError(f"empty after filtering: {name} has no interaction with "
                                    f"both a user and an item in {raw_dir}")
        frame = apply_kcore(frame, kcore, name)
        frame, users, items = dense_ids(frame)
        split_spec = dict(spec.get("split") or DEFAULT_SPLIT)
        interactions = split_interactions(frame, split_spec)
        interactions, users, items = _compact_ids(interactions, users, items)
        kcore_info = kcore.as_json()
    check_splits_not_empty(name, interactions["split"].to_numpy(), split_spec, origin)

    items_frame = module.load_items(source_spec, raw_dir, items, max_share)
    result = processed.Interactions(
        n_users=len(users), n_items=len(items),
        user=interactions["user_id"].to_numpy(np.int64),
        item=interactions["item_id"].to_numpy(np.int64),
        split=interactions["split"].to_numpy(np.int8),
        rating=interactions["rating"].to_numpy(np.float32),
        timestamp=interactions["timestamp"].to_numpy(np.int64))
    stats = {**compute_stats(result), "dataset": name, "kcore": kcore_info,
             "split": split_spec, "source": source_spec,
             **items_frame.attrs.get(SOURCE_STATS, {}),
             "repeated_pairs_dropped": repeated_pairs_dropped}

    with files.atomic_dir(out_dir) as tmp:
        processed.save_interactions(tmp, result)
        write_items(tmp / "items.parquet", items_frame)
        write_mmrec(tmp, name, interactions, users, items)
        files.write_json(tmp / "stats.json", stats)
    log.info("%s: %d users, %d items, %d interactions (train %d / valid %d / test %d) -> %s",
             name, stats["users"], stats["items"], stats["interactions"], stats["train"],
             stats["valid"], stats["test"], out_dir)
    return stats


_PART_NAMES = {processed.TRAIN: "train", processed.VALID: "validation",
               processed.TEST: "test"}


def check_splits_not_empty(name: str, split: np.ndarray, split_spec: dict[str, Any],
                           origin: str | Path) -> None:
    """Raise EmptyDatasetError naming the empty part(s) of the split and what to change."""
    counts = np.bincount(split.astype(np.int64), minlength=3)
    empty = [part for part in _PART_NAMES if counts[part] == 0]
    if not empty:
        return
    names = [_PART_NAMES[part] for part in empty]
    what = (f"the {names[0]} split is" if len(names) == 1
            else f"the {', '.join(names[:-1])} and {names[-1]} splits are")
    raise EmptyDatasetError(
        f"dataset {name}: {what} empty (train {counts[0]} / validation {counts[1]} / test "
        f"{counts[2]} interactions from {origin}, split {split_spec}); "
        f"{_empty_split_advice(empty, split_spec, origin, len(split))}")


def _empty_split_advice(empty: list[int], split_spec: dict[str, Any], origin: str | Path,
                        n_rows: int) -> str:
    method = split_spec.get("method")
    if method == "given (mmrec folder)":
        if n_rows == 0:
            return f"{origin} has no interaction rows (only a header): use a complete folder"
        labels = " or ".join(str(part) for part in empty)
        return (f"{origin} has no row with x_label {labels} (0 train, 1 validation, 2 test): "
                f"fix the folder's split, or import its pairs with a source that splits")
    if method == "time_cut":
        if processed.TRAIN in empty:
            return ("no user has an interaction before valid_from (validation and test rows "
                    "of users without training data are dropped): move split.valid_from later")
        moves = {processed.VALID: "move split.valid_from earlier (validation is valid_from "
                                  "up to test_from)",
                 processed.TEST: "move split.test_from earlier (test is test_from onwards)"}
        return ("; ".join(moves[part] for part in empty)
                + "; only users with earlier (training) interactions are kept there")
    return (f"too few interactions per user for split {method} (a user needs 3 to be in "
            f"train, validation and test): raise kcore, or use more data")


def write_items(path: Path, items: pd.DataFrame) -> None:
    # An explicit schema: `categories` stays list<string> even when every list is empty.
    table = pa.Table.from_pandas(items, schema=ITEMS_SCHEMA, preserve_index=False)
    with files.atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _compact_ids(frame: pd.DataFrame, users: np.ndarray, items: np.ndarray
                 ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Renumber densely when the split dropped every row of some user or item.

    The renumbering is monotone, so ids stay sorted by raw id / ASIN.
    """
    frame = frame.copy()
    vocabularies = []
    for column, vocabulary in (("user_id", users), ("item_id", items)):
        present = np.unique(frame[column].to_numpy())
        if len(present) < len(vocabulary):
            log.info("%d %ss lost every interaction in the split and are dropped",
                     len(vocabulary) - len(present), column[:-3])
            frame[column] = np.searchsorted(present, frame[column].to_numpy()).astype(np.int64)
            vocabulary = vocabulary[present]
        vocabularies.append(vocabulary)
    return frame, vocabularies[0], vocabularies[1]
