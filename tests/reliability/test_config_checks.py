"""Bad configuration stops the study before any job runs, naming the key and the value.

Each test is one probe of the reliability catalogue (docs/reliability.md).
"""

from __future__ import annotations

import copy
import errno
from pathlib import Path

import pytest
import torch
import yaml

from crane import files
from crane.config import ConfigError, validate_config
from crane.engine.run_folder import RunFolder
from crane.engine.settings import TrainingConfig
from crane.study import StudyPlan
from crane.tuning import hp_hash

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_config() -> dict:
    return yaml.safe_load((ROOT / "config" / "test.yaml").read_text())


def plan_of(config: dict) -> StudyPlan:
    plan = StudyPlan(validate_config(config))
    plan.check_points()
    return plan


def test_misspelt_model_override_name_is_a_config_error(demo_config):
    """model_overrides for `lightgnc` was silently ignored; the model ran its defaults."""
    demo_config["model_overrides"] = {"lightgnc": {"n_layers": 2}}
    with pytest.raises(ConfigError, match=r"model_overrides\.lightgnc: unknown model 'lightgnc'"):
        validate_config(demo_config)


def test_override_of_a_model_outside_the_study_is_a_config_error(demo_config):
    """An override for a real model the study does not run would change nothing."""
    demo_config["model_overrides"] = {"vbpr": {"embedding_size": 32}}
    with pytest.raises(ConfigError, match=r"model_overrides\.vbpr: 'vbpr' is not in `models`"):
        validate_config(demo_config)


def test_bad_trainer_setting_of_an_ablation_variant_fails_at_config_time(demo_config, tmp_path):
    """An ablation variant's `training:` settings are checked with the study's points."""
    from crane.tuning import model_configs_dir
    for source in model_configs_dir(None).glob("*.yaml"):
        (tmp_path / source.name).write_text(source.read_text())
    crane_file = tmp_path / "crane.yaml"
    crane_file.write_text(crane_file.read_text().replace(
        "crane_bf16: {training: {precision: bf16}}", "crane_bf16: {training: {precision: fp8}}"))
    demo_config["models_dir"] = str(tmp_path)
    demo_config["ablations"]["variants"] = ["crane", "crane_bf16"]
    with pytest.raises(ConfigError, match=r"crane\.yaml \(ablation 'crane_bf16'\).*precision.*fp8"):
        plan_of(demo_config)


def test_misspelt_grid_override_key_fails_at_config_time(demo_config):
    demo_config["tuning"] = "grid"
    demo_config["grid_overrides"] = {"lightgcn": {"n_layer": [1, 2]}}
    with pytest.raises(ConfigError, match=r"grid_overrides\.lightgcn: 'n_layer' is not searched"):
        plan_of(demo_config)


def test_misspelt_hyperparameter_fails_at_config_time(demo_config):
    """`embeding_size` passed the dry run and failed only inside the training job."""
    demo_config["model_overrides"] = {"lightgcn": {"embeding_size": 32}}
    with pytest.raises(ConfigError, match=r"model_overrides\.lightgcn.*unknown hyper-parameter"
                                          r".*embeding_size"):
        plan_of(demo_config)


@pytest.mark.parametrize("value, expected", [("big", "must be an integer"), (-4, "must be >= 1")])
def test_bad_hyperparameter_value_names_the_key(demo_config, value, expected):
    """embedding_size "big" / -4 gave `invalid literal for int()` / a negative-dimension error."""
    demo_config["model_overrides"] = {"lightgcn": {"embedding_size": value}}
    with pytest.raises(ConfigError, match=rf"lightgcn: hyper-parameter embedding_size="
                                          rf".*{expected}"):
        plan_of(demo_config)


def test_bad_ablation_point_names_the_variant(demo_config, tmp_path):
    """A model file whose ablation variant sets a wrong value fails at config time."""
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    for path in (ROOT / "crane" / "configs" / "models").glob("*.yaml"):
        (models_dir / path.name).write_text(path.read_text())
    crane_file = yaml.safe_load((models_dir / "crane.yaml").read_text())
    variant = next(v for v, extra in crane_file["ablations"].items() if extra)
    crane_file["ablations"][variant] = {"rca_steps": -1}
    (models_dir / "crane.yaml").write_text(yaml.safe_dump(crane_file))
    demo_config["models_dir"] = str(models_dir)
    demo_config["ablations"] = {"enabled": True, "variants": [variant]}
    with pytest.raises(ConfigError, match=rf"ablation '{variant}'.*rca_steps=-1"):
        plan_of(demo_config)


def test_time_cut_without_bounds_is_a_config_error(demo_config):
    """`split: {method: time_cut}` without boundaries gave a TypeError inside preprocessing."""
    demo_config["datasets"]["demo"]["split"] = {"method": "time_cut"}
    with pytest.raises(ConfigError, match=r"datasets\.demo\.split: method time_cut needs "
                                          r"\['valid_from', 'test_from'\]"):
        validate_config(demo_config)


def test_meta_false_with_a_text_encoder_is_a_config_error(demo_config):
    """`meta: false` with a text encoder embedded the empty string for every item."""
    demo_config["datasets"]["demo"]["source"] = {"type": "amazon2018", "category": "Beauty",
                                                 "meta": False}
    with pytest.raises(ConfigError, match=r"datasets\.demo\.features\.text: encoder 'minilm': "
                                          r"text features need item metadata"):
        validate_config(demo_config)


