"""Model files, hyper-parameter grids and the tuning policy: select on VALIDATION, never on test.

A model's file, `<model>.yaml` in the packaged crane/configs/models (or in a folder given by the
config's `models_dir` / `crane train --model-config`), holds:

- `defaults`: every hyper-parameter the model's constructor reads;
- `grid`: model key -> list of values searched on the tuning seed;
- `training` (optional): the trainer settings this model sets for itself, `defaults` (key ->
  value) and `grid` (key -> values, each key also in `defaults`); only the keys of
  crane.engine.settings.MODEL_TRAINING_KEYS;
- `description`, and for CRANE `ablations` and `sensitivity`;
- `preset_of: <model>` (a preset): the named model's file with this file's `defaults` laid
  over its defaults (only keys the model has), its grid without the keys the preset fixes,
  its `training` block unless the preset gives one; no `ablations` or `sensitivity`.

A run's hyper-parameter point is flat: the model's defaults and its training defaults, with
one value per grid key (model grid keys first, then training grid keys, each in file order).
Its `hp_hash` names its run folder; crane.engine.settings.split_point separates the trainer
settings again. Tested in tests/engine/test_engine_tuning.py.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Iterable

import yaml

from crane import files
from crane.configs import MODELS_DIR
from crane.engine.settings import MODEL_TRAINING_KEYS, TrainingConfig, split_point

MODEL_FILE_KEYS = {"description", "defaults", "grid", "training", "ablations", "sensitivity",
                   "preset_of"}
TRAINING_BLOCK_KEYS = ("defaults", "grid")


def model_configs_dir(configured: str | Path | None = None) -> Path:
    """The folder of model files: `configured` when given (relative to the working
    directory), else the packaged crane/configs/models."""
    return Path(configured) if configured else MODELS_DIR


def model_config_path(model: str, config_dir: str | Path | None = None) -> Path:
    """`<model>.yaml` in `model_configs_dir(config_dir)`; it need not exist."""
    return model_configs_dir(config_dir) / f"{model}.yaml"


def load_model_config(model: str, config_dir: str | Path | None = None) -> dict[str, Any]:
    """The checked content of `<model>.yaml`: `defaults`, `grid` and `training` (with its own
    `defaults` and `grid`) always present, other sections passed through as they are.

    Every problem is a ValueError naming the file and the key.
    """
    path = model_config_path(model, config_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no hyper-parameter file for model {model!r}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with 'defaults' and 'grid'")
    unknown = sorted(set(raw) - MODEL_FILE_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {unknown}; expected "
                         f"{sorted(MODEL_FILE_KEYS)}")
    if "preset_of" in raw:
        return _preset(raw, path, config_dir)
    if "defaults" not in raw:
        raise ValueError(f"{path}: missing 'defaults' (every hyper-parameter the model reads)")
    defaults = _mapping(raw.get("defaults"), path, "defaults")
    grid = _grid(raw.get("grid"), path, "grid")
    for where, keys in (("defaults", defaults), ("grid", grid)):
        trainer = sorted(set(keys) & set(TrainingConfig.keys()))
        if trainer:
            raise ValueError(f"{path}: {where}: {trainer} are trainer settings; a model sets "
                             f"them in its `training:` block")
    training = _training_block(raw.get("training"), path)
    shared = sorted(set(training["defaults"]) & set(defaults))
    if shared:
        raise ValueError(f"{path}: {shared} both in defaults and in training.defaults")
    return {**raw, "defaults": defaults, "grid": grid, "training": training}


def _preset(raw: dict[str, Any], path: Path, config_dir: str | Path | None) -> dict[str, Any]:
    """A preset's file resolved over the file of the model it names (see the module doc)."""
    base_name = raw["preset_of"]
    if not isinstance(base_name, str) or not model_config_path(base_name, config_dir).exists():
        raise ValueError(f"{path}: preset_of: {base_name!r} names no model file")
    misplaced = sorted(set(raw) & {"ablations", "sensitivity", "grid"})
    if misplaced:
        raise ValueError(f"{path}: a preset takes no {misplaced}: it searches its model's grid")
    base = load_model_config(base_name, config_dir)
    if "preset_of" in base:
        raise ValueError(f"{path}: preset_of: {base_name!r} is itself a preset")
    fixed = _mapping(raw.get("defaults"), path, "defaults")
    unknown = sorted(set(fixed) - set(base["defaults"]))
    if unknown:
        raise ValueError(f"{path}: defaults: {unknown} are not hyper-parameters of "
                         f"{base_name!r} ({model_config_path(base_name, config_dir)})")
    training = (_training_block(raw["training"], path) if "training" in raw
                else base["training"])
    return {"description": raw.get("description", base.get("description")),
            "preset_of": base_name, "defaults": {**base["defaults"], **fixed},
            "grid": {k: v for k, v in base["grid"].items() if k not in fixed},
            "training": training}


def _mapping(value: Any, path: Path, where: str) -> dict[str, Any]:
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise ValueError(f"{path}: '{where}' must be a mapping")
    return dict(value)


