"""Workflow configuration: layering, schema validation with defaults, and cross-checks.

Layers, later wins: config files (Snakemake's `--configfile`, in order), then `--config
key=value` pairs (Snakemake's own), then `set_overrides` for dotted keys from `crane` commands.
The schema (crane/configs/config.schema.yaml, package data) rejects unknown keys, so a typo
stops the run with a message naming the key instead of silently using a default.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from crane.configs import SCHEMA_PATH
from crane.tuning import model_configs_dir



class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def _validator_filling_defaults():
    """A validator class that also writes schema defaults into the instance."""
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": properties_with_defaults})


def _path_of(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def validate_config(config: dict[str, Any], models_dir: Path | None = None) -> dict[str, Any]:
    """Return a validated copy with defaults filled; raise ConfigError naming the first problem.

    Model files are looked up in `models_dir`, else in the config's `models_dir`, else in the
    packaged crane/configs/models.
    """
    resolved = copy.deepcopy(config)
    validator = _validator_filling_defaults()(load_schema())
    errors = sorted(validator.iter_errors(resolved), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        # The most specific error is the useful one (if/then branches report at the parent).
        error = max(errors, key=lambda e: len(e.absolute_path))
        raise ConfigError(f"invalid config: {_path_of(error)}: {error.message}")
    _cross_check(resolved, models_dir or model_configs_dir(resolved.get("models_dir")))
    return resolved


def _cross_check(config: dict[str, Any], models_dir: Path) -> None:
    encoders = config.get("encoders", {})
    for name, dataset in config["datasets"].items():
        for modality, encoder in dataset.get("features", {}).items():
            if encoder not in encoders:
                raise ConfigError(
                    f"invalid config: datasets.{name}.features.{modality}: encoder {encoder!r} "
                    f"is not defined under `encoders` (defined: {', '.join(sorted(encoders)) or 'none'})")
    for model in config["models"]:
        if not (models_dir / f"{model}.yaml").exists():
            known = sorted(p.stem for p in models_dir.glob("*.yaml"))
            raise ConfigError(f"invalid config: models: unknown model {model!r} "
                              f"(no {models_dir / (model + '.yaml')}; known: {', '.join(known)})")
    for section in ("ablations", "sensitivity"):
        for dataset in config.get(section, {}).get("datasets", []):
            if dataset not in config["datasets"]:
                raise ConfigError(f"invalid config: {section}.datasets: unknown dataset {dataset!r}")


def parse_value(text: str) -> Any:
    """`--set key=value` values are YAML scalars/lists: 1e-3, true, [1, 2], "text"."""
    return yaml.safe_load(text)


def set_overrides(config: dict[str, Any], assignments: Iterable[str]) -> dict[str, Any]:
    """Apply dotted `a.b.c=value` assignments to a copy of `config`."""
    result = copy.deepcopy(config)
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {assignment!r} is not of the form key=value")
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {assignment!r}: {part!r} is not a mapping")
        node[leaf] = parse_value(value)
    return result


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data
