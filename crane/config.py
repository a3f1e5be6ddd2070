"""Workflow configuration: layering, schema validation with defaults, and cross-checks.

Layers, later wins: config files (Snakemake's `--configfile`, in order), then `--config
key=value` pairs (Snakemake's own), then `set_overrides` for dotted keys from `crane` commands.
The schema (crane/configs/config.schema.yaml, package data) rejects unknown keys, so a typo
stops the run with a message naming the key instead of silently using a default.

Snakemake hands every `--config` value over as text (`seeds=[1,2,3]` arrives as
`['1', '2', '3']`), so a string where the schema wants a number, a boolean or a list is read
as YAML first and kept only when that gives the wanted type: the typed value is what a run
records and hashes, whichever way it was given.
"""

from __future__ import annotations

import copy
import re
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
    _coerce_text_values(resolved, validator)
    _coerce_override_values(resolved)
    errors = sorted(validator.iter_errors(resolved), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        # The most specific error is the useful one (if/then branches report at the parent).
        error = max(errors, key=lambda e: len(e.absolute_path))
        raise ConfigError(f"invalid config: {_path_of(error)}: {error.message}")
    _cross_check(resolved, models_dir or model_configs_dir(resolved.get("models_dir")))
    return resolved


_JSON_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "array": list,
               "object": dict, "null": type(None)}


def _has_type(value: Any, names: str | list[str]) -> bool:
    names = [names] if isinstance(names, str) else names
    if isinstance(value, bool):  # YAML's true is no integer here
        return "boolean" in names
    return any(isinstance(value, _JSON_TYPES[n]) for n in names if n in _JSON_TYPES)


