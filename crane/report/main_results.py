"""The main results table: models x (dataset, metric), mean ± std over seeds, the best in
bold, the second underlined, and a row with our model's improvement over the best baseline
marked by a paired significance test on per-user test metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

from crane.report import significance
from crane.report.aggregate import lookup, summarise_over_seeds
from crane.report.collect import MissingRun, RunCollection, load_user_metrics
from crane.report.naming import (MAIN_METRICS, OURS, base_model, group_label, group_of,
                                 grouped_models, metric_label, model_label, seeds_spread,
                                 test_label)
from crane.report.tables import (DASH, Cell, Row, Section, Table, format_mean_std,
                                 rank_emphasis)

SIGNIFICANCE_COLUMNS = ["dataset", "metric", "ours", "baseline", "ours_mean", "baseline_mean",
                        "improvement_pct", "test", "pairing", "n_pairs", "mean_difference",
                        "statistic", "p_value", "mark"]


@dataclass
class MainResults:
    table: Table
    data: pd.DataFrame  # dataset, model, group, metric, mean, std, n_seeds, emphasis
    significance: pd.DataFrame  # SIGNIFICANCE_COLUMNS, one row per (dataset, metric)
    missing: list[MissingRun] = field(default_factory=list)


def summarise_test_metrics(runs: RunCollection, metrics: Sequence[str]) -> pd.DataFrame:
    """Summary over seeds of the test metrics: dataset, model, metric, mean, std, n_seeds."""
    scores = runs.scores
    scores = scores[(scores["split"] == "test") & scores["metric"].isin(list(metrics))]
    return summarise_over_seeds(scores, ["dataset", "model", "metric"])


def main_results(runs: RunCollection, datasets: Sequence[str], models: Sequence[str],
                 seeds: Sequence[int], metrics: Sequence[str] = MAIN_METRICS,
                 ours: str = "crane", test: str = "wilcoxon",
                 pairing: str = "user_mean") -> MainResults:
    summary = summarise_test_metrics(runs, metrics)
    columns = [(dataset, metric) for dataset in datasets for metric in metrics]

    # Emphasis per column, over every model (ours included).
    emphasis: dict[tuple[str, str, str], str] = {}
    for dataset, metric in columns:
        means = [_mean(summary, dataset, model, metric) for model in models]
        for model, mark in zip(models, rank_emphasis(means)):
            emphasis[(dataset, model, metric)] = mark

    sections = []
    for group, members in grouped_models(models, ours):
        rows = []
        for model in members:
            cells = []
            for dataset, metric in columns:
                row = lookup(summary, dataset=dataset, model=model, metric=metric)
                text = DASH if row is None else format_mean_std(row["mean"], row["std"])
                cells.append(Cell(text, emphasis.get((dataset, model, metric), "")))
            rows.append(Row(model_label(model), cells))
        sections.append(Section(group_label(group, ours), rows))

    missing = list(runs.missing)
    tests = pd.DataFrame(columns=SIGNIFICANCE_COLUMNS)
    compared = _compared_with_baselines(models, ours)
    if compared:
        frames, rows = [], []
        for model in compared:
            found, user_missing = _improvements(runs, summary, columns, models, model, ours,
                                                test, pairing)
            missing.extend(user_missing)
            frames.append(found)
            rows.append(Row(f"{model_label(model)} improvement",
                            [_improvement_cell(found, dataset, metric)
                             for dataset, metric in columns]))
        tests = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        sections.append(Section(None, rows))

    table = Table(
        caption=("Test performance: mean ± std over seeds" if len(seeds) > 1
                 else f"Test performance on one seed ({seeds[0]})"),
        key="main",
        stub_header="Model",
        columns=[metric_label(metric) for _, metric in columns],
        column_groups=[(dataset, len(metrics)) for dataset in datasets],
        sections=sections,
        notes=_notes(seeds, compared, test, pairing, tests, runs.missing, missing),
    )
    data = summary.assign(group=[group_of(m, ours) for m in summary["model"]],
                          emphasis=[emphasis.get((d, m, k), "") for d, m, k in
                                    zip(summary["dataset"], summary["model"], summary["metric"])])
    data = _in_table_order(data, datasets, models, metrics)
    data = data[["dataset", "model", "group", "metric", "mean", "std", "n_seeds", "emphasis"]]
    return MainResults(table, data, tests, missing)


def _mean(summary: pd.DataFrame, dataset: str, model: str, metric: str) -> float:
    row = lookup(summary, dataset=dataset, model=model, metric=metric)
    return math.nan if row is None else float(row["mean"])


def _compared_with_baselines(models, ours) -> list[str]:
    """The models with an improvement row: `ours` first, then its presets (CRANE (scalable));
    none without `ours` or without a baseline. Mirror Gradient rows of ours get none."""
    if ours not in models or all(group_of(m, ours) == OURS for m in models):
        return []
    presets = [m for m in models if group_of(m, ours) == OURS and m not in (ours,)
               and base_model(m) == m]
    return [ours, *presets]


def _improvements(runs, summary, columns, models, model, ours, test, pairing):
    """Per column: `model` (ours or a preset of it) vs the best baseline (by mean), relative
    improvement and paired test."""
    metrics = sorted({metric for _, metric in columns})
    user_frames: dict[tuple[str, str], pd.DataFrame | None] = {}
    missing: list[MissingRun] = []

    def per_user(dataset: str, model: str) -> pd.DataFrame | None:
        if (dataset, model) not in user_frames:
            frame, absent = load_user_metrics(runs, metrics, dataset=dataset, model=model)
            user_frames[(dataset, model)] = frame
            missing.extend(absent)
        return user_frames[(dataset, model)]

    records = []
    for dataset, metric in columns:
        ours_mean = _mean(summary, dataset, model, metric)
        # Our model's presets and its Mirror Gradient runs are ours too, not baselines.
        baselines = [(m, _mean(summary, dataset, m, metric)) for m in models
                     if group_of(m, ours) != OURS]
        baselines = [(m, v) for m, v in baselines if not math.isnan(v)]
        if math.isnan(ours_mean) or not baselines:
            continue
        # The first of the models tied at the highest mean (config order) is "the best".
        best_model, best_mean = max(baselines, key=lambda mv: mv[1])
        improvement = (ours_mean - best_mean) / best_mean * 100 if best_mean > 0 else math.nan
        ours_users, base_users = per_user(dataset, model), per_user(dataset, best_model)
        if ours_users is None or base_users is None:
            result = significance.PairedTestResult(test, pairing, 0, math.nan, math.nan, math.nan)
        else:
            result = significance.compare_per_user(ours_users, base_users, metric, test, pairing)
        records.append({
            "dataset": dataset, "metric": metric, "ours": model, "baseline": best_model,
            "ours_mean": ours_mean, "baseline_mean": best_mean, "improvement_pct": improvement,
            "test": result.test, "pairing": result.pairing, "n_pairs": result.n_pairs,
            "mean_difference": result.mean_difference, "statistic": result.statistic,
            "p_value": result.p_value, "mark": result.mark,
        })
    return pd.DataFrame(records, columns=SIGNIFICANCE_COLUMNS), missing


def _improvement_cell(tests: pd.DataFrame, dataset: str, metric: str) -> Cell:
    row = tests[(tests["dataset"] == dataset) & (tests["metric"] == metric)]
    if row.empty or math.isnan(row.iloc[0]["improvement_pct"]):
        return Cell(DASH)
    row = row.iloc[0]
    return Cell(f"{row['improvement_pct']:+.2f}%", mark=row["mark"])


def _in_table_order(data: pd.DataFrame, datasets, models, metrics) -> pd.DataFrame:
    order = {"dataset": list(datasets), "model": list(models), "metric": list(metrics)}
    keys = {c: data[c].map({v: i for i, v in enumerate(order[c])}) for c in order}
    return data.assign(**{f"_{c}": k for c, k in keys.items()}).sort_values(
        ["_dataset", "_model", "_metric"]).drop(columns=[f"_{c}" for c in order]).reset_index(drop=True)


def _notes(seeds, compared, test, pairing, tests, missing_runs, missing_all) -> list[str]:
    notes = [
        f"Test metrics at the best validation epoch of the selected hyper-parameters; "
        f"{seeds_spread(seeds)}; a cell from a single seed shows the mean only; – = no run.",
        "Per column the best mean is in bold and the second best underlined "
        "(compared at 4 decimals; tied models share the emphasis).",
    ]
    for model in compared:
        notes.append(
            f"{model_label(model)} improvement = ({model_label(model)} mean - best baseline "
            f"mean) / best baseline mean. ** p < 0.01, * p < 0.05: "
            f"{test_label(test, pairing, model_label(model), 'that baseline')}.")
    if not tests.empty:
        parts = []
        # the best baseline of a column is the same for every compared model
        for dataset, rows in tests[tests["ours"] == compared[0]].groupby("dataset", sort=False):
            by_baseline = rows.groupby("baseline", sort=False)["metric"].apply(list)
            parts.append(f"{dataset}: " + ", ".join(
                f"{model_label(b)} ({', '.join(metric_label(m) for m in ms)})"
                for b, ms in by_baseline.items()))
        notes.append("Best baseline: " + "; ".join(parts) + ".")
    absent = sorted(" ".join(f"{k}={v}" for k, v in m.key) for m in missing_runs)
    if absent:
        notes.append("Missing runs: " + "; ".join(absent) + ".")
    no_users = sorted(" ".join(f"{k}={v}" for k, v in m.key)
                      for m in missing_all if m.kind == "user_metrics")
    if no_users:
        notes.append("No per-user metrics (left out of the significance test): "
                     + "; ".join(no_users) + ".")
    return notes
