"""The legacy `image_features_<Cat>.b` reader: round trip, streaming, imputation, truncation."""

from __future__ import annotations

import numpy as np
import pytest
from _features_data import make_items

from crane.features.extract import extract_features
from crane.features.store import load_features
from crane.data.image_features_b import (count_records, iter_records, read_aligned as read_legacy_features,
                                   record_dtype, write_image_features_b as write_legacy_features)


def random_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_record_layout_is_10_byte_asin_plus_little_endian_floats(tmp_path):
    path = tmp_path / "image_features_Baby.b"
    vectors = random_vectors(2, 4096)
    write_legacy_features(path, ["B000000001", "B000000002"], vectors)
    raw = path.read_bytes()
    assert len(raw) == 2 * (10 + 4096 * 4) == 2 * record_dtype().itemsize
    assert raw[:10] == b"B000000001"
    np.testing.assert_array_equal(np.frombuffer(raw[10:10 + 4 * 4096], dtype="<f4"), vectors[0])
    assert raw[16394:16404] == b"B000000002"


def test_round_trip_in_small_chunks_aligns_by_asin(tmp_path):
    path = tmp_path / "image_features_Baby.b"
    asins = [f"B{i:09d}" for i in range(7)]
    vectors = random_vectors(7, 16)
    write_legacy_features(path, asins, vectors)
    assert count_records(path, dim=16) == 7
    chunks = list(iter_records(path, dim=16, chunk_records=3))
    assert [len(a) for a, _ in chunks] == [3, 3, 1]  # streamed, never the whole file
    wanted = [asins[5], "NOTINFILE0", asins[0], asins[3]]
    features, present = read_legacy_features(path, wanted, dim=16, chunk_records=3)
    assert present.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(features[[0, 2, 3]], vectors[[5, 0, 3]])
    assert not features[1].any()


def test_later_duplicate_asin_wins(tmp_path):
    path = tmp_path / "dup.b"
    vectors = random_vectors(3, 8)
    write_legacy_features(path, ["B000000001", "B000000002", "B000000001"], vectors)
    features, _ = read_legacy_features(path, ["B000000001"], dim=8, chunk_records=1)
    np.testing.assert_array_equal(features[0], vectors[2])


def test_truncated_trailing_record_names_file_and_offset(tmp_path):
    path = tmp_path / "image_features_Baby.b"
    write_legacy_features(path, ["B000000001", "B000000002"], random_vectors(2, 4096))
    with open(path, "ab") as handle:
        handle.write(b"B000000003" + b"\0" * 100)
    with pytest.raises(ValueError, match=r"image_features_Baby.b: truncated record at byte "
                                         r"offset 32788"):
        read_legacy_features(path, ["B000000001"])


def test_legacy_encoder_imputes_missing_items_with_the_mean(tmp_path, processed_dir):
    raw = tmp_path / "raw"
    vectors = random_vectors(3, 4096, seed=3)
    write_legacy_features(raw / "image_features_Baby.b",
                          ["B000000003", "B000000001", "B0000000XX"], vectors)
    data_dir = processed_dir(make_items(["B000000001", "B000000002", "B000000003"]))
    out = tmp_path / "features" / "image-cnn4096"
    extract_features(data_dir, raw, "image", "cnn4096",
                     {"type": "legacy_image_features", "max_missing_share": 0.5}, out)

    stored = load_features(out)
    np.testing.assert_array_equal(stored.features[0], vectors[1])
    np.testing.assert_array_equal(stored.features[2], vectors[0])
    np.testing.assert_allclose(stored.features[1], (vectors[0] + vectors[1]) / 2, rtol=1e-6)
    imputed = stored.manifest["imputed"]
    assert imputed["count"] == 1
    assert imputed["items"][0]["asin"] == "B000000002"
    assert imputed["items"][0]["item_id"] == 1
    assert "image_features_Baby.b" in stored.manifest["inputs_sha256"]


def test_legacy_encoder_needs_exactly_one_file(tmp_path, processed_dir):
    data_dir = processed_dir(make_items(["B000000001"]))
    (tmp_path / "raw").mkdir()
    with pytest.raises(FileNotFoundError, match="image_features_<Cat>.b"):
        extract_features(data_dir, tmp_path / "raw", "image", "cnn",
                         {"type": "legacy_image_features"}, tmp_path / "out")
