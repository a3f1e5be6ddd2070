"""Config validation: defaults are filled, and every kind of mistake names its key."""

from pathlib import Path

import pytest
import yaml

from crane.config import ConfigError, set_overrides, validate_config

ROOT = Path(__file__).resolve().parents[1]


def minimal(**extra):
    config = {
        "seeds": [1],
        "models": ["bpr"],
        "datasets": {"demo": {"source": {"type": "demo"}, "features": {"text": "minilm"}}},
        "encoders": {"minilm": {"type": "sentence_transformers", "model": "all-MiniLM-L6-v2"}},
    }
    config.update(extra)
    return config


def models_dir(tmp_path, *names):
    for name in names:
        (tmp_path / f"{name}.yaml").write_text("defaults: {}\n")
    return tmp_path


def test_defaults_are_filled(tmp_path):
    config = validate_config(minimal(), models_dir(tmp_path, "bpr"))
    assert config["results"] == "results"
    assert config["training"]["patience"] == 20
    assert config["training"]["valid_metric"] == "recall@20"
    assert config["datasets"]["demo"]["kcore"] == 5
    assert config["datasets"]["demo"]["split"] == {"method": "mmrec_random", "seed": 2024}
    assert config["datasets"]["demo"]["source"]["users"] == 1500


@pytest.mark.parametrize("mutate, named", [
    (lambda c: c.update(sedes=[1]), "sedes"),
    (lambda c: c["training"].update(epochs="many") if "training" in c else c.update(training={"epochs": "many"}), "training.epochs"),
    (lambda c: c["datasets"]["demo"].update(kcore=0), "datasets.demo.kcore"),
    (lambda c: c["datasets"]["demo"]["source"].update(users="x"), "datasets.demo.source.users"),
    (lambda c: c["datasets"]["demo"]["source"].update(colour="red"), "colour"),
    (lambda c: c["datasets"]["demo"]["split"].update(method="random") if "split" in c["datasets"]["demo"]
     else c["datasets"]["demo"].update(split={"method": "random"}), "datasets.demo.split.method"),
    (lambda c: c.update(seeds=[]), "seeds"),
])
def test_mistakes_name_the_key(tmp_path, mutate, named):
    config = minimal()
    mutate(config)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        validate_config(config, models_dir(tmp_path, "bpr"))


def test_unknown_encoder_and_model_are_named(tmp_path):
    config = minimal()
    config["datasets"]["demo"]["features"]["image"] = "clip"
    with pytest.raises(ConfigError, match=r"datasets\.demo\.features\.image.*'clip'"):
        validate_config(config, models_dir(tmp_path, "bpr"))
    with pytest.raises(ConfigError, match="unknown model 'bpr'"):
        validate_config(minimal(), tmp_path / "empty")


def test_overrides_are_typed_and_nested():
    config = set_overrides({"training": {"epochs": 5}}, ["training.epochs=7", "seeds=[1, 2]",
                                                          "tuning=grid"])
    assert config == {"training": {"epochs": 7}, "seeds": [1, 2], "tuning": "grid"}
    with pytest.raises(ConfigError, match="key=value"):
        set_overrides({}, ["training.epochs"])


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml", "test.yaml"])
def test_shipped_configs_are_valid(name):
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    validate_config(config)
