"""ItemKNN-CBF: content-only neighbours; equals a brute-force dense computation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from crane.graphs.item_knn import build_graph
from crane.graphs.plan import MEAN_COSINE, KnnGraph
from crane.models import get
from crane.models.itemknn_cbf import drop_self
from crane.synthetic import only_modalities, shuffled_features, styled_alternate_cold
from tests.models.checks import (assert_scores_agree_across_chunks, random_recall_at_20,
                                 train_and_test)


@pytest.fixture(scope="module")
def synthetic():
    return styled_alternate_cold()


def fitted(data, k=10):
    model = get("itemknn_cbf")(data, {"knn_k": k})
    model.fit()
    return model


def brute_force_scores(data, k):
    """Mean per-modality cosine, no self-similarity, each item's k most similar items."""
    cosines = []
    for matrix in data.features.values():
        unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        cosines.append(unit @ unit.T)
    similarity = np.mean(cosines, axis=0)
    np.fill_diagonal(similarity, -np.inf)
    kept = np.zeros_like(similarity)
    top = np.argsort(-similarity, axis=1)[:, :k]
    rows = np.arange(data.n_items)[:, None]
    kept[rows, top] = similarity[rows, top]
    history = data.train_matrix().toarray()
    return history @ kept.T  # score(u, i) = sum_j R[u, j] S[i, j]


@pytest.mark.parametrize("modalities", [("image", "text"), ("image",), ("text",)])
def test_scores_equal_brute_force(synthetic, modalities):
    data = only_modalities(synthetic.data, *modalities)
    model = fitted(data, k=10)
    scores = assert_scores_agree_across_chunks(model)
    np.testing.assert_allclose(scores.numpy(), brute_force_scores(data, 10), rtol=1e-4, atol=1e-5)


def test_neighbours_exclude_the_item_itself(synthetic):
    model = fitted(synthetic.data, k=7)
    index = model.neighbour_index.numpy()
    assert index.shape == (synthetic.data.n_items, 7)
    assert not (index == np.arange(synthetic.data.n_items)[:, None]).any()
    assert (np.diff(model.neighbour_similarity.numpy(), axis=1) <= 1e-6).all()


def test_drop_self_when_the_item_is_missing_from_its_own_list():
    # Row 0 lacks itself (a duplicate twin outranked it): its least similar entry goes.
    indices = np.array([[3, 2, 1], [1, 0, 2]])
    similarities = np.array([[1.0, 0.9, 0.5], [1.0, 0.8, 0.2]], dtype=np.float32)
    kept_index, kept_similarity = drop_self(indices, similarities)
    np.testing.assert_array_equal(kept_index, [[3, 2], [0, 2]])
    np.testing.assert_allclose(kept_similarity, [[1.0, 0.9], [0.8, 0.2]])


def test_fitted_state_travels_in_a_checkpoint(synthetic):
    model = fitted(synthetic.data)
    restored = get("itemknn_cbf")(synthetic.data, {"knn_k": 10})
    restored.load_state_dict(model.state_dict())
    users = torch.arange(50)
    torch.testing.assert_close(restored.score(users), model.score(users))
    assert model.trainable is False and list(model.parameters()) == []


def test_neighbours_are_read_from_the_cache_by_content_hash(synthetic, tmp_path):
    data = replace(synthetic.data, cache_dir=tmp_path,
                   feature_hashes={"image": "a" * 64, "text": "b" * 64})
    in_memory = fitted(data).neighbour_index.clone()
    assert list(tmp_path.iterdir()) == []  # training never writes the cache
    record = build_graph(KnnGraph(MEAN_COSINE, 11), {
        m: (synthetic.data.features[m], data.feature_hashes[m]) for m in ("image", "text")},
        tmp_path)
    assert record["cache"].endswith("_k11.npz")
    torch.testing.assert_close(fitted(data).neighbour_index, in_memory, rtol=0, atol=0)
    # a planted graph under the same key is what the model reads
    with np.load(record["cache"]) as stored:
        planted = {name: stored[name] for name in stored.files}
    planted["indices"] = np.roll(planted["indices"], 1, axis=0)
    np.savez(record["cache"], **planted)
    assert not torch.equal(fitted(data).neighbour_index, in_memory)


def test_content_signal_beats_random_and_popularity(synthetic):
    result = train_and_test(synthetic, "itemknn_cbf", {"knn_k": 20}, epochs=1)
    mostpop = train_and_test(synthetic, "mostpop", {}, epochs=1)
    blind = train_and_test(synthetic, "itemknn_cbf", {"knn_k": 20}, epochs=1,
                           data=shuffled_features(synthetic.data))
    recall = result.test["recall@20"]
    assert recall > 4 * random_recall_at_20(synthetic)
    assert recall > 4 * mostpop.test["recall@20"]
    assert blind.test["recall@20"] < 2 * random_recall_at_20(synthetic)


def test_bad_input_is_named(synthetic):
    with pytest.raises(ValueError, match=r"missing hyper-parameter\(s\) \['knn_k'\]"):
        get("itemknn_cbf")(synthetic.data, {})
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['shrink'\]"):
        get("itemknn_cbf")(synthetic.data, {"knn_k": 5, "shrink": 10})
    with pytest.raises(ValueError, match="knn_k=192"):
        get("itemknn_cbf")(synthetic.data, {"knn_k": 192})
    with pytest.raises(ValueError, match="itemknn_cbf needs item features"):
        get("itemknn_cbf")(only_modalities(synthetic.data), {"knn_k": 5})
