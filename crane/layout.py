"""Where every artifact lives under the results folder (docs/layout.md): one place, so the
workflow, the trainer and the report can never disagree about a path.

Everything a training produces sits under `<results>/<dataset>/runs/`, so that DVC can track
raw data, processed data, features and runs as separate stage outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def dataset_root(results: str | Path, dataset: str) -> Path:
    return Path(results) / dataset


def raw_dir(results: str | Path, dataset: str) -> Path:
    return dataset_root(results, dataset) / "raw"


def data_dir(results: str | Path, dataset: str) -> Path:
    return dataset_root(results, dataset) / "data"


def stats_path(results: str | Path, dataset: str) -> Path:
    return data_dir(results, dataset) / "stats.json"


def feature_dir(results: str | Path, dataset: str, modality: str, encoder: str) -> Path:
    return dataset_root(results, dataset) / "features" / f"{modality}-{encoder}"


def graph_dir(results: str | Path, dataset: str) -> Path:
    return dataset_root(results, dataset) / "graphs"


def runs_root(results: str | Path, dataset: str) -> Path:
    return dataset_root(results, dataset) / "runs"


def grid_runs_root(results: str | Path, dataset: str, model: str) -> Path:
    return runs_root(results, dataset) / "grid" / model


def grid_run_dir(results: str | Path, dataset: str, model: str, hp: str, seed: int | str) -> Path:
    return grid_runs_root(results, dataset, model) / hp / f"seed{seed}"


def selection_path(results: str | Path, dataset: str, model: str) -> Path:
    return runs_root(results, dataset) / "selected" / f"{model}.json"


def final_run_dir(results: str | Path, dataset: str, model: str, seed: int | str) -> Path:
    return runs_root(results, dataset) / "final" / model / f"seed{seed}"


def ablations_root(results: str | Path, dataset: str) -> Path:
    return runs_root(results, dataset) / "ablations"


# The ablation variant with no switch flipped is the final CRANE run itself (same point, same
# seed, same data): it is read from there instead of being trained twice.
FULL_MODEL_VARIANT = "crane"


def ablation_run_dir(results: str | Path, dataset: str, variant: str, seed: int | str) -> Path:
    if variant == FULL_MODEL_VARIANT:
        return final_run_dir(results, dataset, FULL_MODEL_VARIANT, seed)
    return ablations_root(results, dataset) / variant / f"seed{seed}"


def sensitivity_root(results: str | Path, dataset: str) -> Path:
    return runs_root(results, dataset) / "sensitivity"


def sensitivity_run_dir(results: str | Path, dataset: str, param: str, value: Any,
                        seed: int | str) -> Path:
    return sensitivity_root(results, dataset) / param / str(value) / f"seed{seed}"


def logs_dir(results: str | Path, dataset: str) -> Path:
    return dataset_root(results, dataset) / "logs"


def benchmarks_dir(results: str | Path, dataset: str) -> Path:
    return dataset_root(results, dataset) / "benchmarks"


def train_benchmark_path(results: str | Path, dataset: str, model: str, seed: int | str) -> Path:
    return benchmarks_dir(results, dataset) / f"train_{model}_seed{seed}.tsv"


def tables_dir(results: str | Path) -> Path:
    return Path(results) / "tables"
