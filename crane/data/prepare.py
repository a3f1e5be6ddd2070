"""Raw files -> processed dataset folder: clean, k-core, dense ids, split, write.

`prepare_dataset` is the whole step; the folder it writes follows crane/data/processed.py
and also holds the same split in MMRec's format.
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
from crane.data.split import split_interactions
from crane.data.stats import compute_stats

log = logging.getLogger(__name__)

DEFAULT_SPLIT = {"method": "mmrec_random", "seed": 2024}
ITEMS_SCHEMA = pa.schema([
    ("item_id", pa.int64()), ("asin", pa.string()), ("title", pa.string()),
    ("brand", pa.string()), ("categories", pa.list_(pa.string())),
    ("description", pa.string()), ("image_url", pa.string()),
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
    else:
        kcore = KCore.from_spec(spec.get("kcore", 5))
        frame = drop_duplicates(drop_missing(loaded))
        if frame.empty:
            raise EmptyDatasetError(f"empty after filtering: {name} has no interaction with "
                                    f"both a user and an item in {raw_dir}")
        frame = apply_kcore(frame, kcore, name)
        frame, users, items = dense_ids(frame)
        split_spec = dict(spec.get("split") or DEFAULT_SPLIT)
        interactions = split_interactions(frame, split_spec)
        interactions, users, items = _compact_ids(interactions, users, items)
        kcore_info = kcore.as_json()

    items_frame = module.load_items(source_spec, raw_dir, items, max_share)
    result = processed.Interactions(
        n_users=len(users), n_items=len(items),
        user=interactions["user_id"].to_numpy(np.int64),
        item=interactions["item_id"].to_numpy(np.int64),
        split=interactions["split"].to_numpy(np.int8),
        rating=interactions["rating"].to_numpy(np.float32),
        timestamp=interactions["timestamp"].to_numpy(np.int64))
    stats = {**compute_stats(result), "dataset": name, "kcore": kcore_info,
             "split": split_spec, "source": source_spec}

    with files.atomic_dir(out_dir) as tmp:
        processed.save_interactions(tmp, result)
        write_items(tmp / "items.parquet", items_frame)
        write_mmrec(tmp, name, interactions, users, items)
        files.write_json(tmp / "stats.json", stats)
    log.info("%s: %d users, %d items, %d interactions (train %d / valid %d / test %d) -> %s",
             name, stats["users"], stats["items"], stats["interactions"], stats["train"],
             stats["valid"], stats["test"], out_dir)
    return stats


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
