"""Grids, hp hashes and the tuning policy (select on validation, never on test)."""

import pytest

from crane import files
from crane.tuning import grid_points, hp_hash, load_model_config, select_best


def test_shipped_grids_follow_the_protocol():
    bpr = load_model_config("bpr")
    assert bpr["defaults"] == {"embedding_size": 64, "reg_weight": 1e-4}
    assert bpr["grid"]["reg_weight"] == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 2.0]
    lightgcn = grid_points(load_model_config("lightgcn"))
    assert len(lightgcn) == 20
    assert {p["n_layers"] for p in lightgcn} == {1, 2, 3, 4}
    assert all(p["embedding_size"] == 64 for p in lightgcn)
    assert grid_points(load_model_config("mostpop")) == [{}]


def test_every_shipped_model_config_loads():
    from crane.configs import MODELS_DIR

    for path in sorted(MODELS_DIR.glob("*.yaml")):
        config = load_model_config(path.stem)
        assert grid_points(config), path


def test_grid_points_merge_over_defaults_in_grid_order():
    cfg = {"defaults": {"a": 1, "b": 2, "c": 3}, "grid": {"a": [10, 20], "b": [5, 6]}}
    assert grid_points(cfg) == [{"a": 10, "b": 5, "c": 3}, {"a": 10, "b": 6, "c": 3},
                                {"a": 20, "b": 5, "c": 3}, {"a": 20, "b": 6, "c": 3}]
    assert grid_points({"defaults": {"a": 1}, "grid": {}}) == [{"a": 1}]


def test_hp_hash_is_short_stable_and_order_free():
    h = hp_hash({"reg_weight": 1e-4, "n_layers": 2})
    assert h == hp_hash({"n_layers": 2, "reg_weight": 1e-4})
    assert len(h) == 12 and int(h, 16) >= 0
    assert h != hp_hash({"n_layers": 3, "reg_weight": 1e-4})


def test_bad_model_config_names_the_file(tmp_path):
    (tmp_path / "m.yaml").write_text("defaults: {a: 1}\ngrid: {a: 3}\n")
    with pytest.raises(ValueError, match="m.yaml.*grid key 'a'"):
        load_model_config("m", tmp_path)
    (tmp_path / "n.yaml").write_text("grid: {a: [1]}\n")
    with pytest.raises(ValueError, match="n.yaml: missing 'defaults'"):
        load_model_config("n", tmp_path)
    with pytest.raises(FileNotFoundError, match="nothere.yaml"):
        load_model_config("nothere", tmp_path)


def write_run(folder, reg, valid, test):
    hparams = {"reg_weight": reg}
    files.write_json(folder / "metrics.json", {
        "model": "bpr", "hparams": hparams, "hp_hash": hp_hash(hparams), "best_epoch": 3,
        "valid": {"recall@20": valid, "ndcg@20": valid / 2},
        "test": {"recall@20": test, "ndcg@20": test / 2}})
    return folder


def test_selects_by_validation_even_when_test_disagrees(tmp_path):
    runs = [write_run(tmp_path / "a", 1e-4, valid=0.05, test=0.09),   # best on test
            write_run(tmp_path / "b", 1e-3, valid=0.07, test=0.04),   # best on validation
            write_run(tmp_path / "c", 1e-2, valid=0.07, test=0.08)]   # ties b, later
    chosen = select_best(runs, metric="recall@20")
    assert chosen["hparams"] == {"reg_weight": 1e-3}
    assert chosen["hp_hash"] == hp_hash({"reg_weight": 1e-3})
    assert chosen["selected_by"] == "validation"
    assert [row["valid"] for row in chosen["table"]] == [0.05, 0.07, 0.07]


def test_select_reports_missing_runs_and_metrics(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        select_best([tmp_path / "missing"])
    run = write_run(tmp_path / "a", 1e-4, 0.1, 0.1)
    with pytest.raises(ValueError, match="map@7"):
        select_best([run], metric="map@7")
