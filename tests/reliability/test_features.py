"""Issue 18, feature extraction: missing inputs are imputed and counted, too many of them or
a degenerate matrix stop the job, never a silent wrong number."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from crane.cli import main
from crane.data.image_features_b import write_image_features_b
from crane.features.extract import extract_features
from crane.features.store import load_features

# sentence-transformers must never reach the network in tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MINILM = {"type": "sentence_transformers", "model": "all-MiniLM-L6-v2",
          "fields": ["title", "brand", "categories", "description"], "batch_size": 64}
COLOURS = ["red", "navy", "olive", "amber", "ivory", "teal", "coral", "plum"]
KINDS = ["blanket", "stroller", "bottle", "crib sheet", "rattle", "bib", "car seat",
         "high chair"]


def items_frame(n: int, titles: list[str] | None = None) -> pd.DataFrame:
    """An items.parquet frame of n items; empty metadata unless titles are given."""
    return pd.DataFrame({
        "item_id": np.arange(n, dtype=np.int64),
        "asin": [f"B{i:09d}" for i in range(n)],
        "title": titles if titles is not None else [""] * n,
        "brand": [""] * n,
        "categories": [[] for _ in range(n)],
        "description": [""] * n,
        "image_url": [""] * n,
    })


def product_titles(n: int) -> list[str]:
    """n different product titles (colour x kind x a number)."""
    return [f"{COLOURS[i % 8]} cotton {KINDS[(i // 8) % 8]} model {i}" for i in range(n)]


def write_data(tmp_path: Path, items: pd.DataFrame) -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    items.to_parquet(data_dir / "items.parquet", index=False)
    return data_dir


def features_cli(tmp_path: Path, data_dir: Path, modality: str, encoder: str,
                 spec: dict) -> list[str]:
    return ["features", "--data", str(data_dir), "--raw", str(tmp_path / "raw"), "--modality",
            modality, "--encoder", encoder, "--spec", json.dumps(spec), "--out",
            str(tmp_path / "features" / f"{modality}-{encoder}"), "--device", "cpu"]


def test_empty_metadata_fails_text_features_job(tmp_path, capsys):
    """Probe: empty item metadata gave every item the empty string's embedding (1 distinct
    row of 160, manifest `0 imputed`)."""
    data_dir = write_data(tmp_path, items_frame(160))
    assert main(features_cli(tmp_path, data_dir, "text", "minilm", MINILM)) == 2
    error = capsys.readouterr().err
    assert str(data_dir) in error
    for words in ("text", "minilm", "160 of 160", "100.0%", "encoders.minilm.max_missing_share",
                  "0.05"):
        assert words in error, (words, error)
    assert not (tmp_path / "features").exists()


def test_missing_text_below_share_is_imputed_and_counted(tmp_path):
    """Probe: items without any text were encoded as the empty string and counted as present."""
    titles = product_titles(40)
    titles[7] = ""  # 1 of 40 = 2.5% < the default 5%
    data_dir = write_data(tmp_path, items_frame(40, titles))
    out = tmp_path / "features" / "text-minilm"
    extract_features(data_dir, tmp_path / "raw", "text", "minilm", MINILM, out)

    stored = load_features(out)
    manifest = stored.manifest
    assert manifest["imputed"]["count"] == 1
    assert manifest["imputed"]["share"] == pytest.approx(0.025)
    assert manifest["imputed"]["items"][0]["item_id"] == 7
    assert "no text" in manifest["imputed"]["items"][0]["reason"]
    others = np.delete(stored.features, 7, axis=0)
    np.testing.assert_allclose(stored.features[7], others.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert manifest["distinct_rows"] == 40
    assert manifest["checks"]["max_missing_share"] == 0.05
    assert manifest["checks"]["degenerate"]["effective_rank"] >= 8


def test_missing_share_above_default_passes_when_configured(tmp_path):
    """Probe: the share of items without input had no limit and no setting."""
    titles = product_titles(20)
    for row in (1, 5, 9):  # 15% > 5%
        titles[row] = "  "
    data_dir = write_data(tmp_path, items_frame(20, titles))
    with pytest.raises(ValueError, match=r"3 of 20 items \(15.0%\)"):
        extract_features(data_dir, tmp_path / "raw", "text", "minilm", MINILM,
                         tmp_path / "out")
    spec = {**MINILM, "max_missing_share": 0.2}
    result = extract_features(data_dir, tmp_path / "raw", "text", "minilm", spec,
                              tmp_path / "out")
    assert result.manifest["imputed"]["count"] == 3
    assert result.manifest["checks"]["max_missing_share"] == 0.2


@pytest.mark.parametrize("value", [-0.1, 1.5, "0.1", True])
def test_bad_max_missing_share_names_the_key(tmp_path, value):
    """Probe: a wrong setting must not silently turn the check off."""
    data_dir = write_data(tmp_path, items_frame(10, product_titles(10)))
    with pytest.raises(ValueError, match=r"encoders.minilm.max_missing_share"):
        extract_features(data_dir, tmp_path / "raw", "text", "minilm",
                         {**MINILM, "max_missing_share": value}, tmp_path / "out")


def test_missing_images_above_share_fail_features_job(tmp_path):
    """Probe: items without an image were imputed whatever their share."""
    asins = [f"B{i:09d}" for i in range(20)]
    rng = np.random.default_rng(0)
    images = tmp_path / "raw" / "images"
    images.mkdir(parents=True)
    for asin in asins[:16]:  # 4 of 20 have no image
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        Image.new("RGB", (16, 16), colour).save(images / f"{asin}.png")
    data_dir = write_data(tmp_path, items_frame(20))
    spec = {"type": "color_histogram", "bins": 4}
    with pytest.raises(ValueError, match=r"4 of 20 items \(20.0%\) have no image"):
        extract_features(data_dir, tmp_path / "raw", "image", "colorhist", spec,
                         tmp_path / "out")
    result = extract_features(data_dir, tmp_path / "raw", "image", "colorhist",
                              {**spec, "max_missing_share": 0.25}, tmp_path / "out")
    assert result.manifest["imputed"]["count"] == 4
    assert result.manifest["imputed"]["share"] == pytest.approx(0.2)


def write_mmrec(tmp_path: Path, matrix: np.ndarray) -> Path:
    (tmp_path / "raw").mkdir(exist_ok=True)
    np.save(tmp_path / "raw" / "image_feat.npy", matrix)
    return write_data(tmp_path, items_frame(len(matrix)))


def test_constant_features_fail_as_degenerate(tmp_path):
    """Probe: a matrix with one distinct row (every item alike) was written as features."""
    matrix = np.tile(np.random.default_rng(1).standard_normal(16), (50, 1))
    data_dir = write_mmrec(tmp_path, matrix)
    with pytest.raises(ValueError, match=r"degenerate.*1 distinct row"):
        extract_features(data_dir, tmp_path / "raw", "image", "mmrec", {"type": "mmrec_npy"},
                         tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["near_duplicate", "on_a_line"])
def test_near_duplicate_features_fail_as_degenerate(tmp_path, kind):
    """Probe: rows that differ only by rounding noise, or lie on one line, passed as features."""
    rng = np.random.default_rng(2)
    base = rng.standard_normal(32)
    if kind == "near_duplicate":
        matrix = base + 1e-6 * rng.standard_normal((60, 32))
    else:
        matrix = np.outer(rng.random(60), base)
    data_dir = write_mmrec(tmp_path, matrix)
    with pytest.raises(ValueError, match=r"degenerate.*effective rank"):
        extract_features(data_dir, tmp_path / "raw", "image", "mmrec", {"type": "mmrec_npy"},
                         tmp_path / "out")


def test_mmrec_zero_rows_are_imputed_and_counted(tmp_path):
    """Probe: all-zero rows of an MMRec .npy (items without a vector) were taken as vectors."""
    matrix = np.random.default_rng(3).standard_normal((40, 12))
    matrix[[4, 30]] = 0.0
    data_dir = write_mmrec(tmp_path, matrix)
    result = extract_features(data_dir, tmp_path / "raw", "image", "mmrec",
                              {"type": "mmrec_npy"}, tmp_path / "out")
    imputed = result.manifest["imputed"]
    assert imputed["count"] == 2 and imputed["share"] == pytest.approx(0.05)
    assert [entry["item_id"] for entry in imputed["items"]] == [4, 30]
    present = np.delete(matrix, [4, 30], axis=0).astype(np.float32)
    np.testing.assert_allclose(result.features[4], present.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_identical_legacy_vectors_fail_as_degenerate(tmp_path):
    """Probe: a .b file whose vectors are all the same gave constant image features."""
    asins = [f"B{i:09d}" for i in range(30)]
    vectors = np.tile(np.abs(np.random.default_rng(4).standard_normal(64)), (30, 1))
    write_image_features_b(tmp_path / "raw" / "image_features_Baby.b", asins,
                           vectors.astype(np.float32))
    data_dir = write_data(tmp_path, items_frame(30))
    with pytest.raises(ValueError, match=r"degenerate.*1 distinct row"):
        extract_features(data_dir, tmp_path / "raw", "image", "cnn",
                         {"type": "legacy_image_features", "dim": 64}, tmp_path / "out")
