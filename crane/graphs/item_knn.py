"""Item-item kNN graphs from item features: blockwise (never a dense N x N), cached by hash.

The top-k search walks the upper triangle of the cosine matrix in `block` x `block` tiles:
one float32 matmul per tile serves both the tile's rows and (transposed) its columns, which
halves the work of a row-by-row scan, and a running top-k per row is merged tile by tile.

The cache key is the feature matrix's content hash plus k, so a changed feature file can never
silently reuse a stale graph. The workflow's graph jobs write the cache (`build_neighbour_cache`,
`crane graphs`); training only reads it (`cached_neighbours`), and computes in memory a graph
that is not there, so a training job never writes into another job's output folder. Both paths
run the same `top_k_cosine_neighbours`, so a cached graph and an in-memory one are the same
bits on the same device (tests/features/test_features_knn.py).

Models derive the normalisation they need from the top-k neighbour indices and cosine
similarities:

- `knn_mean_graph`: every row holds k entries of 1/k (FREEDOM's D^-1/2 A D^-1/2 of a
  binary kNN graph whose rows each sum to k, as in MMRec).
- `knn_weighted_graph`: LATTICE's top-k similarity graph, D^-1/2 S D^-1/2 by row sums.
"""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from crane import files
from crane.graphs.plan import MEAN_COSINE, KnnGraph

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 2048  # tile side: a 2048 x 2048 float32 tile is 16 MiB


@dataclass(frozen=True)
class KnnNeighbours:
    """Top-k neighbours of every item (the item itself usually among them, as in MMRec)."""

    indices: np.ndarray  # (N, k) int64, most similar first
    similarities: np.ndarray  # (N, k) float32, cosine