def test_mmrec_source_with_a_text_encoder_is_a_config_error(demo_config):
    """An MMRec folder (ids and .npy features only) with a sentence-transformers encoder."""
    demo_config["datasets"]["demo"]["source"] = {"type": "mmrec", "path": "data/baby"}
    demo_config["datasets"]["demo"]["features"] = {"text": "minilm"}
    with pytest.raises(ConfigError, match=r"features\.text: encoder 'minilm': an mmrec folder "
                                          r"brings precomputed features only"):
        validate_config(demo_config)


def test_encoder_name_that_is_no_plain_word_is_a_config_error(demo_config):
    """An encoder named `ch$(touch${IFS}PWNED)` ran `touch` in the features job."""
    hostile = "ch$(touch${IFS}PWNED)"
    demo_config["encoders"][hostile] = demo_config["encoders"].pop("colorhist")
    demo_config["datasets"]["demo"]["features"]["image"] = hostile
    with pytest.raises(ConfigError, match=r"does not match"):
        validate_config(demo_config)


def test_command_line_numbers_and_lists_are_typed(demo_config):
    """`--config seeds=[1,2,3]` arrived as strings and failed `'1' is not of type 'integer'`;
    an override that passed was recorded as the string '32', so its hash differed."""
    typed = copy.deepcopy(demo_config)
    typed["training"]["batch_size"] = 32
    typed["model_overrides"] = {"lightgcn": {"n_layers": 2, "reg_weight": 1e-3}}
    as_text = copy.deepcopy(demo_config)
    as_text["seeds"] = ["1", "2", "3"]                       # snakemake --config seeds=[1,2,3]
    as_text["training"]["batch_size"] = "32"                 # --config training={batch_size: 32}
    as_text["model_overrides"] = {"lightgcn": {"n_layers": "2", "reg_weight": "1e-3"}}
    resolved = validate_config(as_text)
    assert resolved["seeds"] == [1, 2, 3]
    assert resolved["training"]["batch_size"] == 32
    from_text = StudyPlan(resolved).default_hparams("lightgcn")
    from_yaml = StudyPlan(validate_config(typed)).default_hparams("lightgcn")
    assert from_text == from_yaml and hp_hash(from_text) == hp_hash(from_yaml)


def test_text_that_is_not_the_wanted_type_still_fails(demo_config):
    """Coercion reads text as YAML only when that gives the schema's type."""
    demo_config["seeds"] = ["one"]
    with pytest.raises(ConfigError, match=r"seeds\.0: 'one' is not of type 'integer'"):
        validate_config(demo_config)


def test_disk_full_while_checkpointing_names_the_path(tmp_path, monkeypatch):
    """A full disk during training gave torch's bare `unexpected pos 2091200 vs 2091088`."""
    def short_write(obj, path):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos "
                           "2091200 vs 2091088")

    monkeypatch.setattr(torch, "save", short_write)
    folder = RunFolder(tmp_path / "run")
    with pytest.raises(files.WriteError, match=r"writing .*run/checkpoint\.pt failed: .*unexpected pos"
                                               r".*MiB free"):
        folder.write_checkpoint({"state_dict": {}})
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert not list((tmp_path / "run").glob(".*.tmp*")), "the partial file is removed"


def test_permission_error_names_the_path_and_operation(tmp_path, monkeypatch):
    """No permission to create a file in the results folder names that folder."""
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    with pytest.raises(files.WriteError, match=r"creating a file next to .*metrics\.json failed: "
                                               r"Permission denied"):
        files.write_json(tmp_path / "metrics.json", {"a": 1})


def test_leave_last_out_split_gets_no_seed_and_a_stray_seed_is_named(demo_config):
    """A leave_last_out split passed validation with an injected `seed: 2024` default and
    then failed inside the preprocess job ("unknown option(s) ['seed']")."""
    demo_config["datasets"]["demo"]["split"] = {"method": "leave_last_out"}
    assert validate_config(copy.deepcopy(demo_config))["datasets"]["demo"]["split"] == {
        "method": "leave_last_out"}
    demo_config["datasets"]["demo"]["split"]["seed"] = 7
    with pytest.raises(ConfigError, match=r"datasets\.demo\.split: `seed` applies to method "
                                          r"mmrec_random only"):
        validate_config(demo_config)


def test_table_source_features_need_the_item_table_columns(demo_config):
    """A table source without an item table (or without an image column) asked for text or
    image features: the features job failed, or imputed every item, after the data jobs ran."""
    interactions = {"path": "data/interactions.csv", "user": "u", "item": "i"}
    demo_config["datasets"]["demo"]["source"] = {"type": "table", "interactions": interactions}
    demo_config["datasets"]["demo"]["features"] = {"text": "minilm"}
    with pytest.raises(ConfigError, match=r"features\.text: encoder 'minilm': a table source "
                                          r"without `items`"):
        validate_config(copy.deepcopy(demo_config))
    demo_config["datasets"]["demo"]["source"]["items"] = {"path": "data/items.csv", "item": "i",
                                                          "text": ["title"]}
    demo_config["datasets"]["demo"]["features"] = {"text": "minilm", "image": "colorhist"}
    with pytest.raises(ConfigError, match=r"features\.image: .*names no image column"):
        validate_config(copy.deepcopy(demo_config))
    demo_config["datasets"]["demo"]["features"] = {"text": "minilm"}
    validate_config(demo_config)


def test_unknown_precision_names_the_key(demo_config):
    demo_config.setdefault("training", {})["precision"] = "fp16"
    with pytest.raises(ConfigError, match=r"training\.precision: 'fp16' is not one of "
                                          r"\['fp32', 'bf16'\]"):
        validate_config(demo_config)
    # the trainer's own check, for a config that reaches it another way (crane train --set)
    with pytest.raises(ValueError, match=r"training\.precision must be one of fp32, bf16, "
                                         r"got 'fp16'"):
        TrainingConfig(precision="fp16")
