"""Typed hyper-parameters: each model declares a frozen dataclass of exactly the keys it reads.

    @dataclass(frozen=True)
    class LightGCNConfig(HyperParameters):
        embedding_size: int = hparam(at_least=1)
        n_layers: int = hparam(at_least=0)
        reg_weight: float = hparam(at_least=0)

`Recommender.__init__` turns the resolved dict into `self.config` through
`from_hparams(model, hparams)`, which rejects, with an error naming the model, the key and
the value: unknown and missing keys, a value of the wrong type (bool: true or false; int: an
integer; float: a number, stored as float; str: a string) and a value outside the declared
range or choices. A config's `check(model)` adds rules between keys. Fields have no
defaults: the defaults live in the model's YAML. tests/models/test_hyperparameters.py.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Sequence, TypeVar

C = TypeVar("C", bound="HyperParameters")
_TYPES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def hparam(*, at_least: float | None = None, above: float | None = None,
           at_most: float | None = None, below: float | None = None,
           one_of: Sequence[Any] | None = None) -> Any:
    """A required field with its allowed range (bounds inclusive or strict) or choices."""
    return dataclasses.field(metadata={"at_least": at_least, "above": above,
                                       "at_most": at_most, "below": below, "one_of": one_of})


@dataclasses.dataclass(frozen=True)
class HyperParameters:
    """Base of every model's typed config."""

    @classmethod
    def from_hparams(cls: type[C], model: str, hparams: dict[str, Any]) -> C:
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(hparams) - set(names))
        missing = [name for name in names if name not in hparams]
        problems = ([f"unknown hyper-parameter(s) {unknown}"] if unknown else []) + \
                   ([f"missing hyper-parameter(s) {missing}"] if missing else [])
        if problems:
            raise ValueError(f"{model}: {'; '.join(problems)}; expected exactly {names} "
                             f"(the `defaults` of the model's YAML)")
        types = typing.get_type_hints(cls)
        values = {f.name: _checked(model, f, types[f.name], hparams[f.name])
                  for f in dataclasses.fields(cls)}
        config = cls(**values)
        config.check(model)
        return config

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def check(self, model: str) -> None:
        """Rules between keys; raise ValueError naming `model` (none by default)."""


def reject(model: str, name: str, value: Any, expected: str) -> typing.NoReturn:
    raise ValueError(f"{model}: hyper-parameter {name}={value!r} must be {expected}")


def _checked(model: str, field: dataclasses.Field, kind: type, value: Any) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # YAML writes 1 for 1.0
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        reject(model, field.name, value, _TYPES[kind])
    rules = field.metadata
    if rules.get("one_of") is not None and value not in rules["one_of"]:
        reject(model, field.name, value, f"one of {list(rules['one_of'])}")
    low, high = rules.get("at_least"), rules.get("at_most")
    low_open, high_open = rules.get("above"), rules.get("below")
    outside = ((low is not None and value < low) or (low_open is not None and value <= low_open)
               or (high is not None and value > high)
               or (high_open is not None and value >= high_open))
    if outside:
        reject(model, field.name, value, _range(low, low_open, high, high_open))
    return value


def _range(low, low_open, high, high_open) -> str:
    lower = low if low is not None else low_open
    upper = high if high is not None else high_open
    if lower is not None and upper is not None:
        return (f"in {'[' if low is not None else '('}{lower}, "
                f"{upper}{']' if high is not None else ')'}")
    if lower is not None:
        return f">= {low}" if low is not None else f"> {low_open}"
    return f"<= {high}" if high is not None else f"< {high_open}"
