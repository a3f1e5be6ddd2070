"""Model files, grids, hp hashes and the tuning policy (select on validation, never on test)."""

import re

import pytest

from crane import files
from crane.tuning import (default_point, grid_points, hp_hash, load_model_config, select_best,
                          training_keys, with_overrides)


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


def test_lattice_sets_its_learning_rate_in_its_training_block():
    lattice = load_model_config("lattice")
    assert "learning_rate" not in lattice["defaults"]
    assert training_keys(lattice) == ("learning_rate", "lr_scheduler")
    point = default_point(lattice)
    assert point["learning_rate"] == 5e-4 and point["lr_scheduler"] == [0.96, 50]
    points = grid_points(lattice)
    assert len(points) == 16
    # model grid keys vary slowest, training grid keys fastest (the order ties go by)
    assert [(p["reg_weight"], p["learning_rate"]) for p in points[:5]] == [
        (0.0, 1e-4), (0.0, 5e-4), (0.0, 1e-3), (0.0, 5e-3), (1e-5, 1e-4)]
    assert training_keys(load_model_config("mgcn")) == ("lr_scheduler",)
    assert training_keys(load_model_config("bpr")) == ()


@pytest.mark.parametrize("text, named", [
    ("training: {defaults: {epochs: 3}}", r"x\.yaml: training\.defaults: unknown key 'epochs'"),
    ("training: {defaults: {learnig_rate: 0.1}}", r"x\.yaml: training\.defaults: unknown key 'learnig_rate'"),
    ("training: {grid: {momentum: [0.9]}}", r"x\.yaml: training\.grid: unknown key 'momentum'"),
    ("training: {default: {learning_rate: 0.1}}", r"x\.yaml: training: unknown key\(s\) \['default'\]"),
    ("training: {grid: {learning_rate: [0.1]}}", r"x\.yaml: training\.grid key\(s\) \['learning_rate'\] need a value"),
    ("grid: {learning_rate: [0.1]}", r"x\.yaml: grid: \['learning_rate'\] are trainer settings"),
    ("trainnig: {}", r"x\.yaml: unknown top-level key\(s\) \['trainnig'\]"),
])
def test_a_bad_training_block_names_the_file_and_the_key(tmp_path, text, named):
    (tmp_path / "x.yaml").write_text(f"defaults: {{a: 1}}\n{text}\n")
    with pytest.raises(ValueError, match=named):
        load_model_config("x", tmp_path)


def test_a_trainer_setting_among_the_model_defaults_is_rejected(tmp_path):
    (tmp_path / "x.yaml").write_text("defaults: {a: 1, learning_rate: 0.1}\n")
    with pytest.raises(ValueError, match=r"x\.yaml: defaults: \['learning_rate'\] are trainer"):
        load_model_config("x", tmp_path)


def test_overrides_fix_model_and_declared_training_keys_and_leave_their_grids():
    lattice = load_model_config("lattice")
    fixed = with_overrides(lattice, {"learning_rate": 1e-3, "knn_k": 5})
    assert fixed["training"]["defaults"]["learning_rate"] == 1e-3
    assert fixed["defaults"]["knn_k"] == 5 and "knn_k" not in fixed["training"]["defaults"]
    assert [p["learning_rate"] for p in grid_points(fixed)] == [1e-3] * 4
    with pytest.raises(ValueError, match=r"model_overrides: \['epochs'\] are trainer settings"):
        with_overrides(lattice, {"epochs": 3})
    with pytest.raises(ValueError, match=r"\['learning_rate'\] are trainer settings"):
        with_overrides(load_model_config("bpr"), {"learning_rate": 1e-3})


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


def test_a_preset_lays_its_defaults_over_its_models_file(tmp_path):
    (tmp_path / "m.yaml").write_text(
        "defaults: {a: 1, b: 2, c: 3}\ngrid: {a: [1, 5], b: [2, 4]}\n"
        "training: {defaults: {learning_rate: 0.01}}\nablations: {m_a: {a: 0}}\n")
    (tmp_path / "p.yaml").write_text("preset_of: m\ndefaults: {b: 7}\n")
    preset = load_model_config("p", tmp_path)
    assert preset["defaults"] == {"a": 1, "b": 7, "c": 3}
    assert preset["grid"] == {"a": [1, 5]}  # b is fixed by the preset
    assert preset["training"]["defaults"] == {"learning_rate": 0.01}
    assert "ablations" not in preset


@pytest.mark.parametrize("text, named", [
    ("preset_of: m\ndefaults: {z: 1}\n", "['z'] are not hyper-parameters"),
    ("preset_of: nothere\ndefaults: {a: 1}\n", "names no model file"),
    ("preset_of: q\ndefaults: {a: 2}\n", "is itself a preset"),
    ("preset_of: m\ngrid: {a: [1]}\n", "takes no ['grid']"),
])
def test_a_bad_preset_names_the_file_and_the_key(tmp_path, text, named):
    (tmp_path / "m.yaml").write_text("defaults: {a: 1}\ngrid: {a: [1, 2]}\n")
    (tmp_path / "q.yaml").write_text("preset_of: m\ndefaults: {a: 3}\n")
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ValueError, match=re.escape(named)) as error:
        load_model_config("p", tmp_path)
    assert "p.yaml" in str(error.value)


def test_crane_scalable_is_crane_with_its_scale_switches_on():
    crane, scalable = load_model_config("crane"), load_model_config("crane_scalable")
    switches = {"neighbour_cache": True, "cl_max_rows": 512, "input_dim": 256}
    assert scalable["defaults"] == {**crane["defaults"], **switches}
    assert scalable["grid"] == crane["grid"]


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
