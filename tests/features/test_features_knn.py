"""Item-item kNN: tiled top-k against dense brute force, graph normalisations, the hash cache
(written by the graph jobs, read-only for training, the same bits either way)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from crane import files
from crane.graphs.item_knn import (KnnNeighbours, build_graph, build_neighbour_cache,
                                   cached_neighbours, graph_cache_path, knn_mean_graph,
                                   knn_weighted_graph, mean_cosine_content_hash,
                                   mean_cosine_features, top_k_cosine_neighbours)
from crane.graphs.plan import MEAN_COSINE, KnnGraph


def brute_force(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    sims = unit.astype(np.float64) @ unit.T.astype(np.float64)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


@pytest.fixture
def features() -> np.ndarray:
    # centred gaussian: cosines spread over [-1, 1], so no near-ties to blur the comparison
    return np.random.default_rng(42).standard_normal((53, 12)).astype(np.float32)


@pytest.mark.parametrize("chunk_rows", [1, 4, 7, 16, 53, 100])
def test_tiled_top_k_matches_dense_brute_force(features, chunk_rows):
    expected_idx, expected_sim = brute_force(features, k=5)
    got = top_k_cosine_neighbours(features, 5, chunk_rows=chunk_rows)
    assert got.indices.shape == (53, 5) and got.indices.dtype == np.int64
    assert got.similarities.dtype == np.float32
    np.testing.assert_array_equal(got.indices, expected_idx)
    np.testing.assert_allclose(got.similarities, expected_sim, atol=1e-5)
    assert (got.indices[:, 0] == np.arange(53)).all()  # the item itself comes first


def test_top_k_accepts_torch_tensors_and_k_equal_to_n(features):
    expected_idx, _ = brute_force(features[:6], k=6)
    got = top_k_cosine_neighbours(torch.from_numpy(features[:6]).requires_grad_(), 6,
                                  chunk_rows=4)
    np.testing.assert_array_equal(got.indices, expected_idx)


def test_top_k_rejects_bad_input(features):
    with pytest.raises(ValueError, match="k=54"):
        top_k_cosine_neighbours(features, 54)
    broken = features.copy()
    broken[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        top_k_cosine_neighbours(broken, 3)


def test_knn_mean_graph_rows_hold_k_entries_of_one_over_k(features):
    neighbours = top_k_cosine_neighbours(features, 4)
    graph = knn_mean_graph(neighbours, 53)
    np.testing.assert_allclose(np.asarray(graph.sum(axis=1)).ravel(), 1.0, rtol=1e-6)
    assert (np.diff(graph.indptr) == 4).all()
    np.testing.assert_allclose(graph.data, 0.25)
    assert graph[7, neighbours.indices[7, 2]] == pytest.approx(0.25)


def test_knn_weighted_graph_is_mmrec_lattice_normalisation(features):
    neighbours = top_k_cosine_neighbours(np.abs(features), 3)  # non-negative: positive sums
    dense = np.zeros((53, 53))
    np.put_along_axis(dense, neighbours.indices, neighbours.similarities, axis=1)
    d = dense.sum(axis=1) ** -0.5
    expected = d[:, None] * dense * d[None, :]
    graph = knn_weighted_graph(neighbours, 53)
    assert graph.dtype == np.float32 and sp.isspmatrix_csr(graph)
    np.testing.assert_allclose(graph.toarray(), expected, rtol=1e-5, atol=1e-7)


def test_knn_weighted_graph_zeroes_rows_without_positive_degree():
    neighbours = KnnNeighbours(np.array([[0, 1], [1, 0]]),
                               np.array([[1.0, 0.5], [-0.2, -0.3]], dtype=np.float32))
    graph = knn_weighted_graph(neighbours, 2).toarray()
    assert np.isfinite(graph).all()
    np.testing.assert_array_equal(graph[1], 0.0)
    assert graph[0, 0] == pytest.approx(1 / 1.5)


def same_bits(a: KnnNeighbours, b: KnnNeighbours) -> bool:
    return (a.indices.dtype == b.indices.dtype and a.similarities.dtype == b.similarities.dtype
            and a.indices.tobytes() == b.indices.tobytes()
            and a.similarities.tobytes() == b.similarities.tobytes())


def test_a_cached_graph_is_the_same_bits_as_one_computed_in_memory(tmp_path, features):
    path = build_neighbour_cache(features, 5, tmp_path, chunk_rows=16)
    content_hash = files.sha256_array(features)
    assert path == graph_cache_path(tmp_path, content_hash, 5)
    assert path.name == f"knn_{content_hash[:20]}_k5.npz"
    in_memory = cached_neighbours(features, 5, None, chunk_rows=16)
    assert same_bits(cached_neighbours(features, 5, tmp_path, content_hash), in_memory)
    assert same_bits(in_memory, top_k_cosine_neighbours(features, 5, chunk_rows=16))


def test_reading_uses_the_cache_file_and_never_writes(tmp_path, features, caplog):
    content_hash = files.sha256_array(features)
    # a miss is computed in memory, with a warning naming the file, and nothing is written
    with caplog.at_level("WARNING", logger="crane.graphs.item_knn"):
        computed = cached_neighbours(features, 5, tmp_path, content_hash)
    assert list(tmp_path.iterdir()) == []
    assert graph_cache_path(tmp_path, content_hash, 5).name in caplog.text
    np.testing.assert_array_equal(computed.indices, brute_force(features, 5)[0])
    # a hit is read: prove it by planting a recognisable (still valid) result
    planted = KnnNeighbours(np.zeros((53, 5), dtype=np.int64), np.ones((53, 5), np.float32))
    np.savez(graph_cache_path(tmp_path, content_hash, 5), indices=planted.indices,
             similarities=planted.similarities, content_hash=np.array(content_hash))
    caplog.clear()
    assert same_bits(cached_neighbours(features, 5, tmp_path, content_hash), planted)
    assert caplog.text == ""
    # other features, other key: not the planted file
    changed = features.copy()
    changed[0, 0] += 1.0
    other = cached_neighbours(changed, 5, tmp_path)
    np.testing.assert_array_equal(other.indices, brute_force(changed, 5)[0])
    assert len(list(tmp_path.iterdir())) == 1


def test_a_cache_of_the_wrong_shape_or_unreadable_is_rebuilt_by_the_writer_only(tmp_path,
                                                                                features):
    content_hash = files.sha256_array(features)
    path = graph_cache_path(tmp_path, content_hash, 5)
    np.savez(path, indices=np.zeros((3, 5), np.int64), similarities=np.zeros((3, 5), np.float32))
    read = cached_neighbours(features, 5, tmp_path, content_hash)
    np.testing.assert_array_equal(read.indices, brute_force(features, 5)[0])
    with np.load(path) as stored:
        assert stored["indices"].shape == (3, 5), "the reader rewrote the cache"
    build_neighbour_cache(features, 5, tmp_path, content_hash)
    with np.load(path) as stored:
        np.testing.assert_array_equal(stored["indices"], brute_force(features, 5)[0])
    path.write_bytes(b"garbage")
    np.testing.assert_array_equal(cached_neighbours(features, 5, tmp_path, content_hash).indices,
                                  brute_force(features, 5)[0])
    build_neighbour_cache(features, 5, tmp_path, content_hash)
    with np.load(path) as stored:
        assert stored["indices"].shape == (53, 5)


def test_mean_cosine_rows_average_the_per_modality_cosines(features):
    other = np.random.default_rng(7).standard_normal((53, 5)).astype(np.float32)
    combined = mean_cosine_features({"image": features, "text": other})
    unit = combined / np.linalg.norm(combined, axis=1, keepdims=True)

    def cosine(m):
        m = m / np.linalg.norm(m, axis=1, keepdims=True)
        return m @ m.T

    np.testing.assert_allclose(unit @ unit.T, (cosine(features) + cosine(other)) / 2, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(combined, axis=1), 1.0, rtol=1e-6)


def test_build_graph_writes_the_planned_graph_and_says_which_file(tmp_path, features):
    other = np.random.default_rng(7).standard_normal((53, 5)).astype(np.float32)
    given = {"text": (other, files.sha256_array(other)),
             "image": (features, files.sha256_array(features))}
    record = build_graph(KnnGraph("text", 4), given, tmp_path)
    assert record == {"graph": "text-k4", "k": 4, "modalities": ["text"],
                      "cache": str(graph_cache_path(tmp_path, given["text"][1], 4)),
                      "content_hash": given["text"][1]}
    mean = build_graph(KnnGraph(MEAN_COSINE, 6), given, tmp_path)
    assert mean["modalities"] == ["image", "text"]  # sorted, whatever order they came in
    assert mean["content_hash"] == mean_cosine_content_hash(
        {"image": given["image"][1], "text": given["text"][1]})
    combined = mean_cosine_features({"image": features, "text": other})
    assert same_bits(cached_neighbours(combined, 6, tmp_path, mean["content_hash"]),
                     top_k_cosine_neighbours(combined, 6))
    with pytest.raises(ValueError, match="no 'image' features"):
        build_graph(KnnGraph("image", 4), {"text": given["text"]}, tmp_path)
