"""Where every artifact lives under the results folder (docs/layout.md): one place, so the
workflow, the trainer and the report can never disagree about a path.

Everything a training produces sits under `<results>/<dataset>/runs/`, so that DVC can track
raw data, processed data, features and runs as separate stage outputs.

The workflow's rules build their output patterns from these functions by passing wildcards
(`"{dataset}"`, `"{seed}"`, ...) as arguments, so no path is spelt twice; every function is
plain string formatting for that reason (tests/workflow/test_layout_patterns.py).
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


def acquired_path(results: str | Path, dataset: str) -> Path:
    """The record of what was acquired (written last by `crane acquire`)."""
    return raw_dir(results, dataset) / "acquired.json"


def images_report_path(results: str | Path, dataset: str) -> Path:
    return raw_dir(results, dataset) / "images.json"


def interactions_path(results: str | Path, dataset: str) -> Path:
    return data_dir(results, dataset) / "interactions.parquet"


def items_path(results: str | Path, dataset: str) -> Path:
    return data_dir(results, dataset) / "items.parquet"


def stats_path(results: str | Path, dataset: str) -> Path:
    return data_dir(results, dataset) / "stats.json"


def stats_table_path(results: str | Path, dataset: str) -> Path:
    return data_dir(results, dataset) / "stats.md"


def feature_dir(results: str | Path, dataset: str, modality: str, encoder: str) -> Path:
    return dataset_root(results, dataset) / "features" / f"{modality}-{encoder}"


def feature_matrix_path(results: str | Path, dataset: str, modality: str, encoder: str) -> Path:
    return feature_dir(results, dataset, modality, encoder) / "features.npy"


def feature_manifest_path(results: str | Path, dataset: str, modality: str,
                          encoder: str) -> Path:
    return feature_dir(results, dataset, modality, encoder) / "manifest.json"


def graph_dir(results: str | Path, dataset: str) -> Path:
    """The kNN graph caches (files keyed by feature content hash and k)."""
    return dataset_root(results, dataset) / "graphs"


def graph_record_path(results: str | Path, dataset: str, graph: str) -> Path:
    """The record of one planned graph (crane/graphs/plan.py `KnnGraph.name`): which cache
    file holds it, for which features."""
    return graph_dir(results, dataset) / f"{graph}.json"


def runs_root(results: str | Path, dataset: str) -> Path:
    return dataset_root(results, dataset) / "runs"


def runs_index_path(results: str | Path, dataset: str) -> Path:
    return runs_root(results, dataset) / "index.json"


def run_metrics_path(run_dir: str | Path) -> Path:
    """Written last by a run: its presence means the run finished."""
    return Path(run_dir) / "metrics.json"


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


def modality_ablation_root(results: str | Path, dataset: str) -> Path:
    return runs_root(results, dataset) / "modality_ablation"


# A modality set's folder name: its modalities, sorted, joined by "+" ("image+text").
MODALITY_SET_SEPARATOR = "+"


def modality_set_name(modalities) -> str:
    return MODALITY_SET_SEPARATOR.join(sorted(modalities))


def modality_ablation_run_dir(results: str | Path, dataset: str, model: str, modalities: str,
                              seed: int | str) -> Path:
    """A run of `model` fed only the features of `modalities` (a set name, modality_set_name).
    The set of all the dataset's modalities is the final run itself, which
    crane/study.py reads from there instead of training it twice."""
    return modality_ablation_root(results, dataset) / model / modalities / f"seed{seed}"


def modality_ablation_table_path(results: str | Path, dataset: str, suffix: str) -> Path:
    """The modality-ablation table of one dataset (`suffix`: csv, md, html)."""
    return tables_dir(results) / "modality_ablation" / f"{dataset}.{suffix}"


def mirror_gradient_root(results: str | Path, dataset: str) -> Path:
    return runs_root(results, dataset) / "mirror_gradient"


def mirror_gradient_run_dir(results: str | Path, dataset: str, model: str,
                            seed: int | str) -> Path:
    """A run of `model` at its selected point, trained with Mirror Gradient."""
    return mirror_gradient_root(results, dataset) / model / f"seed{seed}"


def sensitivity_root(results: str | Path, dataset: str) -> Path:
    return runs_root(results, dataset) / "sensitivity"


def sensitivity_run_dir(results: str | Path, dataset: str, param: str, value: Any,
                        seed: int | str) -> Path:
    return sensitivity_root(results, dataset) / param / str(value) / f"seed{seed}"


def logs_dir(results: str | Path, dataset: str) -> Path:
    return dataset_root(results, dataset) / "logs"


def log_path(results: str | Path, dataset: str, job: str) -> Path:
    """A job's log; `job` may hold a subfolder (`runs/<model>_<hp>_seed<N>`)."""
    return logs_dir(results, dataset) / f"{job}.log"


def study_log_path(results: str | Path, job: str) -> Path:
    """The log of a job over the whole study (the tables)."""
    return Path(results) / "logs" / f"{job}.log"


def benchmarks_dir(results: str | Path, dataset: str) -> Path:
    return dataset_root(results, dataset) / "benchmarks"


def benchmark_path(results: str | Path, dataset: str, job: str) -> Path:
    """Snakemake's time and memory record of a job."""
    return benchmarks_dir(results, dataset) / f"{job}.tsv"


def train_benchmark_path(results: str | Path, dataset: str, model: str, seed: int | str) -> Path:
    """The final run's record, which the efficiency table reads."""
    return benchmark_path(results, dataset, f"train_{model}_seed{seed}")


def tables_dir(results: str | Path) -> Path:
    return Path(results) / "tables"


def table_path(results: str | Path, name: str) -> Path:
    """One table or plot of the report (`main.md`, `metrics.json`, ...)."""
    return tables_dir(results) / name


HEADLINE_METRICS_FOLDER = "headline_metrics"


def headline_metrics_name(dataset: str, model: str) -> str:
    """A model's headline-metrics file, relative to the tables folder (one file per row of
    `dvc metrics show`)."""
    return f"{HEADLINE_METRICS_FOLDER}/{dataset}/{model}.json"
