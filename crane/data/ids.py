"""Dense 0-based ids: users sorted by raw id string, items by ASIN (MMRec's convention)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def dense_ids(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Add `user_id`, `item_id` to a frame with string `user`, `item` columns.

    Returns (frame with ids, user raw ids by id, item ASINs by id). Sorting is by code point
    (Python's `sorted()`, and MMRec's preprocessing).
    """
    result = frame.copy()
    vocabularies = []
    for column in ("user", "item"):
        codes, uniques = pd.factorize(frame[column].astype(str), sort=True)
        result[f"{column}_id"] = codes.astype(np.int64)
        vocabularies.append(np.asarray(uniques, dtype=object))
    return result, vocabularies[0], vocabularies[1]
