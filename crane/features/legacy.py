"""The `legacy_image_features` encoder: the literature's 4096-d vectors of
`image_features_<Cat>.b` (format in crane/data/image_features_b.py), aligned to item ids.
Items without a vector get the mean of the others (MMRec's rule) and are listed in the
manifest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crane.data.image_features_b import ASIN_BYTES, FEATURE_DIM, read_aligned
from crane.features.encoded import EncodedItems, cfg_int

def find_legacy_file(raw_dir: Path, cfg: dict[str, Any]) -> Path:
    """`file:` from the config (relative to the raw folder), else the one image_features_*.b."""
    if cfg.get("file"):
        path = raw_dir / cfg["file"]
        if not path.is_file():
            raise FileNotFoundError(f"legacy_image_features: {path} not found")
        return path
    candidates = sorted(raw_dir.glob("image_features_*.b"))
    if len(candidates) != 1:
        raise FileNotFoundError(
            f"{raw_dir}: expected one image_features_<Cat>.b, found "
            f"{[c.name for c in candidates] or 'none'} (set `file:` in the encoder config)")
    return candidates[0]


def encode_item_images_legacy(items: pd.DataFrame, raw_dir: Path, cfg: dict[str, Any],
                              device: str, modality: str) -> EncodedItems:
    """The `legacy_image_features` encoder type."""
    path = find_legacy_file(raw_dir, cfg)
    dim = cfg_int(cfg, "dim", FEATURE_DIM, 1, "legacy_image_features")
    digest = hashlib.sha256()
    features, present = read_aligned(path, items["asin"].astype(str).tolist(), dim,
                                             digest=digest)
    problems = {int(i): f"missing: no record in {path.name}" for i in np.flatnonzero(~present)}
    info = {
        "weights_hash": None,
        "weights_source": path.name,
        "inputs_sha256": {path.name: digest.hexdigest()},
        "preprocessing": f"records of {ASIN_BYTES}-byte ASIN + {dim} little-endian float32, "
                         "taken as is; later duplicate ASIN wins",
    }
    return EncodedItems(features, present, problems, info)
