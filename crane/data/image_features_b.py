"""The 2014 release's `image_features_<Cat>.b`: records of a 10-byte ASIN + 4096 float32 (LE).

The one module that knows the layout: the feature extractor reads it, the demo generator and
tests write it. Electronics' file is tens of GB, so it is streamed in chunks of records and
only the wanted vectors are kept. When an ASIN occurs twice the later record wins, as the
dict MMRec fills in file order does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from crane import files

ASIN_BYTES = 10
FEATURE_DIM = 4096
DEFAULT_CHUNK_RECORDS = 2048  # 2048 x 16 KiB = 32 MiB per read


def record_dtype(dim: int = FEATURE_DIM) -> np.dtype:
    return np.dtype([("asin", f"S{ASIN_BYTES}"), ("vector", "<f4", (dim,))])


def count_records(path: str | os.PathLike, dim: int = FEATURE_DIM) -> int:
    """Number of whole records; a trailing partial record is an error naming its offset."""
    record_size = record_dtype(dim).itemsize
    size = os.path.getsize(path)
    whole, extra = divmod(size, record_size)
    if extra:
        raise ValueError(
            f"{path}: truncated record at byte offset {whole * record_size} (only {extra} of "
            f"{record_size} bytes; file size {size}); re-download the file")
    return whole


def iter_records(path: str | os.PathLike, dim: int = FEATURE_DIM,
                 chunk_records: int = DEFAULT_CHUNK_RECORDS, digest: Any = None
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (asins as str array, float32 vectors) chunk by chunk, never the whole file.

    `digest` (a hashlib object) is fed every byte read: the file's hash in the same pass.
    """
    dtype = record_dtype(dim)
    total = count_records(path, dim)
    read = 0
    with open(path, "rb") as handle:
        while read < total:
            want = min(chunk_records, total - read)
            data = handle.read(want * dtype.itemsize)
            if len(data) != want * dtype.itemsize:  # the file shrank while we read it
                raise ValueError(f"{path}: truncated record at byte offset "
                                 f"{(read + len(data) // dtype.itemsize) * dtype.itemsize}")
            if digest is not None:
                digest.update(data)
            chunk = np.frombuffer(data, dtype=dtype)
            read += want
            asins = np.char.strip(np.char.decode(chunk["asin"], "ascii", errors="replace"))
            yield asins, np.ascontiguousarray(chunk["vector"], dtype=np.float32)


def read_aligned(path: str | os.PathLike, asins: Sequence[str],
                         dim: int = FEATURE_DIM, chunk_records: int = DEFAULT_CHUNK_RECORDS,
                         digest: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(features (len(asins), dim) with zero rows where absent, present mask), in `asins` order."""
    row_of = pd.Index(np.asarray(asins, dtype=str))
    if not row_of.is_unique:
        raise ValueError(f"asins aligned with {path} are not unique")
    features = np.zeros((len(row_of), dim), dtype=np.float32)
    present = np.zeros(len(row_of), dtype=bool)
    for chunk_asins, vectors in iter_records(path, dim, chunk_records, digest):
        rows = row_of.get_indexer(chunk_asins)
        keep = rows >= 0
        # plain fancy assignment: with a repeated row the last value is stored
        features[rows[keep]] = vectors[keep]
        present[rows[keep]] = True
    return features, present


def write_image_features_b(path: str | os.PathLike, asins: Sequence[str],
                          vectors: np.ndarray) -> None:
    """Write records in the same format (tests and generated demo data), atomically."""
    vectors = np.asarray(vectors, dtype="<f4")
    if vectors.ndim != 2 or vectors.shape[0] != len(asins):
        raise ValueError(f"{len(asins)} asins for vectors of shape {vectors.shape}")
    records = np.empty(len(asins), dtype=record_dtype(vectors.shape[1]))
    encoded = [str(a).encode("ascii") for a in asins]
    too_long = [a for a in encoded if len(a) > ASIN_BYTES]
    if too_long:
        raise ValueError(f"ASIN(s) longer than {ASIN_BYTES} bytes: {too_long[:3]}")
    records["asin"] = [a.ljust(ASIN_BYTES) for a in encoded]
    records["vector"] = vectors
    with files.atomic_path(path) as tmp:
        records.tofile(tmp)



def read_image_features_b(path: str | os.PathLike, asins: Sequence[str] | None = None,
                          dim: int = FEATURE_DIM) -> tuple[np.ndarray, np.ndarray]:
    """(asins, float32 vectors) of the file's distinct ASINs in first-seen order, optionally
    only those in `asins`; a repeated ASIN keeps its later record."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image feature file not found: {path}")
    wanted = None if asins is None else set(map(str, asins))
    names, vectors = [], []
    for chunk_asins, chunk_vectors in iter_records(path, dim):
        keep = np.ones(len(chunk_asins), bool) if wanted is None else np.isin(chunk_asins, list(wanted))
        names.append(chunk_asins[keep])
        vectors.append(chunk_vectors[keep])
    names_all = np.concatenate(names) if names else np.zeros(0, dtype=str)
    vectors_all = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
    order, first = np.unique(names_all, return_index=True)
    last = len(names_all) - 1 - np.unique(names_all[::-1], return_index=True)[1]
    by_first_seen = np.argsort(first)
    return order[by_first_seen], vectors_all[last[by_first_seen]]
