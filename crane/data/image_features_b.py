"""The 2014 release's `image_features_<Cat>.b`: records of a 10-byte ASIN + 4096 float32 (LE).

Read with a numpy structured dtype (one pass, no per-record Python); the Electronics file is
several GB, so `read_image_features_b` can keep only the wanted ASINs via a memory map.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from crane import files

ASIN_BYTES = 10
FEATURE_DIM = 4096
RECORD_DTYPE = np.dtype([("asin", f"S{ASIN_BYTES}"), ("vector", "<f4", (FEATURE_DIM,))])


def _records(path: Path) -> np.ndarray:
    size = path.stat().st_size
    if size % RECORD_DTYPE.itemsize:
        raise ValueError(f"{path}: {size} bytes is not a whole number of "
                         f"{RECORD_DTYPE.itemsize}-byte records (10-byte ASIN + "
                         f"{FEATURE_DIM} float32): truncated or not a .b feature file")
    if size == 0:
        return np.zeros(0, dtype=RECORD_DTYPE)
    return np.memmap(path, dtype=RECORD_DTYPE, mode="r")


def read_image_features_b(path: str | os.PathLike,
                          asins: list[str] | np.ndarray | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Return (asins as str array, float32 matrix) of the records, optionally only `asins`.

    With `asins`, rows come in the order of first occurrence in the file; callers align
    by ASIN. Duplicate ASINs keep their first record.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image feature file not found: {path}")
    records = _records(path)
    names = np.char.decode(np.asarray(records["asin"]), "ascii", errors="replace")
    names = np.char.strip(names)
    _, first = np.unique(names, return_index=True)
    keep = np.zeros(len(names), dtype=bool)
    keep[first] = True
    if asins is not None:
        keep &= np.isin(names, np.asarray(asins, dtype=str))
    rows = np.flatnonzero(keep)
    vectors = np.asarray(records["vector"][rows], dtype=np.float32)
    return names[rows], vectors


def write_image_features_b(path: str | os.PathLike, asins: list[str],
                           vectors: np.ndarray) -> None:
    """Write records in the release's layout (used by the demo generator and tests)."""
    vectors = np.asarray(vectors, dtype="<f4")
    if vectors.shape != (len(asins), FEATURE_DIM):
        raise ValueError(f"expected vectors of shape ({len(asins)}, {FEATURE_DIM}), "
                         f"got {vectors.shape}")
    bad = [a for a in asins if len(a.encode("ascii")) != ASIN_BYTES]
    if bad:
        raise ValueError(f"ASINs must be {ASIN_BYTES} ASCII characters: {bad[:3]}")
    records = np.zeros(len(asins), dtype=RECORD_DTYPE)
    records["asin"] = np.array(asins, dtype=f"S{ASIN_BYTES}")
    records["vector"] = vectors
    files.write_bytes(path, records.tobytes())
