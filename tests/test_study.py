"""The study plan: the job grid a config asks for, and the tuning policy's paths."""

from pathlib import Path

import pytest

from crane.config import ConfigError, validate_config
from crane.study import ModelSpec, StudyPlan
from crane.tuning import hp_hash


def write_models(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "bpr.yaml").write_text("defaults: {reg_weight: 1.0e-4}\n"
                                      "grid: {reg_weight: [1.0e-4, 1.0e-3, 1.0e-2]}\n")
    (folder / "lightgcn.yaml").write_text("defaults: {n_layers: 2, reg_weight: 1.0e-4}\n"
                                           "grid: {n_layers: [1, 2], reg_weight: [1.0e-4, 1.0e-3]}\n")
    (folder / "crane.yaml").write_text(
        "defaults: {lambda_cl: 0.01, rca_steps: 2}\n"
        "ablations: {crane: {}, crane_no_cl: {lambda_cl: 0}}\n"
        "sensitivity: {rca_steps: [1, 2, 3], lambda_cl: [0.001, 0.1]}\n")
    return folder


def plan(tmp_path, **extra):
    config = {"seeds": [7, 8], "models": ["bpr", "lightgcn"], "results": "out",
              "datasets": {"a": {"source": {"type": "demo"}}, "b": {"source": {"type": "demo"}}},
              "models_dir": str(write_models(tmp_path))}
    config.update(extra)
    return StudyPlan(validate_config(config, tmp_path))


def test_default_tuning_runs_one_point_per_model_on_every_seed(tmp_path):
    study = plan(tmp_path)
    assert len(study.final_runs()) == 2 * 2 * 2
    assert "out/a/runs/final/bpr/seed8" in study.final_runs()
    assert study.grid_points("lightgcn") == {hp_hash({"n_layers": 2, "reg_weight": 1e-4}):
                                             {"n_layers": 2, "reg_weight": 1e-4}}
    assert not study.needs_selection("lightgcn")


def test_grid_tuning_searches_the_product_on_the_first_seed(tmp_path):
    study = plan(tmp_path, tuning="grid")
    points = study.grid_points("lightgcn")
    assert len(points) == 4 and len(set(points)) == 4
    assert {(p["n_layers"], p["reg_weight"]) for p in points.values()} == {
        (1, 1e-4), (1, 1e-3), (2, 1e-4), (2, 1e-3)}
    runs = study.tuning_runs("a", "lightgcn")
    assert all(run.endswith("/seed7") for run in runs) and len(runs) == 4
    assert study.needs_selection("bpr")


def test_study_override_fixes_a_key_and_removes_it_from_the_grid(tmp_path):
    study = plan(tmp_path, tuning="grid", model_overrides={"lightgcn": {"n_layers": 3}})
    points = list(study.grid_points("lightgcn").values())
    assert len(points) == 2 and all(p["n_layers"] == 3 for p in points)


def test_grid_override_searches_fewer_values_of_a_grid_key(tmp_path):
    study = plan(tmp_path, tuning="grid", grid_overrides={"lightgcn": {"reg_weight": [1e-3]}})
    points = list(study.grid_points("lightgcn").values())
    assert [(p["n_layers"], p["reg_weight"]) for p in points] == [(1, 1e-3), (2, 1e-3)]
    # the reduced grid of a one-point search needs no selection
    study = plan(tmp_path, tuning="grid", grid_overrides={"bpr": {"reg_weight": [1e-2]}})
    assert list(study.grid_points("bpr").values()) == [{"reg_weight": 1e-2}]
    assert not study.needs_selection("bpr")


@pytest.mark.parametrize("grid, message", [
    ({"embedding_size": [32, 64]}, r"grid_overrides\.lightgcn: 'embedding_size' is not searched"),
    ({"reg_weight": []}, r"grid_overrides\.lightgcn\.reg_weight: expected a non-empty list"),
])
def test_grid_override_of_an_unsearched_key_or_no_values_is_named(tmp_path, grid, message):
    study = plan(tmp_path, tuning="grid")
    study.config["grid_overrides"] = {"lightgcn": grid}
    with pytest.raises(ConfigError, match=message):
        study.grid_points("lightgcn")


def test_a_key_both_fixed_and_searched_is_refused(tmp_path):
    study = plan(tmp_path, tuning="grid", model_overrides={"lightgcn": {"n_layers": 3}},
                 grid_overrides={"lightgcn": {"n_layers": [1, 3]}})
    with pytest.raises(ConfigError, match=r"both set \[.n_layers.\]: fix a key or search it, not both"):
        study.grid_points("lightgcn")


