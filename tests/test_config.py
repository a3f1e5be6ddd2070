"""Config validation: defaults are filled, and every kind of mistake names its key."""

import shutil
import subprocess
import sys
import zipfile
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


def test_optional_trainer_settings_have_no_default_and_are_checked(tmp_path):
    config = validate_config(minimal(), models_dir(tmp_path, "bpr"))
    assert "lr_scheduler" not in config["training"] and "weight_decay" not in config["training"]
    set_both = minimal(training={"lr_scheduler": [0.96, 50], "weight_decay": 1e-6})
    assert validate_config(set_both, tmp_path)["training"]["lr_scheduler"] == [0.96, 50]
    with pytest.raises(ConfigError, match=r"training\.lr_scheduler"):
        validate_config(minimal(training={"lr_scheduler": [0.96]}), tmp_path)


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


def test_a_built_wheel_reads_its_schema_and_model_files_as_package_data(tmp_path):
    """An installed crane validates configs and reads model files from crane/configs inside
    the package: nothing is looked up relative to a checkout."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "crane", source / "crane",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                   check=True, cwd=tmp_path, capture_output=True)
    wheel = next((tmp_path / "dist").glob("*.whl"))
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "crane" / "configs").rglob("*.yaml")}
    assert "crane/configs/config.schema.yaml" in shipped
    assert shipped <= set(zipfile.ZipFile(wheel).namelist())

    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    probe = ("import crane, crane.tuning as t, crane.config as c\n"
             f"assert crane.__file__.startswith({str(installed)!r}), crane.__file__\n"
             "c.validate_config({'seeds': [1], 'models': ['lattice'], "
             "'datasets': {'d': {'source': {'type': 'demo'}}}})\n"
             "print(t.load_model_config('lattice')['defaults']['knn_k'])\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, env={"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "10"
