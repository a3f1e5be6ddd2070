"""A local CSV (optionally gzipped) of user,item pairs with a header row.

Options: `path`; `user_column` (default reviewerID), `item_column` (default asin), and
optional `rating_column`, `timestamp_column` (unix seconds). The file is copied into the raw
folder so that the raw folder alone reproduces the dataset. No item metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crane.data import parse
from crane.data.sources._common import (
    check_options, copy_local, items_table, normalise_interactions, raw_file, require_option)

NAME = "pairs_csv"
OPTIONS = {"path", "user_column", "item_column", "rating_column", "timestamp_column"}


def acquire(spec: dict[str, Any], raw_dir: Path, progress: bool = True) -> dict[str, dict]:
    check_options(spec, OPTIONS, NAME)
    path = Path(require_option(spec, "path", NAME))
    return {path.name: copy_local(path, raw_dir)}


def load_interactions(spec: dict[str, Any], raw_dir: Path,
                      max_malformed_share: float) -> pd.DataFrame:
    path = raw_file(raw_dir, Path(require_option(spec, "path", NAME)).name)
    columns = {spec.get("user_column", "reviewerID"): "user",
               spec.get("item_column", "asin"): "item"}
    numeric = []
    for option, name in (("rating_column", "rating"), ("timestamp_column", "timestamp")):
        if spec.get(option):
            columns[spec[option]] = name
            numeric.append(name)
    frame = parse.read_csv_table(path, columns, header=True, numeric=numeric,
                                 max_malformed_share=max_malformed_share)
    return normalise_interactions(frame)


def load_items(spec: dict[str, Any], raw_dir: Path, asins: np.ndarray,
               max_malformed_share: float) -> pd.DataFrame:
    return items_table(asins, None)