def test_grid_override_of_a_model_outside_the_study_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"grid_overrides\.vbpr: unknown model"):
        plan(tmp_path, grid_overrides={"vbpr": {"reg_weight": [1e-3]}})


def test_ablation_variant_may_set_trainer_settings(tmp_path):
    models = write_models(tmp_path / "with_trainer_settings")
    (models / "crane.yaml").write_text(
        "defaults: {lambda_cl: 0.01, rca_steps: 2}\n"
        "ablations: {crane: {}, crane_bf16: {training: {precision: bf16}},\n"
        "            crane_both: {rca_steps: 1, training: {precision: bf16, patience: 5}}}\n")
    study = plan(tmp_path, ablations={"enabled": True}, models_dir=str(models))
    assert study.ablation_switches("crane_bf16") == ({}, {"precision": "bf16"})
    assert study.ablation_arguments("crane_bf16") == "--extra '{}' --set 'training.precision=\"bf16\"'"
    assert study.ablation_arguments("crane_both") == (
        """--extra '{"rca_steps": 1}' --set training.patience=5 --set 'training.precision="bf16"'""")
    # what the train command reads back from those words
    from crane.commands.train import parse_overrides
    assert parse_overrides(['training.precision="bf16"', "training.patience=5"]) == (
        {}, {"precision": "bf16", "patience": 5})


def test_ablation_and_sensitivity_runs(tmp_path):
    study = plan(tmp_path, ablations={"enabled": True, "datasets": ["a"], "seeds": [7]},
                 sensitivity={"enabled": True, "params": ["rca_steps"], "seeds": [7]})
    # the full-model variant is the final CRANE run of that seed, not a second training
    assert study.ablation_runs() == ["out/a/runs/final/crane/seed7",
                                     "out/a/runs/ablations/crane_no_cl/seed7"]
    assert len(study.sensitivity_runs()) == 2 * 3  # two datasets x three values
    assert study.sensitivity_value("rca_steps", "3") == 3
    with pytest.raises(ConfigError):
        study.sensitivity_value("rca_steps", "9")


def test_unknown_variant_is_named(tmp_path):
    study = plan(tmp_path, ablations={"enabled": True, "variants": ["crane_no_rca"]})
    with pytest.raises(ConfigError, match="crane_no_rca"):
        study.ablation_runs()


def test_full_model_variant_takes_no_overrides(tmp_path):
    models = write_models(tmp_path / "models")
    (models / "crane.yaml").write_text("defaults: {lambda_cl: 0.01}\n"
                                       "ablations: {crane: {lambda_cl: 0.1}}\n")
    study = plan(tmp_path, ablations={"enabled": True}, models_dir=str(models))
    with pytest.raises(ConfigError, match="full model"):
        study.ablation_runs()


def test_hash_is_stable_and_order_independent():
    assert hp_hash({"a": 1, "b": 2.0}) == hp_hash({"b": 2.0, "a": 1})
    assert hp_hash({"a": 1}) != hp_hash({"a": 2})
    assert len(hp_hash({})) == 12


def test_model_file_with_unknown_key_is_rejected(tmp_path):
    (tmp_path / "x.yaml").write_text("defaults: {}\ngrdi: {a: [1]}\n")
    with pytest.raises(ConfigError, match="grdi"):
        ModelSpec.load("x", tmp_path)


def test_declared_trainer_settings_are_part_of_the_point_and_of_the_overrides(tmp_path):
    (tmp_path / "lattice.yaml").write_text(
        "defaults: {reg_weight: 1.0e-5}\n"
        "grid: {reg_weight: [0.0, 1.0e-5]}\n"
        "training: {defaults: {learning_rate: 5.0e-4}, grid: {learning_rate: [1.0e-4, 5.0e-4]}}\n")
    study = plan(tmp_path, models=["lattice"], tuning="grid")
    points = list(study.grid_points("lattice").values())
    assert [(p["reg_weight"], p["learning_rate"]) for p in points] == [
        (0.0, 1e-4), (0.0, 5e-4), (1e-5, 1e-4), (1e-5, 5e-4)]
    assert study.default_hparams("lattice") == {"reg_weight": 1e-5, "learning_rate": 5e-4}
    fixed = plan(tmp_path, models=["lattice"], tuning="grid",
                 model_overrides={"lattice": {"learning_rate": 1e-3}})
    assert [p["learning_rate"] for p in fixed.grid_points("lattice").values()] == [1e-3, 1e-3]
    stray = plan(tmp_path, models=["lattice"], model_overrides={"lattice": {"batch_size": 64}})
    with pytest.raises(ConfigError, match=r"model_overrides\.lattice: \['batch_size'\]"):
        stray.grid_points("lattice")