def _coerce_text_values(config: dict[str, Any], validator) -> None:
    """Replace, in place, each string that the schema wants as another type by its YAML
    reading when that reading has the wanted type (`'32'` -> 32, `'[1, 2]'` -> [1, 2]).
    Repeats because a string read as a list may hold strings the schema wants as numbers."""
    for _ in range(8):
        changed = False
        for error in validator.iter_errors(config):
            if error.validator != "type" or not isinstance(error.instance, str):
                continue
            value = read_text_value(error.instance)
            if not _has_type(value, error.validator_value) or not error.absolute_path:
                continue
            node = config
            *parents, leaf = error.absolute_path
            for part in parents:
                node = node[part]
            if node[leaf] == error.instance:
                node[leaf] = value
                changed = True
        if not changed:
            return


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def read_text_value(text: str) -> Any:
    """A command-line value read as YAML, with numbers such as `1e-3` read as numbers
    (YAML 1.1, which PyYAML follows, takes a float without a dot for a string)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and _NUMBER.match(value) and value == text.strip():
        return float(value)
    return value


def _read_text(value: Any) -> Any:
    if isinstance(value, list):
        return [_read_text(v) for v in value]
    return read_text_value(value) if isinstance(value, str) else value


def _coerce_override_values(config: dict[str, Any]) -> None:
    """`model_overrides` and `grid_overrides` values are typed by each model's config, which the schema does not
    know; a `--config` override arrives as text, so text values are read as YAML (a config
    file's YAML has typed them already). The model's typed config then checks them."""
    for section in ("model_overrides", "grid_overrides"):
        for model, overrides in (config.get(section) or {}).items():
            if isinstance(overrides, dict):
                config[section][model] = {k: _read_text(v) for k, v in overrides.items()}


# What each source brings: item text, item images (files or URLs), and which precomputed
# vector encoders can read it. An encoder whose input a source cannot have is an error at
# config time, not a features job that embeds empty strings.
_TEXT_ENCODERS = {"sentence_transformers"}
# Image encoders that read the item's image file (the others read precomputed vectors).
IMAGE_FILE_ENCODERS = {"open_clip", "color_histogram"}


def _encoder_fits_source(source: dict[str, Any], modality: str, encoder_type: str) -> str | None:
    """Why `encoder_type` cannot encode `modality` of a dataset from `source`, or None."""
    kind = source["type"]
    if kind == "pairs_csv":
        return "a pairs_csv source has interactions only (no item text or images)"
    if kind == "mmrec":
        if encoder_type != "mmrec_npy":
            return ("an mmrec folder brings precomputed features only: use an encoder of "
                    "type mmrec_npy")
        return None
    if encoder_type == "mmrec_npy":
        return "mmrec_npy reads an mmrec folder's .npy files; this source is " + repr(kind)
    if kind == "table" and not source.get("items"):
        return ("a table source without `items` has no item text or images: add "
                "`source.items` (path, item, text) or drop the dataset's `features`")
    if kind == "table" and modality == "image" and not source["items"].get("image"):
        return ("the table source's item table names no image column: set "
                "`source.items.image`, or use the text modality only")
    if encoder_type in _TEXT_ENCODERS:
        if modality != "text":
            return f"{encoder_type} is a text encoder"
        if kind != "demo" and source.get("meta") is False:
            return ("text features need item metadata, and the source sets `meta: false`: "
                    "set `meta: true` or drop the text features")
    if encoder_type in IMAGE_FILE_ENCODERS:
        if modality != "image":
            return f"{encoder_type} is an image encoder"
        if kind != "demo" and source.get("meta") is False:
            return ("image files are fetched from the metadata's image URLs, and the source "
                    "sets `meta: false`: set `meta: true`")
    if encoder_type == "legacy_image_features":
        if modality != "image":
            return "legacy_image_features are image features"
        if kind != "demo" and (kind != "amazon2014" or not source.get("image_features")):
            return ("legacy 4096-d vectors come with the Amazon 2014 release (and the demo) "
                    "only: set `source: {type: amazon2014, image_features: true}`")
    return None


def _check_split(name: str, split: dict[str, Any]) -> None:
    if split.get("method") == "time_cut":
        missing = [k for k in ("valid_from", "test_from") if k not in split]
        if missing:
            raise ConfigError(
                f"invalid config: datasets.{name}.split: method time_cut needs {missing} "
                f"(a fraction of the time line in (0, 1), or a unix time)")
        if split["valid_from"] >= split["test_from"]:
            raise ConfigError(
                f"invalid config: datasets.{name}.split: valid_from ({split['valid_from']}) "
                f"must be below test_from ({split['test_from']})")
    else:
        stray = [k for k in ("valid_from", "test_from") if k in split]
        if stray:
            raise ConfigError(f"invalid config: datasets.{name}.split: {stray} apply to "
                              f"method time_cut only (method is {split.get('method')!r})")
    if "seed" in split and split.get("method", "mmrec_random") != "mmrec_random":
        raise ConfigError(f"invalid config: datasets.{name}.split: `seed` applies to method "
                          f"mmrec_random only (method is {split['method']!r}): remove it")


def _cross_check(config: dict[str, Any], models_dir: Path) -> None:
    encoders = config.get("encoders", {})
    for name, dataset in config["datasets"].items():
        for modality, encoder in dataset.get("features", {}).items():
            if encoder not in encoders:
                raise ConfigError(
                    f"invalid config: datasets.{name}.features.{modality}: encoder {encoder!r} "
                    f"is not defined under `encoders` (defined: {', '.join(sorted(encoders)) or 'none'})")
            why = _encoder_fits_source(dataset["source"], modality, encoders[encoder]["type"])
            if why:
                raise ConfigError(f"invalid config: datasets.{name}.features.{modality}: encoder "
                                  f"{encoder!r}: {why}")
        _check_split(name, dataset.get("split", {}))
    for model in config["models"]:
        if not (models_dir / f"{model}.yaml").exists():
            known = sorted(p.stem for p in models_dir.glob("*.yaml"))
            raise ConfigError(f"invalid config: models: unknown model {model!r} "
                              f"(no {models_dir / (model + '.yaml')}; known: {', '.join(known)})")
    known_models = {p.stem for p in models_dir.glob("*.yaml")}
    for section in ("model_overrides", "grid_overrides"):
        for model in config.get(section, {}):
            if model not in known_models:
                raise ConfigError(f"invalid config: {section}.{model}: unknown model "
                                  f"{model!r} (known: {', '.join(sorted(known_models))})")
            if model not in config["models"] and model != "crane":
                raise ConfigError(f"invalid config: {section}.{model}: {model!r} is not in "
                                  f"`models` ({', '.join(config['models'])}), so the override "
                                  f"would change nothing")
    for section in ("ablations", "sensitivity", "modality_ablation"):
        for dataset in config.get(section, {}).get("datasets", []):
            if dataset not in config["datasets"]:
                raise ConfigError(f"invalid config: {section}.datasets: unknown dataset {dataset!r}")


def parse_value(text: str) -> Any:
    """`--set key=value` values are YAML scalars/lists: 1e-3, true, [1, 2], "text"."""
    value = read_text_value(text)
    return _read_text(value) if isinstance(value, list) else value


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
