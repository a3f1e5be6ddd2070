"""An MMRec dataset folder's precomputed features (`image_feat.npy`, `text_feat.npy`).

MMRec's rows follow its item ids, which the MMRec source keeps as ours; the matrix is taken
as is (cast to float32), after checking it has one row per item, except that an all-zero row
counts as an item without a vector: it is imputed with the mean and counted like a missing
image (a zero row has no direction, so its cosine to every item is undefined).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crane import files
from crane.features.encoded import EncodedItems


def encode_item_mmrec_npy(items: pd.DataFrame, raw_dir: Path, cfg: dict[str, Any],
                          device: str, modality: str) -> EncodedItems:
    """The `mmrec_npy` encoder type: `raw/<modality>_feat.npy`, or `file:` from the config."""
    name = cfg.get("file") or f"{modality}_feat.npy"
    path = raw_dir / name
    if not path.is_file():
        raise FileNotFoundError(f"mmrec_npy: {path} not found")
    matrix = np.load(path, allow_pickle=False)
    if matrix.ndim != 2 or matrix.shape[0] != len(items):
        raise ValueError(f"{path}: shape {matrix.shape}, expected ({len(items)}, dim): one row "
                         "per item of items.parquet")
    source_dtype = matrix.dtype
    matrix = matrix.astype(np.float32)
    present = matrix.any(axis=1)
    problems = {int(i): f"missing: all-zero row in {name}" for i in np.flatnonzero(~present)}
    info = {
        "weights_hash": None,
        "weights_source": name,
        "inputs_sha256": {name: files.sha256_file(path)},
        "preprocessing": f"MMRec's {name} as is (source dtype {source_dtype}, cast to float32; "
                         "all-zero rows imputed)",
    }
    return EncodedItems(matrix, present, problems, info)
