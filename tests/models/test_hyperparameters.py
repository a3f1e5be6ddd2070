"""Typed hyper-parameters (crane.models.hyperparameters): a bad key, type or range is an error
naming the model, the key and the value; every model's YAML points pass."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from crane.models.hyperparameters import HyperParameters, hparam


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
