"""Find run folders and load them into tidy pandas frames.

A *run key* names one run: for final runs (dataset, model, seed), for ablations (dataset,
variant, seed), for sensitivity runs (dataset, param, param_value, seed). The collectors take the
keys that *should* exist, load the ones that do and report the others as missing, so that a
partial study still yields tables.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd
import pyarrow.parquet as pq

from crane import files
from crane import layout
from crane.report.naming import order_variants, with_mirror_gradient

# Scalar fields of metrics.json carried into the `runs` frame (absent ones become NaN).
RUN_SCALARS: tuple[str, ...] = (
    "best_epoch", "epochs_run", "seconds_per_epoch", "train_seconds", "eval_seconds",
    "peak_memory_mb", "flops_per_step",
)
SPLITS: tuple[str, ...] = ("valid", "test")


@dataclass(frozen=True)
class MissingRun:
    """An expected artifact that is not there (or not usable)."""

    kind: str  # "final", "ablation", "sensitivity", "user_metrics", "history", ...
    key: tuple[tuple[str, object], ...]
    path: Path

    def describe(self) -> str:
        keys = " ".join(f"{k}={v}" for k, v in self.key)
        return f"{self.kind}: {keys} (no {self.path})"


@dataclass
class RunCollection:
    """Runs found for a set of expected keys.

    runs:   one row per run found: the key columns, `run_dir`, and RUN_SCALARS.
    scores: long form, one row per (run, split, metric): key columns, split, metric, value.
    missing: the expected runs without a metrics.json.
    """

    key_columns: list[str]
    runs: pd.DataFrame
    scores: pd.DataFrame
    missing: list[MissingRun] = field(default_factory=list)

    def run_dirs(self, **where: object) -> list[Path]:
        """Run folders whose key columns equal `where` (in the collection's row order)."""
        mask = pd.Series(True, index=self.runs.index)
        for column, value in where.items():
            mask &= self.runs[column] == value
        return [Path(p) for p in self.runs.loc[mask, "run_dir"]]


# -- folder layout: crane/layout.py is the one source of truth ---------------------------------

final_run_dir = layout.final_run_dir
ablation_run_dir = layout.ablation_run_dir
sensitivity_run_dir = layout.sensitivity_run_dir
selection_path = layout.selection_path
stats_path = layout.stats_path
benchmark_path = layout.train_benchmark_path


# -- reading one run ---------------------------------------------------------------------------

def read_run_metrics(run_dir: Path) -> dict:
    """metrics.json of a run, checked for the fields the tables use."""
    path = Path(run_dir) / "metrics.json"
    try:
        metrics = files.read_json(path)
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(metrics, dict):
        raise ValueError(f"{path}: expected a JSON object")
    for split in SPLITS:
        if split not in metrics:
            raise ValueError(f"{path}: missing field {split!r}")
        block = metrics[split]
        if not isinstance(block, dict):
            raise ValueError(f"{path}: field {split!r} must map metric names to numbers")
        for name, value in block.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"{path}: field {split}.{name} is not a number: {value!r}")
    return metrics


def read_user_metrics(run_dir: Path, columns: Sequence[str]) -> pd.DataFrame:
    """Columns of user_metrics.parquet (always with user_id); errors name file and column."""
    path = Path(run_dir) / "user_metrics.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no per-user metrics")
    wanted = list(dict.fromkeys(["user_id", *columns]))
    available = set(pq.read_schema(path).names)
    absent = [c for c in wanted if c not in available]
    if absent:
        raise ValueError(f"{path}: missing column(s) {', '.join(absent)}")
    return pd.read_parquet(path, columns=wanted)


def read_history(run_dir: Path) -> pd.DataFrame:
    path = Path(run_dir) / "history.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no training history")
    history = pd.read_csv(path)
    if "epoch" not in history.columns:
        raise ValueError(f"{path}: missing column 'epoch'")
    return history


def history_metric_column(history: pd.DataFrame, metric: str, path: Path) -> str:
    """The history column holding the validation `metric` (bare, `valid_` or `valid/` prefix)."""
    for candidate in (metric, f"valid_{metric}", f"valid/{metric}"):
        if candidate in history.columns:
            return candidate
    raise ValueError(f"{path}: no column for validation {metric!r} "
                     f"(looked for {metric}, valid_{metric}, valid/{metric})")


