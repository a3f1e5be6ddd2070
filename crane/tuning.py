"""Hyper-parameter grids and the tuning policy: select on VALIDATION, never on test.

A model's file, `<model>.yaml` in the packaged crane/configs/models (or in a folder given by the
config's `models_dir` / `crane train --model-config`), holds `defaults` (every hyper-parameter
the model reads) and `grid` (key -> list of values searched on the first seed). A grid point
is the defaults with one value per grid key; its `hp_hash` names its run folder.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Iterable

import yaml

from crane import files
from crane.configs import MODELS_DIR
MODEL_FILE_KEYS = {"description", "defaults", "grid", "ablations", "sensitivity"}


def model_configs_dir(configured: str | Path | None = None) -> Path:
    """The folder of model files: `configured` when given (relative to the working
    directory), else the packaged crane/configs/models."""
    return Path(configured) if configured else MODELS_DIR


def model_config_path(model: str, config_dir: str | Path | None = None) -> Path:
    """`<model>.yaml` in `model_configs_dir(config_dir)`; it need not exist."""
    return model_configs_dir(config_dir) / f"{model}.yaml"


def load_model_config(model: str, config_dir: str | Path | None = None) -> dict[str, Any]:
    """`{"defaults": {...}, "grid": {...}}` of `<config_dir>/<model>.yaml`, checked.

    Other top-level sections (a description, a model's ablation or sensitivity lists) are
    passed through unchanged for whoever uses them.
    """
    path = model_config_path(model, config_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no hyper-parameter file for model {model!r}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with 'defaults' and 'grid'")
    if "defaults" not in raw:
        raise ValueError(f"{path}: missing 'defaults' (every hyper-parameter the model reads)")
    defaults = raw.get("defaults") or {}
    grid = raw.get("grid") or {}
    if not isinstance(defaults, dict):
        raise ValueError(f"{path}: 'defaults' must be a mapping")
    if not isinstance(grid, dict):
        raise ValueError(f"{path}: 'grid' must be a mapping of key -> list of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{path}: grid key {key!r} must be a non-empty list")
    return {**raw, "defaults": dict(defaults), "grid": {k: list(v) for k, v in grid.items()}}


def default_hparams(model: str, config_dir: str | Path | None = None,
                    **overrides: Any) -> dict[str, Any]:
    """The model's full default point from its file, with `overrides` on top."""
    return {**load_model_config(model, config_dir)["defaults"], **overrides}


def grid_points(model_cfg: dict[str, dict]) -> list[dict[str, Any]]:
    """Cartesian product over the grid keys (in file order) merged over the defaults."""
    defaults = dict(model_cfg.get("defaults") or {})
    grid = model_cfg.get("grid") or {}
    if not grid:
        return [defaults]
    keys = list(grid)
    return [{**defaults, **dict(zip(keys, values))}
            for values in itertools.product(*(grid[k] for k in keys))]


def hp_hash(hparams: dict[str, Any]) -> str:
    """12 hex characters naming a hyper-parameter point (stable across key order)."""
    return files.sha256_json(hparams)[:12]


def select_best(run_dirs: Iterable[str | Path], metric: str = "recall@20") -> dict[str, Any]:
    """The run with the best VALIDATION `metric`; ties go to the first run given (grid order).

    Returns the chosen hyper-parameters, their hash and run folder, plus a table of every
    point's validation (and, for the record only, test) metric.
    """
    table = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "metrics.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: run has no metrics (did it finish?)")
        metrics = files.read_json(path)
        for field in ("hparams", "valid", "model"):
            if field not in metrics:
                raise ValueError(f"{path}: missing field {field!r}")
        if metric not in metrics["valid"]:
            raise ValueError(f"{path}: validation metrics have no {metric!r} "
                             f"(have {sorted(metrics['valid'])})")
        table.append({
            "run_dir": str(run_dir),
            "model": metrics["model"],
            "hp_hash": metrics.get("hp_hash") or hp_hash(metrics["hparams"]),
            "hparams": metrics["hparams"],
            "best_epoch": metrics.get("best_epoch"),
            "valid": float(metrics["valid"][metric]),
            "test": float(metrics.get("test", {}).get(metric, math.nan)),
        })
    if not table:
        raise ValueError("select_best: no run folders given")
    models = {row["model"] for row in table}
    if len(models) > 1:
        raise ValueError(f"select_best: runs of several models {sorted(models)}; select per model")
    best_index = 0
    for index, row in enumerate(table):
        value, best = row["valid"], table[best_index]["valid"]
        if not math.isnan(value) and (math.isnan(best) or value > best):
            best_index = index  # strictly greater: ties stay with the earlier grid point
    best = table[best_index]
    return {
        "model": best["model"],
        "metric": metric,
        "selected_by": "validation",
        "hparams": best["hparams"],
        "hp_hash": best["hp_hash"],
        "run_dir": best["run_dir"],
        "valid": best["valid"],
        "table": table,
    }


def write_selection(path: str | Path, selection: dict[str, Any]) -> None:
    """Write `selected/<model>.json` atomically."""
    files.write_json(path, selection)
