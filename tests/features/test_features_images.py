"""Image encoders: colour histogram, open-clip from a local weights file, imputation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _features_data import make_items, png_bytes, solid_image

from crane import files
from crane.features.extract import extract_features
from crane.features.store import load_features
from crane.features.image_files import find_cached_images
from crane.features.image_histogram import colour_histogram, histogram_dim

RED, GREEN, BLUE = (220, 20, 20), (20, 200, 30), (10, 20, 230)
YELLOW = (230, 220, 30)

# A real open-clip ViT, only small: registered under a test-only name.
TINY_VIT = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32,
                   "patch_size": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


def write_image_cache(raw: Path) -> list[str]:
    """Four good images (jpg/png), one missing, one corrupt, one truncated."""
    images = raw / "images"
    solid_image(images / "RED0000001.jpg", RED, fmt="JPEG")
    solid_image(images / "RED0000002.png", RED)
    solid_image(images / "BLU0000001.png", BLUE)
    solid_image(images / "GRN0000001.png", GREEN)
    (images / "CORRUPT001.jpg").write_bytes(b"this is not an image at all")
    (images / "TRUNCATE01.png").write_bytes(png_bytes(GREEN, size=64)[:60])
    (images / ".MISSING01.png.tmp").write_bytes(png_bytes(RED))  # an interrupted write
    return ["RED0000001", "BLU0000001", "MISSING001", "CORRUPT001", "GRN0000001",
            "TRUNCATE01", "RED0000002"]


def test_histogram_is_l1_normalised_and_tells_colours_apart():
    red = colour_histogram(np.full((8, 8, 3), RED, dtype=np.uint8), bins=4, grid=2)
    blue = colour_histogram(np.full((8, 8, 3), BLUE, dtype=np.uint8), bins=4, grid=2)
    assert red.shape == (histogram_dim(4, 2),) == (4 ** 3 + 4 * 3 * 4,)
    assert red.dtype == np.float32
    assert red.sum() == pytest.approx(1.0) and (red >= 0).all()
    assert red[:64] @ blue[:64] == 0  # no shared joint colour bin
    assert red @ blue < 0.5 * (red @ red)
    # joint bin of (220, 20, 20) at 4 levels: r=3, g=0, b=0 -> 3*16 = 48, holds 1/(1+4)
    assert red[48] == pytest.approx(0.2)


def test_histogram_layout_sees_where_colours_are():
    left_red = np.zeros((8, 8, 3), dtype=np.uint8)
    left_red[:, :4] = RED
    left_red[:, 4:] = BLUE
    right_red = left_red[:, ::-1]
    a, b = colour_histogram(left_red, 4, 2), colour_histogram(right_red, 4, 2)
    np.testing.assert_array_equal(a[:64], b[:64])  # same colours overall
    assert not np.array_equal(a[64:], b[64:])  # different layout
    assert colour_histogram(left_red, 4, 0).shape == (64,)  # grid 0: joint histogram only


def test_cache_lookup_skips_partial_downloads(tmp_path):
    write_image_cache(tmp_path)
    (tmp_path / "images" / "PART000001.jpg.part").write_bytes(b"half")
    found = find_cached_images(tmp_path / "images")
    assert set(found) == {"RED0000001", "RED0000002", "BLU0000001", "GRN0000001",
                          "CORRUPT001", "TRUNCATE01"}


def test_histogram_features_impute_missing_and_unreadable_images(tmp_path, processed_dir):
    asins = write_image_cache(tmp_path / "raw")
    data_dir = processed_dir(make_items(asins))
    out = tmp_path / "features" / "image-colorhist"
    # 3 of 7 items without a usable image: far above the default share, allowed here
    cfg = {"type": "color_histogram", "bins": 4, "batch_size": 2, "max_missing_share": 0.5}
    extract_features(data_dir, tmp_path / "raw", "image", "colorhist", cfg, out)

    stored = load_features(out)
    features, manifest = stored.features, stored.manifest
    assert features.shape == (7, histogram_dim(4, 2))
    good = [0, 1, 4, 6]
    np.testing.assert_allclose(features[good].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(features[0], features[6], atol=0.02)  # both red (jpg vs png)
    assert features[0] @ features[1] < 0.5 * (features[0] @ features[6])
    mean = features[good].mean(axis=0)
    for row in (2, 3, 5):
        np.testing.assert_allclose(features[row], mean, rtol=1e-6)
    imputed = {entry["asin"]: entry for entry in manifest["imputed"]["items"]}
    assert manifest["imputed"]["count"] == 3
    assert manifest["imputed"]["share"] == pytest.approx(3 / 7)
    assert manifest["checks"]["max_missing_share"] == 0.5
    # red, blue, green and the mean: the jpg and png reds fall in the same 4-level bins
    assert manifest["distinct_rows"] == 4
    assert set(imputed) == {"MISSING001", "CORRUPT001", "TRUNCATE01"}
    assert imputed["MISSING001"]["reason"].startswith("missing")
    assert imputed["CORRUPT001"]["reason"].startswith("unreadable")
    assert imputed["TRUNCATE01"]["reason"].startswith("unreadable")
    assert imputed["CORRUPT001"]["item_id"] == 3
    assert manifest["weights_hash"] is None and "histogram" in manifest["preprocessing"]


def test_no_readable_image_at_all_is_an_error(tmp_path, processed_dir):
    data_dir = processed_dir(make_items(["NOPE000001"]))
    with pytest.raises(ValueError, match="none of the 1 items"):
        extract_features(data_dir, tmp_path / "raw", "image", "h", {"type": "color_histogram"},
                         tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny_clip_weights(tmp_path_factory) -> Path:
    """Register the tiny ViT with open-clip, create it untrained, save its state_dict."""
    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("open_clip")
    (folder / "crane-test-tiny-vit.json").write_text(json.dumps(TINY_VIT))
    open_clip.add_model_config(folder / "crane-test-tiny-vit.json")
    torch.manual_seed(0)
    model = open_clip.create_model("crane-test-tiny-vit", pretrained=None)
    weights = folder / "tiny_vit.pt"
    torch.save(model.state_dict(), weights)
    return weights


def test_open_clip_loads_weights_file_and_encodes_with_imputation(tmp_path, processed_dir,
                                                                   tiny_clip_weights):
    import open_clip
    import torch

    asins = write_image_cache(tmp_path / "raw")
    # Four distinct good images, so that the imputed mean leaves the features rank 3: the
    # jpg and png reds may decode to the very same pixels (they do on some CPUs), which
    # would leave three points and their mean, rank 2.
    solid_image(tmp_path / "raw" / "images" / "RED0000001.jpg", YELLOW, fmt="JPEG")
    data_dir = processed_dir(make_items(asins))
    cfg = {"type": "open_clip", "arch": "crane-test-tiny-vit", "pretrained": "no-such-tag",
           "weights": str(tiny_clip_weights), "batch_size": 3, "max_missing_share": 0.5}
    out = tmp_path / "features" / "image-tinyclip"
    extract_features(data_dir, tmp_path / "raw", "image", "tinyclip", cfg, out)

    stored = load_features(out)
    assert stored.features.shape == (7, TINY_VIT["embed_dim"])
    manifest = stored.manifest
    assert manifest["weights_hash"] == files.sha256_file(tiny_clip_weights)
    assert manifest["arch"] == "crane-test-tiny-vit"
    assert {e["asin"] for e in manifest["imputed"]["items"]} == {
        "MISSING001", "CORRUPT001", "TRUNCATE01"}

    # the saved weights, not a fresh random init, produced these numbers
    model, _, preprocess = open_clip.create_model_and_transforms(
        "crane-test-tiny-vit", pretrained=str(tiny_clip_weights))
    from PIL import Image
    with torch.no_grad():
        expected = model.eval().encode_image(
            preprocess(Image.open(tmp_path / "raw" / "images" / "BLU0000001.png")
                       .convert("RGB"))[None]).numpy()[0]
    np.testing.assert_allclose(stored.features[1], expected, rtol=1e-4, atol=1e-5)
    good = [0, 1, 4, 6]
    np.testing.assert_allclose(stored.features[2], stored.features[good].mean(axis=0),
                               rtol=1e-5, atol=1e-6)


def test_open_clip_missing_weights_file_names_it(tmp_path, processed_dir, tiny_clip_weights):
    data_dir = processed_dir(make_items(["RED0000001"]))
    cfg = {"type": "open_clip", "arch": "crane-test-tiny-vit",
           "weights": str(tmp_path / "nowhere.pt")}
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        extract_features(data_dir, tmp_path / "raw", "image", "clip", cfg, tmp_path / "out")


def test_mmrec_npy_is_taken_as_is(tmp_path, processed_dir):
    data_dir = processed_dir(make_items(["A", "B", "C"]))
    raw = tmp_path / "raw"
    raw.mkdir()
    matrix = np.random.default_rng(0).standard_normal((3, 4))  # float64 on disk
    np.save(raw / "image_feat.npy", matrix)
    out = tmp_path / "features" / "image-mmrec"
    extract_features(data_dir, raw, "image", "mmrec", {"type": "mmrec_npy"}, out)
    stored = load_features(out)
    np.testing.assert_array_equal(stored.features, matrix.astype(np.float32))
    np.save(raw / "text_feat.npy", matrix[:2])
    with pytest.raises(ValueError, match=r"text_feat.npy: shape \(2, 4\)"):
        extract_features(data_dir, raw, "text", "mmrec", {"type": "mmrec_npy"}, out)