def _grid(value: Any, path: Path, where: str) -> dict[str, list[Any]]:
    grid = _mapping(value, path, where)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{path}: {where} key {key!r} must be a non-empty list")
    return {k: list(v) for k, v in grid.items()}


def _training_block(value: Any, path: Path) -> dict[str, dict[str, Any]]:
    """The `training:` block: trainer settings the model sets, each key a MODEL_TRAINING_KEYS
    member, every grid key with a default (so the default point has a value for it)."""
    block = _mapping(value, path, "training")
    unknown = sorted(set(block) - set(TRAINING_BLOCK_KEYS))
    if unknown:
        raise ValueError(f"{path}: training: unknown key(s) {unknown}; expected "
                         f"{list(TRAINING_BLOCK_KEYS)}")
    defaults = _mapping(block.get("defaults"), path, "training.defaults")
    grid = _grid(block.get("grid"), path, "training.grid")
    for where, keys in (("training.defaults", defaults), ("training.grid", grid)):
        for key in keys:
            if key not in MODEL_TRAINING_KEYS:
                raise ValueError(f"{path}: {where}: unknown key {key!r}; a model file may set "
                                 f"only {list(MODEL_TRAINING_KEYS)}")
    missing = [k for k in grid if k not in defaults]
    if missing:
        raise ValueError(f"{path}: training.grid key(s) {missing} need a value in "
                         f"training.defaults")
    return {"defaults": defaults, "grid": grid}


def with_overrides(model_cfg: dict[str, Any], overrides: dict[str, Any] | None,
                   where: str = "model_overrides") -> dict[str, Any]:
    """`model_cfg` with fixed values: a model key replaces its default, a key of the training
    block its training default; either way the key leaves its grid. A trainer setting the
    training block does not declare is an error naming `where` and the key."""
    overrides = dict(overrides or {})
    model_values, training_values = split_point(where, overrides, training_keys(model_cfg))
    training = model_cfg.get("training") or {}
    return {
        **model_cfg,
        "defaults": {**(model_cfg.get("defaults") or {}), **model_values},
        "grid": {k: v for k, v in (model_cfg.get("grid") or {}).items() if k not in overrides},
        "training": {
            "defaults": {**(training.get("defaults") or {}), **training_values},
            "grid": {k: v for k, v in (training.get("grid") or {}).items()
                     if k not in overrides},
        },
    }


def with_grid(model_cfg: dict[str, Any], grid: dict[str, list[Any]] | None,
              where: str = "grid_overrides") -> dict[str, Any]:
    """`model_cfg` searching other values: each key of `grid` replaces the values its model
    grid or training grid searches (a reduced grid for a study that cannot afford the file's).
    A key the model file does not search, or an empty list, is an error naming `where`."""
    grid = dict(grid or {})
    model_grid = dict(model_cfg.get("grid") or {})
    training = model_cfg.get("training") or {}
    training_grid = dict(training.get("grid") or {})
    for key, values in grid.items():
        if key not in model_grid and key not in training_grid:
            searched = sorted(model_grid) + sorted(training_grid)
            raise ValueError(f"{where}: {key!r} is not searched by the model file's grid "
                             f"(searched: {searched or 'none'}); a value to fix belongs in "
                             f"model_overrides")
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where}.{key}: expected a non-empty list of values, got {values!r}")
        (model_grid if key in model_grid else training_grid)[key] = list(values)
    return {**model_cfg, "grid": model_grid,
            "training": {"defaults": dict(training.get("defaults") or {}), "grid": training_grid}}


def training_keys(model_cfg: dict[str, Any]) -> tuple[str, ...]:
    """The trainer settings a model file declares (its `training.defaults` keys)."""
    return tuple((model_cfg.get("training") or {}).get("defaults") or {})


def declared_training_keys(model: str, config_dir: str | Path | None = None
                           ) -> tuple[str, ...]:
    """`training_keys` of the model's file; () for a model without one (test doubles)."""
    if not model_config_path(model, config_dir).exists():
        return ()
    return training_keys(load_model_config(model, config_dir))


def default_point(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """The model's defaults and its training defaults: the point of `tuning: default`."""
    training = (model_cfg.get("training") or {}).get("defaults") or {}
    return {**(model_cfg.get("defaults") or {}), **training}


def default_hparams(model: str, config_dir: str | Path | None = None,
                    **overrides: Any) -> dict[str, Any]:
    """The model's default point from its file, with `overrides` on top."""
    return {**default_point(load_model_config(model, config_dir)), **overrides}


def grid_points(model_cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Cartesian product over the grid keys merged over the default point: model grid keys
    first, then training grid keys, each in file order (the order ties are broken in)."""
    grid = {**(model_cfg.get("grid") or {}),
            **((model_cfg.get("training") or {}).get("grid") or {})}
    base = default_point(model_cfg)
    if not grid:
        return [base]
    keys = list(grid)
    return [{**base, **dict(zip(keys, values))}
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
