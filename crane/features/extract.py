"""Feature extraction for one (dataset, modality, encoder): encode, impute, write the folder.

An encoder type is a function `(items, raw_dir, cfg, device, modality) -> EncodedItems`; this module
picks it from the encoder config's `type`, fills the rows it could not describe with the mean
of the others (recorded item by item in the manifest), runs the checks of
crane/features/checks.py (share of items without input, degenerate matrix) and writes
`features.npy` + `manifest.json` atomically.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

import crane
from crane import files
from crane.device import resolve_device
from crane.features.checks import check_missing_share, check_not_degenerate, max_missing_share
from crane.features.encoded import EncodedItems
from crane.features.impute import impute_with_mean
from crane.features.store import FeatureSet, check_feature_matrix, write_feature_dir
from crane.modalities import MODALITIES

log = logging.getLogger(__name__)

ITEM_COLUMNS = ["item_id", "asin", "title", "brand", "categories", "description", "image_url"]


EncoderFn = Callable[[pd.DataFrame, Path, dict[str, Any], str, str], EncodedItems]


def _encoder_types() -> dict[str, tuple[EncoderFn, tuple[str, ...]]]:
    """type -> (function, modalities it serves); imported lazily (torch-heavy modules)."""
    from crane.features import image_clip, image_histogram, legacy, mmrec, text

    return {
        "sentence_transformers": (text.encode_item_text, ("text",)),
        "open_clip": (image_clip.encode_item_images_clip, ("image",)),
        "color_histogram": (image_histogram.encode_item_images_histogram, ("image",)),
        "legacy_image_features": (legacy.encode_item_images_legacy, ("image",)),
        "mmrec_npy": (mmrec.encode_item_mmrec_npy, MODALITIES),
    }


def read_items(data_dir: str | os.PathLike) -> pd.DataFrame:
    """`items.parquet` of a processed folder, checked: all columns, item_id = 0..n-1 in order."""
    path = Path(data_dir) / "items.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (is {data_dir} a processed data folder?)")
    items = pd.read_parquet(path)
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    ids = items["item_id"].to_numpy()
    if not np.array_equal(ids, np.arange(len(items))):
        raise ValueError(f"{path}: item_id must be 0..{len(items) - 1} in row order "
                         "(feature rows are aligned with item ids)")
    return items.reset_index(drop=True)


def extract_features(data_dir: str | os.PathLike, raw_dir: str | os.PathLike, modality: str,
                     encoder_name: str, encoder_cfg: dict[str, Any],
                     out_dir: str | os.PathLike, device: str = "cpu") -> FeatureSet:
    """Encode every item of `data_dir` with one encoder and write `out_dir`.

    `encoder_cfg` is the config's `encoders.<encoder_name>` mapping (its `type` picks the
    encoder); `raw_dir` holds the image cache and raw feature files.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    encoder_type = encoder_cfg.get("type")
    types = _encoder_types()
    if encoder_type not in types:
        raise ValueError(f"encoders.{encoder_name}.type: {encoder_type!r} is not one of "
                         f"{sorted(types)}")
    encode, modalities = types[encoder_type]
    if modality not in modalities:
        raise ValueError(f"encoders.{encoder_name}: type {encoder_type} makes "
                         f"{'/'.join(modalities)} features, not {modality}")
    missing_limit = max_missing_share(encoder_cfg, encoder_name)
    device = str(resolve_device(device))
    items = read_items(data_dir)
    if items.empty:
        raise ValueError(f"{Path(data_dir) / 'items.parquet'}: no items to encode")
    started = time.perf_counter()
    encoded = encode(items, Path(raw_dir), dict(encoder_cfg), device, modality)
    log.info("%s/%s: encoded %d items in %.1fs", modality, encoder_name, len(items),
             time.perf_counter() - started)

    what = f"{modality} features ({encoder_name}) of {data_dir}"
    features = np.ascontiguousarray(encoded.features, dtype=np.float32)
    if features.shape[0] != len(items):
        raise ValueError(f"{what}: {features.shape[0]} rows for {len(items)} items")
    present = np.asarray(encoded.present, dtype=bool)
    asins = items["asin"].astype(str).to_numpy()
    check_missing_share(present, encoded.problems, asins, missing_limit, str(data_dir),
                        modality, encoder_name)
    features = impute_with_mean(features, present, what)
    imputed_ids = np.flatnonzero(~present)
    if len(imputed_ids):
        log.warning("%s: %d of %d items imputed with the mean vector", what, len(imputed_ids),
                    len(items))
    features = check_feature_matrix(features, what)  # NaN/inf named before the checks below
    diversity = check_not_degenerate(features, present, what)
    manifest = {
        "modality": modality,
        "encoder": encoder_name,
        "encoder_config": dict(encoder_cfg),
        **encoded.info,
        "imputed": {
            "method": "mean of the other items' vectors",
            "count": int(len(imputed_ids)),
            "share": len(imputed_ids) / len(items),
            "items": [{"item_id": int(i), "asin": asins[i],
                       "reason": encoded.problems.get(int(i), "no vector")}
                      for i in imputed_ids],
        },
        "distinct_rows": diversity["distinct_rows"],
        "checks": {
            "max_missing_share": missing_limit,
            "degenerate": diversity,
        },
        "inputs": {"items.parquet": files.sha256_file(Path(data_dir) / "items.parquet")},
        "device": device,
        "crane_version": crane.__version__,
        "torch_version": importlib.metadata.version("torch"),
    }
    return write_feature_dir(out_dir, features, manifest)
