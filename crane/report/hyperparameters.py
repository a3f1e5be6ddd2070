"""Selected hyper-parameters per model and dataset (results/<dataset>/selected/<model>.json).

Where a model has no selection file (e.g. `tuning: default`) the hyper-parameters recorded
in its final runs' metrics.json are shown instead, and the table says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from crane import files
from crane.report.collect import MissingRun, RunCollection, read_run_metrics, selection_path
from crane.report.naming import metric_label, model_label
from crane.report.tables import DASH, Cell, Row, Section, Table

COLUMNS = ["dataset", "model", "source", "hp_hash", "param", "value", "selection_metric",
           "valid_score", "grid_points"]
SELECTION_FIELDS = ("model", "hparams", "hp_hash", "metric")


def read_selection(path: Path) -> dict:
    """A selection file, with its searched points under `points` (as docs/layout.md and the
    brief describe, `valid` a metric dict) or `table` (as crane.tuning writes it, `valid` the
    selection metric's value); both are accepted."""
    selection = files.read_json(path)
    if not isinstance(selection, dict):
        raise ValueError(f"{path}: expected a JSON object")
    for name in SELECTION_FIELDS:
        if name not in selection:
            raise ValueError(f"{path}: missing field {name!r}")
    if not isinstance(selection["hparams"], dict):
        raise ValueError(f"{path}: field 'hparams' must be an object")
    points_field = "points" if "points" in selection else "table"
    points = selection.get(points_field)
    if not isinstance(points, list):
        raise ValueError(f"{path}: missing field 'points' (or 'table'): the list of grid points")
    for i, point in enumerate(points):
        if not isinstance(point, dict) or "hp_hash" not in point or "valid" not in point:
            raise ValueError(f"{path}: {points_field}[{i}] needs fields 'hp_hash' and 'valid'")
    return selection


def selected_valid_score(selection: dict) -> tuple[float, int]:
    """(validation score of the selected point, number of points searched)."""
    points = selection.get("points", selection.get("table", []))
    metric = selection["metric"]
    chosen = [p for p in points if p["hp_hash"] == selection["hp_hash"]]
    if not chosen:
        return math.nan, len(points)
    valid = chosen[0]["valid"]
    score = valid.get(metric, math.nan) if isinstance(valid, dict) else valid
    return float(score if score is not None else math.nan), len(points)


def format_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, sort_keys=True)


def format_hparams(hparams: dict) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in sorted(hparams.items())) or "(none)"


def selected_hyperparameters(results_dir: Path, runs: RunCollection, datasets: Sequence[str],
                             models: Sequence[str]
                             ) -> tuple[Table, pd.DataFrame, list[MissingRun]]:
    records, sections, missing = [], [], []
    fallback_used = False
    for dataset in datasets:
        rows = []
        for model in models:
            entry = _selection_entry(results_dir, runs, dataset, model)
            if entry is None:
                missing.append(MissingRun("selection", (("dataset", dataset), ("model", model)),
                                          selection_path(results_dir, dataset, model)))
                rows.append(Row(model_label(model), [Cell(DASH)] * 4))
                continue
            fallback_used |= entry["source"] == "final_run"
            score = entry["valid_score"]
            validation = (DASH if math.isnan(score)
                          else f"{metric_label(entry['metric'])} {score:.4f}")
            points = str(entry["grid_points"]) if entry["grid_points"] else DASH
            rows.append(Row(model_label(model), [
                Cell(format_hparams(entry["hparams"])), Cell(validation), Cell(points),
                Cell(entry["hp_hash"][:8] if entry["hp_hash"] else DASH)]))
            for param, value in sorted(entry["hparams"].items()) or [("", None)]:
                records.append({
                    "dataset": dataset, "model": model, "source": entry["source"],
                    "hp_hash": entry["hp_hash"], "param": param,
                    "value": "" if value is None and not param else format_value(value),
                    "selection_metric": entry["metric"], "valid_score": score,
                    "grid_points": entry["grid_points"]})
        sections.append(Section(dataset, rows))
    notes = ["Selected on the first seed by validation score (never the test set); "
             "Validation = the selected point's validation score; Grid points = points searched; "
             "hash = first 8 characters of the hyper-parameter hash."]
    if fallback_used:
        notes.append("Models without a selection file show the hyper-parameters recorded in "
                     "their final runs (no grid was searched).")
    table = Table(caption="Selected hyper-parameters", key="hyperparameters",
                  stub_header="Model",
                  columns=["Hyper-parameters", "Validation", "Grid points", "Hash"],
                  sections=sections, notes=notes, align="lrrl")
    return table, pd.DataFrame(records, columns=COLUMNS), missing


def _selection_entry(results_dir: Path, runs: RunCollection, dataset: str, model: str
                     ) -> dict | None:
    path = selection_path(results_dir, dataset, model)
    if path.exists():
        selection = read_selection(path)
        score, n_points = selected_valid_score(selection)
        return {"source": "selection", "hparams": selection["hparams"],
                "hp_hash": selection["hp_hash"], "metric": selection["metric"],
                "valid_score": score, "grid_points": n_points}
    run_dirs = runs.run_dirs(dataset=dataset, model=model)
    if not run_dirs:
        return None
    metrics = read_run_metrics(run_dirs[0])
    return {"source": "final_run", "hparams": metrics.get("hparams") or {},
            "hp_hash": metrics.get("hp_hash") or "", "metric": "", "valid_score": math.nan,
            "grid_points": 0}
