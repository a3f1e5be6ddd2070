"""`crane features` and `crane graphs`: the commands the workflow rules call."""

from __future__ import annotations

import json

import numpy as np
from _features_data import make_items, solid_image

from crane import files
from crane.cli import main
from crane.features.store import load_features
from crane.graphs.item_knn import graph_cache_path, top_k_cosine_neighbours

COLOURS = [(250, 10, 10), (240, 30, 20), (10, 10, 250), (20, 40, 230), (10, 240, 10),
           (30, 220, 40), (128, 128, 128), (250, 250, 10)]


def test_features_then_graphs_and_a_changed_feature_file_changes_the_key(tmp_path,
                                                                        processed_dir, capsys):
    asins = [f"ITEM{i:06d}" for i in range(len(COLOURS))]
    for asin, colour in zip(asins, COLOURS):
        solid_image(tmp_path / "raw" / "images" / f"{asin}.png", colour)
    data_dir = processed_dir(make_items(asins))
    out = tmp_path / "features" / "image-colorhist"
    spec = json.dumps({"type": "color_histogram", "bins": 4})
    common = ["--data", str(data_dir), "--raw", str(tmp_path / "raw"), "--modality", "image",
              "--encoder", "colorhist", "--spec", spec, "--out", str(out), "--device", "cpu"]
    assert main(["features", *common]) == 0
    first = load_features(out)

    graphs = tmp_path / "graphs"
    index = tmp_path / "graphs" / "index.json"
    assert main(["graphs", "--feature", f"image={out}", "--k", "3", "--out", str(graphs),
                 "--index", str(index)]) == 0
    cache = graph_cache_path(graphs, first.content_hash, 3)
    assert cache.exists()
    assert json.loads(index.read_text())["image-k3"]["cache"] == str(cache)
    with np.load(cache) as stored:
        np.testing.assert_array_equal(
            stored["indices"], top_k_cosine_neighbours(first.features, 3).indices)
        # a red item's nearest other item is the other red one
        assert stored["indices"][0, 1] == 1

    # a different image -> different features -> a different cache file, the old one kept
    solid_image(tmp_path / "raw" / "images" / f"{asins[6]}.png", (0, 250, 250))
    assert main(["features", *common]) == 0
    second = load_features(out)
    assert second.content_hash != first.content_hash
    assert main(["graphs", "--feature", f"image={out}", "--k", "3", "--out", str(graphs)]) == 0
    assert graph_cache_path(graphs, second.content_hash, 3).exists()
    assert sorted(p.name for p in graphs.glob("knn_*.npz")) == sorted(
        [cache.name, graph_cache_path(graphs, second.content_hash, 3).name])


def test_graphs_refuses_features_edited_behind_the_manifest(tmp_path, capsys):
    from crane.features.store import write_feature_dir

    out = tmp_path / "features" / "text-x"
    write_feature_dir(out, np.eye(4, dtype=np.float32), {"encoder": "x"})
    np.save(out / "features.npy", np.eye(4, dtype=np.float32) * 2)
    assert main(["graphs", "--feature", f"text={out}", "--k", "2", "--out",
                 str(tmp_path / "graphs")]) == 2
    assert "does not match content_hash" in capsys.readouterr().err
    assert not (tmp_path / "graphs").exists()


def test_features_bad_encoder_type_is_one_clear_line(tmp_path, processed_dir, capsys):
    data_dir = processed_dir(make_items(["A"]))
    code = main(["features", "--data", str(data_dir), "--raw", str(tmp_path), "--modality",
                 "image", "--encoder", "weird", "--spec", '{"type": "nope"}', "--out",
                 str(tmp_path / "out")])
    assert code == 2
    assert "encoders.weird.type: 'nope'" in capsys.readouterr().err


def test_written_manifest_hash_matches_file(tmp_path):
    from crane.features.store import write_feature_dir

    result = write_feature_dir(tmp_path / "f", np.ones((3, 2)), {"encoder": "ones"})
    assert result.manifest["content_hash"] == files.sha256_array(
        np.load(tmp_path / "f" / "features.npy"))
    assert result.manifest["dim"] == 2 and result.features.dtype == np.float32
