"""The feature folder: `features.npy` (float32, row i = item_id i) and `manifest.json`.

The manifest's `content_hash` (crane.files.sha256_array of the matrix) is the key of every
cache derived from the features (kNN graphs), so reading verifies it against the file: a
features.npy edited behind the manifest's back is an error, never a silently stale cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crane import files

FEATURES_FILE = "features.npy"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class FeatureSet:
    """A feature matrix with the manifest that says what made it."""

    features: np.ndarray  # float32 (n_items, dim)
    manifest: dict[str, Any]
    path: Path | None = None

    @property
    def content_hash(self) -> str:
        return self.manifest["content_hash"]


def check_feature_matrix(features: np.ndarray, what: str) -> np.ndarray:
    """A 2-d, finite float32 matrix, or a clear error naming `what`."""
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"{what}: expected a non-empty (items, dim) matrix, got shape "
                         f"{features.shape}")
    features = np.ascontiguousarray(features, dtype=np.float32)
    bad_rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if len(bad_rows):
        raise ValueError(f"{what}: {len(bad_rows)} row(s) with NaN/inf values, first rows "
                         f"{bad_rows[:5].tolist()}")
    return features


def write_feature_dir(out_dir: str | os.PathLike, features: np.ndarray,
                      manifest: dict[str, Any]) -> FeatureSet:
    """Write both files at once (atomic folder swap); adds n_items, dim, content_hash."""
    out_dir = Path(out_dir)
    features = check_feature_matrix(features, str(out_dir / FEATURES_FILE))
    manifest = {**manifest, "n_items": int(features.shape[0]), "dim": int(features.shape[1]),
                "dtype": "float32", "content_hash": files.sha256_array(features)}
    with files.atomic_dir(out_dir) as tmp:
        np.save(tmp / FEATURES_FILE, features)
        files.write_json(tmp / MANIFEST_FILE, manifest)
    return FeatureSet(features, manifest, out_dir)


def load_features(feature_dir: str | os.PathLike, verify: bool = True,
                  mmap: bool = False) -> FeatureSet:
    """Read a feature folder; `verify` re-hashes the matrix against the manifest."""
    feature_dir = Path(feature_dir)
    manifest_path = feature_dir / MANIFEST_FILE
    features_path = feature_dir / FEATURES_FILE
    for path in (manifest_path, features_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (is {feature_dir} a feature folder?)")
    manifest = files.read_json(manifest_path)
    if "content_hash" not in manifest:
        raise ValueError(f"{manifest_path}: no content_hash field")
    features = np.load(features_path, mmap_mode="r" if mmap else None)
    if features.dtype != np.float32 or features.ndim != 2:
        raise ValueError(f"{features_path}: expected a 2-d float32 matrix, got "
                         f"{features.dtype} {features.shape}")
    if verify and files.sha256_array(features) != manifest["content_hash"]:
        raise ValueError(f"{features_path}: content does not match content_hash in "
                         f"{manifest_path} (file changed after extraction? re-run features)")
    return FeatureSet(features, manifest, feature_dir)
