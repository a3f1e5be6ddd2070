"""Efficiency table: training cost per model, from the runs' metrics.json and, when present,
Snakemake's benchmark files of the training rule (results/<dataset>/benchmarks/)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from crane.report.collect import RunCollection, benchmark_path, read_benchmark, read_history
from crane.report.naming import model_label
from crane.report.tables import DASH, Cell, Row, Section, Table, format_number

# (column in the data, header, decimals)
FIELDS: tuple[tuple[str, str, int], ...] = (
    ("seconds_per_epoch", "s / epoch", 2),
    ("gflops_per_step", "Dense GFLOP / step", 3),
    ("best_epoch", "Best epoch", 1),
    ("seconds_to_best", "s to best epoch", 1),
    ("epochs_run", "Epochs run", 1),
    ("train_seconds", "Train time (s)", 1),
    ("peak_memory_mb", "Peak memory (MB)", 0),
    ("benchmark_s", "Job wall time (s)", 1),
    ("benchmark_max_rss", "Job max RSS (MB)", 0),
)
COLUMNS = ["dataset", "model", "n_seeds", *(name for name, _, _ in FIELDS)]


def efficiency_table(results_dir: Path, runs: RunCollection, datasets: Sequence[str],
                     models: Sequence[str], seeds: Sequence[int]) -> tuple[Table, pd.DataFrame]:
    per_run = runs.runs.copy()
    bench = [_benchmark(results_dir, d, m, s) for d, m, s in
             zip(per_run["dataset"], per_run["model"], per_run["seed"])]
    per_run["benchmark_s"] = [b["s"] for b in bench]
    per_run["benchmark_max_rss"] = [b["max_rss"] for b in bench]
    per_run["gflops_per_step"] = per_run["flops_per_step"] / 1e9
    per_run["seconds_to_best"] = [seconds_to_best(Path(r), b) for r, b in
                                  zip(per_run["run_dir"], per_run["best_epoch"])]
    names = [name for name, _, _ in FIELDS]
    means = (per_run.groupby(["dataset", "model"], sort=False)[names].mean()
             if not per_run.empty else pd.DataFrame(columns=names))
    counts = per_run.groupby(["dataset", "model"], sort=False).size()

    records, sections = [], []
    for dataset in datasets:
        rows = []
        for model in models:
            if (dataset, model) not in means.index:
                rows.append(Row(model_label(model), [Cell(DASH)] * len(FIELDS)))
                continue
            values = means.loc[(dataset, model)]
            rows.append(Row(model_label(model), [Cell(format_number(float(values[name]), decimals))
                                                 for name, _, decimals in FIELDS]))
            records.append({"dataset": dataset, "model": model,
                            "n_seeds": int(counts.loc[(dataset, model)]),
                            **{name: float(values[name]) for name in names}})
        sections.append(Section(dataset, rows))
    table = Table(
        caption="Training efficiency", key="efficiency", stub_header="Model",
        columns=[header for _, header, _ in FIELDS], sections=sections,
        notes=[f"Means over the seeds found ({', '.join(map(str, seeds))} requested). Best epoch: "
               "epoch of the best validation score (epochs to converge); s to best epoch: "
               "training and validation seconds up to it (time to converge, from the run's "
               "history); dense GFLOP / step: the matrix products of one training step "
               "(forward and backward) as torch's FLOP counter sees them, sparse graph products "
               "and elementwise work not included (so 0 for BPR-MF and LightGCN); train time: whole "
               "training run; peak memory as the trainer recorded it; job wall time and max RSS "
               "from Snakemake's benchmark of the training job (– when not benchmarked)."])
    return table, pd.DataFrame(records, columns=COLUMNS)


def seconds_to_best(run_dir: Path, best_epoch: float) -> float:
    """Training and validation seconds of the epochs up to the best validation epoch; NaN
    for a run without a history (or without a best epoch)."""
    if not math.isfinite(best_epoch) or not (run_dir / "history.csv").exists():
        return math.nan
    history = read_history(run_dir)
    reached = history[history["epoch"] <= best_epoch]
    seconds = reached["seconds"] if "seconds" in reached.columns else 0.0
    if "eval_seconds" in reached.columns:
        seconds = seconds + reached["eval_seconds"].fillna(0.0)
    return float(seconds.sum()) if len(reached) else math.nan


def _benchmark(results_dir: Path, dataset: str, model: str, seed: int) -> dict[str, float]:
    path = benchmark_path(results_dir, dataset, model, seed)
    if not path.exists():
        return {"s": math.nan, "max_rss": math.nan}
    return read_benchmark(path)
