"""Shared argument helpers: how a rule hands a (sub)config to a command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_spec_argument(parser: argparse.ArgumentParser, name: str = "--spec",
                      help_text: str = "JSON object, or @path to a JSON/YAML file") -> None:
    parser.add_argument(name, type=parse_spec, required=True, help=help_text)


def parse_spec(value: str) -> dict[str, Any]:
    """A spec is inline JSON or `@file` (JSON or YAML); rules pass the config subset they use."""
    if value.startswith("@"):
        path = Path(value[1:])
        text = path.read_text(encoding="utf-8")
        if path.suffix in {".yaml", ".yml"}:
            import yaml

            return yaml.safe_load(text) or {}
        return json.loads(text)
    try:
        spec = json.loads(value)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"spec is not valid JSON: {error}") from None
    if not isinstance(spec, dict):
        raise argparse.ArgumentTypeError("spec must be a JSON object")
    return spec


def parse_feature_dirs(pairs: list[str]) -> dict[str, Path]:
    """`--feature MODALITY=DIR` pairs -> {modality: folder}; a malformed pair or a modality
    given twice is an error naming it."""
    features: dict[str, Path] = {}
    for pair in pairs:
        modality, sep, folder = pair.partition("=")
        if not sep or not modality or not folder:
            raise ValueError(f"--feature {pair!r}: expected MODALITY=DIR")
        if modality in features:
            raise ValueError(f"--feature: modality {modality!r} given twice")
        features[modality] = Path(folder)
    return features