def read_benchmark(path: Path) -> dict[str, float]:
    """Snakemake benchmark TSV -> {'s': wall seconds, 'max_rss': MB}, mean over repeats."""
    table = pd.read_csv(path, sep="\t", na_values=["-", "NA", ""])
    absent = [c for c in ("s", "max_rss") if c not in table.columns]
    if absent:
        raise ValueError(f"{path}: missing column(s) {', '.join(absent)}")
    return {column: float(table[column].astype(float).mean()) for column in ("s", "max_rss")}


# -- collecting many runs ----------------------------------------------------------------------

def collect_runs(kind: str, key_columns: Sequence[str],
                 expected: Iterable[tuple[Mapping[str, object], Path]]) -> RunCollection:
    """Load every expected (key, run_dir); those without metrics.json become `missing`."""
    key_columns = list(key_columns)
    clash = set(key_columns) & {"run_dir", "split", "metric", "value", *RUN_SCALARS}
    if clash:
        raise ValueError(f"run key column(s) {', '.join(sorted(clash))} clash with loaded fields")
    run_rows: list[dict] = []
    score_rows: list[dict] = []
    missing: list[MissingRun] = []
    for key, run_dir in expected:
        key = {column: key[column] for column in key_columns}
        if not (Path(run_dir) / "metrics.json").exists():
            missing.append(MissingRun(kind, tuple(key.items()), Path(run_dir) / "metrics.json"))
            continue
        metrics = read_run_metrics(run_dir)
        _check_key_agrees(metrics, key, Path(run_dir) / "metrics.json")
        run_rows.append({**key, "run_dir": str(run_dir),
                         **{name: _as_float(metrics.get(name)) for name in RUN_SCALARS}})
        for split in SPLITS:
            for metric, value in metrics[split].items():
                score_rows.append({**key, "split": split, "metric": metric, "value": float(value)})
    runs = pd.DataFrame(run_rows, columns=[*key_columns, "run_dir", *RUN_SCALARS])
    scores = pd.DataFrame(score_rows, columns=[*key_columns, "split", "metric", "value"])
    return RunCollection(key_columns, runs, scores, missing)


def collect_final_runs(results_dir: Path, datasets: Sequence[str], models: Sequence[str],
                       seeds: Sequence[int]) -> RunCollection:
    expected = (({"dataset": d, "model": m, "seed": s}, final_run_dir(results_dir, d, m, s))
                for d, m, s in itertools.product(datasets, models, seeds))
    return collect_runs("final", ["dataset", "model", "seed"], expected)


def collect_mirror_gradient_runs(results_dir: Path, datasets: Sequence[str],
                                 models: Sequence[str], seeds: Sequence[int]) -> RunCollection:
    """The Mirror Gradient runs of `models`, keyed like final runs of the model
    `<model>+mg` (naming.with_mirror_gradient), so that they are rows of the main table."""
    expected = (({"dataset": d, "model": m, "seed": s},
                 layout.mirror_gradient_run_dir(results_dir, d, m, s))
                for d, m, s in itertools.product(datasets, models, seeds))
    runs = collect_runs("mirror_gradient", ["dataset", "model", "seed"], expected)
    return RunCollection(
        runs.key_columns,
        runs.runs.assign(model=runs.runs["model"].map(with_mirror_gradient)),
        runs.scores.assign(model=runs.scores["model"].map(with_mirror_gradient)),
        [MissingRun(m.kind, tuple((k, with_mirror_gradient(v) if k == "model" else v)
                                  for k, v in m.key), m.path) for m in runs.missing])


def combine_runs(first: RunCollection, second: RunCollection) -> RunCollection:
    """One collection of two with the same key columns (final and Mirror Gradient runs)."""
    if first.key_columns != second.key_columns:
        raise ValueError(f"cannot combine runs keyed by {first.key_columns} and "
                         f"{second.key_columns}")
    return RunCollection(first.key_columns, _concat(first.runs, second.runs),
                         _concat(first.scores, second.scores), first.missing + second.missing)