def top_k_cosine_neighbours(features: np.ndarray | torch.Tensor, k: int,
                            chunk_rows: int = DEFAULT_CHUNK_ROWS,
                            device: torch.device | str = "cpu") -> KnnNeighbours:
    """Top-k cosine neighbours of every row (itself included), `chunk_rows`-sized tiles."""
    with torch.no_grad():
        if torch.is_tensor(features):
            x = features.detach()
        else:
            with warnings.catch_warnings():  # a read-only memmap is fine: x is never written
                warnings.simplefilter("ignore", UserWarning)
                x = torch.from_numpy(np.asarray(features))
        x = x.to(device=device, dtype=torch.float32)
        if x.ndim != 2:
            raise ValueError(f"knn: features must be (items, dim), got shape {tuple(x.shape)}")
        n = x.shape[0]
        if not 0 < k <= n:
            raise ValueError(f"knn k={k} must be between 1 and the number of items ({n})")
        if chunk_rows < 1:
            raise ValueError(f"knn: chunk_rows must be >= 1, got {chunk_rows}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("knn: features contain NaN or inf")
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        best_values = torch.full((n, k), -float("inf"), device=x.device)
        best_indices = torch.zeros((n, k), dtype=torch.int64, device=x.device)
        starts = range(0, n, chunk_rows)
        for row_start in starts:
            rows = x[row_start:row_start + chunk_rows]
            for col_start in (s for s in starts if s >= row_start):
                tile = rows @ x[col_start:col_start + chunk_rows].T
                _merge_tile(best_values, best_indices, row_start, tile, col_start, k)
                if col_start != row_start:  # the mirrored tile: same numbers, transposed
                    _merge_tile(best_values, best_indices, col_start, tile.T.contiguous(),
                                row_start, k)
        return KnnNeighbours(best_indices.cpu().numpy(), best_values.cpu().numpy())


def _merge_tile(best_values: torch.Tensor, best_indices: torch.Tensor, row_start: int,
                tile: torch.Tensor, col_start: int, k: int) -> None:
    """Fold one tile's candidates into the running top-k of rows row_start.."""
    stop = row_start + tile.shape[0]
    values, indices = torch.topk(tile, min(k, tile.shape[1]), dim=1)
    values = torch.cat([best_values[row_start:stop], values], dim=1)
    indices = torch.cat([best_indices[row_start:stop], indices + col_start], dim=1)
    top_values, position = torch.topk(values, k, dim=1)
    best_values[row_start:stop] = top_values
    best_indices[row_start:stop] = torch.gather(indices, 1, position)


def graph_cache_key(content_hash: str, k: int) -> str:
    return f"knn_{content_hash[:20]}_k{k}"


def graph_cache_path(cache_dir: str | os.PathLike, content_hash: str, k: int) -> Path:
    return Path(cache_dir) / f"{graph_cache_key(content_hash, k)}.npz"


def mean_cosine_features(features: dict[str, np.ndarray]) -> np.ndarray:
    """Rows whose cosine similarity is the mean of the per-modality cosines.

    cos([a/|a|, b/|b|], [c/|c|, d/|d|]) = (cos(a, c) + cos(b, d)) / 2 exactly; the modalities
    are concatenated in the order given (ItemKNN-CBF's mean-cosine graph).
    """
    parts = []
    for matrix in features.values():
        matrix = np.asarray(matrix, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        parts.append(matrix / np.maximum(norms, 1e-12))
    return np.concatenate(parts, axis=1) / np.float32(np.sqrt(len(parts)))


def mean_cosine_content_hash(feature_hashes: dict[str, str | None]) -> str | None:
    """The cache key of `mean_cosine_features` of feature matrices with these content hashes
    (modality -> hash, in concatenation order); None when one is unknown."""
    if any(h is None for h in feature_hashes.values()):
        return None
    return files.sha256_json({"itemknn_cbf_mean_cosine": dict(feature_hashes)})


def cached_neighbours(features: np.ndarray, k: int, cache_dir: str | os.PathLike | None,
                      content_hash: str | None = None,
                      device: torch.device | str = "cpu",
                      chunk_rows: int = DEFAULT_CHUNK_ROWS) -> KnnNeighbours:
    """`top_k_cosine_neighbours`, read from the cache folder when the graph is there.

    Read-only: nothing is written. Without a cache folder, or when the folder holds no valid
    graph for (content hash, k), the graph is computed in memory (a warning names the missing
    file: in the workflow the graph jobs build every graph a run reads). Pass the feature
    manifest's `content_hash` (crane.files.sha256_array of the matrix) to skip re-hashing.
    """
    if cache_dir is None:
        return top_k_cosine_neighbours(features, k, chunk_rows, device)
    features = np.asarray(features)
    content_hash = content_hash or files.sha256_array(np.asarray(features, dtype=np.float32))
    path = graph_cache_path(cache_dir, content_hash, k)
    if path.exists():
        stored = _read_cache(path, content_hash, (features.shape[0], k))
        if stored is not None:
            return stored
    log.warning("%s: no kNN graph for k=%d in the cache; computing it in memory", path, k)
    return top_k_cosine_neighbours(features, k, chunk_rows, device)


def build_neighbour_cache(features: np.ndarray, k: int, cache_dir: str | os.PathLike,
                          content_hash: str | None = None,
                          device: torch.device | str = "cpu",
                          chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Path:
    """Write the top-k graph of `features` into the cache folder; return its file.

    A valid file for (content hash, k) is kept as it is; one that does not hold an (N, k)
    result for that hash is rebuilt, not trusted.
    """
    features = np.asarray(features)
    content_hash = content_hash or files.sha256_array(np.asarray(features, dtype=np.float32))
    path = graph_cache_path(cache_dir, content_hash, k)
    if path.exists() and _read_cache(path, content_hash, (features.shape[0], k)) is not None:
        return path
    neighbours = top_k_cosine_neighbours(features, k, chunk_rows, device)
    with files.atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, indices=neighbours.indices, similarities=neighbours.similarities,
                 content_hash=np.array(content_hash))
    return path


def _read_cache(path: Path, content_hash: str, shape: tuple[int, int]) -> KnnNeighbours | None:
    try:
        with np.load(path) as stored:
            indices, sims = stored["indices"], stored["similarities"]
            stored_hash = str(stored["content_hash"]) if "content_hash" in stored else None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        log.warning("%s: unreadable kNN cache (%s); rebuilding", path, error)
        return None
    if indices.shape != shape or sims.shape != shape or stored_hash not in (None, content_hash):
        log.warning("%s: cache holds %s for hash %s, expected %s for %s; rebuilding", path,
                    indices.shape, stored_hash, shape, content_hash)
        return None
    return KnnNeighbours(indices.astype(np.int64, copy=False),
                         sims.astype(np.float32, copy=False))


def knn_mean_graph(neighbours: KnnNeighbours, n_items: int) -> sp.csr_matrix:
    """Binary kNN graph, row-normalised to 1/k (FREEDOM / MMRec's normalised kNN adjacency)."""
    n, k = neighbours.indices.shape
    rows = np.repeat(np.arange(n), k)
    data = np.full(n * k, 1.0 / k, dtype=np.float32)
    return sp.csr_matrix((data, (rows, neighbours.indices.ravel())), shape=(n_items, n_items))


def knn_weighted_graph(neighbours: KnnNeighbours, n_items: int) -> sp.csr_matrix:
    """Top-k cosine graph S with D^-1/2 S D^-1/2, D the row sums of S (LATTICE in MMRec).

    As in MMRec, a row whose sum gives no finite D^-1/2 (zero, or negative) gets 0.
    """
    n, k = neighbours.indices.shape
    rows = np.repeat(np.arange(n), k)
    values = neighbours.similarities.ravel().astype(np.float32)
    graph = sp.csr_matrix((values, (rows, neighbours.indices.ravel())), shape=(n_items, n_items))
    row_sum = np.asarray(graph.sum(axis=1), dtype=np.float64).ravel()
    inv_sqrt = np.zeros_like(row_sum)
    positive = row_sum > 0
    inv_sqrt[positive] = row_sum[positive] ** -0.5
    return (sp.diags(inv_sqrt) @ graph @ sp.diags(inv_sqrt)).tocsr().astype(np.float32)


def build_graph(graph: KnnGraph, features: dict[str, tuple[np.ndarray, str]],
                cache_dir: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """Write one planned graph (crane/graphs/plan.py) into the cache folder.

    `features` maps each modality to (matrix, content hash). A modality's graph is the top-k of
    its matrix; the mean-cosine graph combines every modality given, in sorted order (image,
    text: the order in which ItemKNN-CBF concatenates them). Returns the graph's record.
    """
    if graph.source == MEAN_COSINE:
        modalities = sorted(features)
        matrix = mean_cosine_features({m: features[m][0] for m in modalities})
        content_hash = mean_cosine_content_hash({m: features[m][1] for m in modalities})
    elif graph.source in features:
        modalities = [graph.source]
        matrix, content_hash = features[graph.source]
    else:
        raise ValueError(f"kNN graph {graph.name}: no {graph.source!r} features given "
                         f"(have {sorted(features)})")
    path = build_neighbour_cache(matrix, graph.k, cache_dir, content_hash, device=device)
    return {"graph": graph.name, "k": graph.k, "modalities": modalities, "cache": str(path),
            "content_hash": content_hash}
