"""Typed hyper-parameters (crane.models.hyperparameters): a bad key, type or range is an error
naming the model, the key and the value; every model's YAML points pass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from crane import models
from crane.engine.settings import TrainingConfig
from crane.models.hyperparameters import HyperParameters, hparam
from crane.tuning import grid_points, load_model_config


@dataclass(frozen=True)
class ToyConfig(HyperParameters):
    size: int = hparam(at_least=1)
    rate: float = hparam(at_least=0, below=1)
    keep: float = hparam(above=0, at_most=1)
    scale: float = hparam(above=0)
    weight: float = hparam(at_most=2)
    kind: str = hparam(one_of=("a", "b"))
    flag: bool = hparam()

    def check(self, model: str) -> None:
        if self.kind == "b" and self.flag:
            raise ValueError(f"{model}: kind b cannot be flagged")


GOOD = {"size": 4, "rate": 0.5, "keep": 1.0, "scale": 2.0, "weight": -1.0, "kind": "a",
        "flag": True}


def test_a_good_point_is_typed_and_ints_become_floats():
    config = ToyConfig.from_hparams("toy", {**GOOD, "rate": 0, "scale": 3})
    assert config.rate == 0.0 and isinstance(config.rate, float)
    assert config.scale == 3.0 and isinstance(config.scale, float)
    assert config.size == 4 and config.flag is True
    assert ToyConfig.names() == tuple(GOOD)


@pytest.mark.parametrize("change, message", [
    ({"sizes": 4}, r"toy: unknown hyper-parameter\(s\) \['sizes'\]"),
    ({"size": 1.5}, r"toy: hyper-parameter size=1.5 must be an integer"),
    ({"size": True}, r"toy: hyper-parameter size=True must be an integer"),
    ({"rate": "0.1"}, r"toy: hyper-parameter rate='0.1' must be a number"),
    ({"rate": False}, r"toy: hyper-parameter rate=False must be a number"),
    ({"flag": 1}, r"toy: hyper-parameter flag=1 must be true or false"),
    ({"kind": 3}, r"toy: hyper-parameter kind=3 must be a string"),
    ({"kind": "c"}, r"toy: hyper-parameter kind='c' must be one of \['a', 'b'\]"),
    ({"size": 0}, r"toy: hyper-parameter size=0 must be >= 1"),
    ({"rate": 1.0}, r"toy: hyper-parameter rate=1.0 must be in \[0, 1\)"),
    ({"keep": 0.0}, r"toy: hyper-parameter keep=0.0 must be in \(0, 1\]"),
    ({"scale": 0.0}, r"toy: hyper-parameter scale=0.0 must be > 0"),
    ({"weight": 2.5}, r"toy: hyper-parameter weight=2.5 must be <= 2"),
    ({"kind": "b"}, r"toy: kind b cannot be flagged"),
])
def test_bad_values_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        ToyConfig.from_hparams("toy", {**GOOD, **change})


def test_missing_and_unknown_keys_are_named_together():
    point = {k: v for k, v in GOOD.items() if k not in ("rate", "flag")}
    with pytest.raises(ValueError, match=r"toy: unknown hyper-parameter\(s\) \['x'\]; missing "
                                         r"hyper-parameter\(s\) \['rate', 'flag'\]"):
        ToyConfig.from_hparams("toy", {**point, "x": 1})


# ----------------------------------------------------------------------- every model


MODELS = models.shipped()


def model_points(name: str) -> list[dict]:
    """The model hyper-parameters of every point its YAML can run: defaults, grid points,
    ablation variants and sensitivity values."""
    config = load_model_config(name)
    defaults = config["defaults"]
    points = [defaults] + [{k: v for k, v in point.items() if k in defaults}
                           for point in grid_points(config)]
    # an ablation variant's `training:` settings go to the trainer (checked below), not the model
    points += [{**defaults, **{k: v for k, v in overrides.items() if k != "training"}}
               for overrides in config.get("ablations", {}).values()]
    points += [{**defaults, key: value} for key, values in config.get("sensitivity", {}).items()
               for value in values]
    return points


@pytest.mark.parametrize("name", MODELS)
def test_every_point_of_the_models_yaml_is_valid(name):
    config_class = models.get(name).config_class
    assert config_class is not None, f"{name} declares no typed config"
    assert set(config_class.names()) == set(load_model_config(name)["defaults"])
    for point in model_points(name):
        config_class.from_hparams(name, point)
    for variant in load_model_config(name).get("ablations", {}).values():
        TrainingConfig().updated(variant.get("training") or {})


@pytest.mark.parametrize("name", MODELS)
def test_every_model_names_itself_the_key_and_the_value(name):
    config_class = models.get(name).config_class
    defaults = load_model_config(name)["defaults"]
    with pytest.raises(ValueError, match=rf"{name}: unknown hyper-parameter\(s\) \['no_such'\]"):
        config_class.from_hparams(name, {**defaults, "no_such": 1})
    if defaults:
        key = next(iter(defaults))
        with pytest.raises(ValueError, match=rf"{name}: hyper-parameter {key}='x' must be"):
            config_class.from_hparams(name, {**defaults, key: "x"})
        with pytest.raises(ValueError, match=rf"{name}: missing hyper-parameter\(s\) \['{key}'\]"):
            config_class.from_hparams(name, {k: v for k, v in defaults.items() if k != key})


def _violations(field) -> list:
    """Values just outside the field's declared range or choices."""
    rules = field.metadata
    values = []
    if rules.get("at_least") is not None:
        values.append(rules["at_least"] - 1)
    if rules.get("above") is not None:
        values.append(rules["above"])
    if rules.get("at_most") is not None:
        values.append(rules["at_most"] + 1)
    if rules.get("below") is not None:
        values.append(rules["below"])
    if rules.get("one_of") is not None:
        values.append("not-a-choice")
    return values


@pytest.mark.parametrize("name", MODELS)
def test_every_declared_range_is_enforced(name):
    config_class = models.get(name).config_class
    defaults = load_model_config(name)["defaults"]
    checked = 0
    for field in dataclasses.fields(config_class):
        for value in _violations(field):
            if isinstance(defaults[field.name], float):
                value = float(value)
            with pytest.raises(ValueError,
                               match=rf"{name}: hyper-parameter {field.name}={value!r} must be"):
                config_class.from_hparams(name, {**defaults, field.name: value})
            checked += 1
    assert checked or not defaults
