"""crane.engine.inputs: features reach a model only through the verifying reader."""

import numpy as np
import pytest

from crane.engine.inputs import build_model, load_train_data
from crane.features.store import write_feature_dir


@pytest.fixture()
def feature_dir(tmp_path, clustered):
    matrix = np.random.default_rng(0).random((clustered.n_items, 8)).astype(np.float32)
    return write_feature_dir(tmp_path / "features" / "text-test", matrix, {"encoder": "test"})


def test_features_and_their_manifest_hash_are_read(processed_dir, feature_dir):
    data, _ = load_train_data(processed_dir, {"text": feature_dir.path}, "cpu", None)
    assert np.array_equal(data.features["text"], feature_dir.features)
    assert data.feature_hashes["text"] == feature_dir.content_hash


def test_features_edited_behind_the_manifest_are_refused(processed_dir, feature_dir):
    np.save(feature_dir.path / "features.npy", feature_dir.features * 2)
    with pytest.raises(ValueError, match="does not match content_hash"):
        load_train_data(processed_dir, {"text": feature_dir.path}, "cpu", None)


def test_wrong_row_count_missing_folder_and_missing_manifest_are_named(
        tmp_path, processed_dir, clustered, feature_dir):
    short = write_feature_dir(tmp_path / "short", feature_dir.features[:-1], {})
    with pytest.raises(ValueError, match=rf"features.npy: expected shape \({clustered.n_items}"):
        load_train_data(processed_dir, {"text": short.path}, "cpu", None)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_train_data(processed_dir, {"image": tmp_path / "nowhere"}, "cpu", None)
    (feature_dir.path / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        load_train_data(processed_dir, {"text": feature_dir.path}, "cpu", None)


def test_build_model_takes_a_whole_point_and_leaves_out_declared_trainer_settings(
        processed_dir):
    data, _ = load_train_data(processed_dir, None, "cpu", None)
    model = build_model("bpr", data,
                        {"embedding_size": 8, "reg_weight": 0.0})
    assert model.hparams == {"embedding_size": 8, "reg_weight": 0.0}
    with pytest.raises(ValueError, match=r"bpr: \['learning_rate'\] are trainer settings"):
        build_model("bpr", data, {"embedding_size": 8, "reg_weight": 0.0,
                                  "learning_rate": 0.1})