def _concat(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    # pandas warns on concatenating an empty frame; the other one is then the answer.
    if not len(second):
        return first
    if not len(first):
        return second.reset_index(drop=True)
    return pd.concat([first, second], ignore_index=True)


def discover_ablation_variants(results_dir: Path, datasets: Sequence[str]) -> list[str]:
    found = set()
    for dataset in datasets:
        root = layout.ablations_root(results_dir, dataset)
        if root.is_dir():
            found.update(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if layout.final_run_dir(results_dir, dataset, layout.FULL_MODEL_VARIANT, "x").parent.is_dir():
            found.add(layout.FULL_MODEL_VARIANT)  # the full model's runs are the final ones
    return order_variants(sorted(found))


def collect_ablation_runs(results_dir: Path, datasets: Sequence[str], variants: Sequence[str],
                          seeds: Sequence[int]) -> RunCollection:
    expected = (({"dataset": d, "variant": v, "seed": s}, ablation_run_dir(results_dir, d, v, s))
                for d, v, s in itertools.product(datasets, variants, seeds))
    return collect_runs("ablation", ["dataset", "variant", "seed"], expected)


def discover_sensitivity(results_dir: Path, datasets: Sequence[str]) -> dict[str, list[str]]:
    """{param: [value folder names, numerically sorted]} over the datasets."""
    found: dict[str, set[str]] = {}
    for dataset in datasets:
        root = layout.sensitivity_root(results_dir, dataset)
        if not root.is_dir():
            continue
        for param_dir in root.iterdir():
            if param_dir.is_dir() and not param_dir.name.startswith("."):
                values = {p.name for p in param_dir.iterdir()
                          if p.is_dir() and not p.name.startswith(".")}
                found.setdefault(param_dir.name, set()).update(values)
    return {param: sort_values(values, layout.sensitivity_root(results_dir, "<dataset>") / param)
            for param, values in sorted(found.items())}


def sort_values(values: Iterable[str], where: Path) -> list[str]:
    """Value folder names sorted by their number; a non-numeric name is an error naming it."""
    return sorted(values, key=lambda v: parse_value(v, where))


def parse_value(value: str, where: Path) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{where / value}: sensitivity value folder must be a number") from None
    if math.isnan(number):
        raise ValueError(f"{where / value}: sensitivity value folder must be a number")
    return number


def collect_sensitivity_runs(results_dir: Path, datasets: Sequence[str],
                             grid: Mapping[str, Sequence[str]],
                             seeds: Sequence[int]) -> RunCollection:
    # `param_value`, not `value`: the scores frame already has a `value` column.
    expected = (({"dataset": d, "param": p, "param_value": v, "seed": s},
                 sensitivity_run_dir(results_dir, d, p, v, s))
                for d in datasets for p, values in grid.items() for v in values for s in seeds)
    return collect_runs("sensitivity", ["dataset", "param", "param_value", "seed"], expected)


def _check_key_agrees(metrics: dict, key: Mapping[str, object], path: Path) -> None:
    """A run folder whose metrics.json names another dataset or seed was misplaced."""
    for column in ("dataset", "seed", "model"):
        recorded = metrics.get(column)
        if column in key and recorded is not None and recorded != key[column]:
            raise ValueError(f"{path}: field {column!r} is {recorded!r} "
                             f"but the folder says {key[column]!r}")


def _as_float(value: object) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def load_user_metrics(runs: RunCollection, columns: Sequence[str],
                      **where: object) -> tuple[pd.DataFrame | None, list[MissingRun]]:
    """Per-user metrics of the runs matching `where`, stacked with their key columns.

    Returns (frame or None when no run has the file, runs whose file is missing).
    """
    mask = pd.Series(True, index=runs.runs.index)
    for column, value in where.items():
        mask &= runs.runs[column] == value
    frames, missing = [], []
    for _, run in runs.runs.loc[mask].iterrows():  # a handful of runs, not users
        key = {column: run[column] for column in runs.key_columns}
        path = Path(run["run_dir"]) / "user_metrics.parquet"
        if not path.exists():
            missing.append(MissingRun("user_metrics", tuple(key.items()), path))
            continue
        frame = read_user_metrics(Path(run["run_dir"]), columns)
        frames.append(frame.assign(**key))
    if not frames:
        return None, missing
    return pd.concat(frames, ignore_index=True), missing
