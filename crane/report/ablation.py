"""Ablation table: one row per CRANE variant (results/<dataset>/ablations/<variant>/), test
metrics mean ± std over seeds, best in bold and second underlined per column, each variant
marked by the paired test against the full model (crane.report.paired_runs)."""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from crane import layout
from crane.report.aggregate import lookup, summarise_over_seeds
from crane.report.collect import RunCollection
from crane.report.naming import MAIN_METRICS, ablation_label, metric_label, seeds_spread, test_label
from crane.report.paired_runs import PAIRED_COLUMNS, compare, load_group
from crane.report.tables import DASH, Cell, Row, Section, Table, format_mean_std, rank_emphasis

FULL_VARIANT = layout.FULL_MODEL_VARIANT
COLUMNS = ["dataset", "variant", "metric", "mean", "std", "n_seeds", "change_vs_full_pct",
           "emphasis", *PAIRED_COLUMNS]


def ablation_table(runs: RunCollection, datasets: Sequence[str], variants: Sequence[str],
                   seeds: Sequence[int], metrics: Sequence[str] = MAIN_METRICS,
                   test: str = "wilcoxon", pairing: str = "user_mean"
                   ) -> tuple[Table, pd.DataFrame]:
    scores = runs.scores
    scores = scores[(scores["split"] == "test") & scores["metric"].isin(list(metrics))]
    summary = summarise_over_seeds(scores, ["dataset", "variant", "metric"])
    columns = [(d, m) for d in datasets for m in metrics]

    def mean(dataset: str, variant: str, metric: str) -> float:
        row = lookup(summary, dataset=dataset, variant=variant, metric=metric)
        return math.nan if row is None else float(row["mean"])

    emphasis = {}
    for dataset, metric in columns:
        marks = rank_emphasis([mean(dataset, v, metric) for v in variants])
        emphasis.update({(dataset, v, metric): e for v, e in zip(variants, marks)})
    paired, no_users = {}, []
    for dataset in datasets:
        full, absent = load_group(runs, {"dataset": dataset, "variant": FULL_VARIANT}, metrics)
        no_users += absent
        for variant in variants:
            if variant == FULL_VARIANT:
                continue
            group, absent = load_group(runs, {"dataset": dataset, "variant": variant}, metrics)
            no_users += absent
            for metric in metrics:
                if lookup(summary, dataset=dataset, variant=variant, metric=metric) is not None:
                    paired[(dataset, variant, metric)] = compare(group, full, metric, test,
                                                                 pairing)
    no_users = [m for m in no_users if m.kind == "user_metrics"]
    rows = []
    for variant in variants:
        cells = []
        for dataset, metric in columns:
            row = lookup(summary, dataset=dataset, variant=variant, metric=metric)
            text = DASH if row is None else format_mean_std(row["mean"], row["std"])
            mark = paired.get((dataset, variant, metric), {}).get("mark", "")
            cells.append(Cell(text, emphasis[(dataset, variant, metric)], mark))
        rows.append(Row(ablation_label(variant), cells))
    notes = [f"Test metrics, {seeds_spread(seeds)}; best per column in bold, second "
             f"underlined; – = no run.",
             f"** p < 0.01, * p < 0.05: "
             f"{test_label(test, pairing, 'the variant', ablation_label(FULL_VARIANT))}."]
    absent = sorted(" ".join(f"{k}={v}" for k, v in m.key) for m in runs.missing)
    if absent:
        notes.append("Missing runs: " + "; ".join(absent) + ".")
    if not variants:
        notes.append("No ablation runs were found.")
    no_users = sorted({" ".join(f"{k}={v}" for k, v in m.key) for m in no_users})
    if no_users:
        notes.append("No per-user metrics (left out of the test): " + "; ".join(no_users) + ".")
    table = Table(caption="Ablation study", key="ablation", stub_header="Variant",
                  columns=[metric_label(m) for _, m in columns],
                  column_groups=[(d, len(metrics)) for d in datasets] if datasets else None,
                  sections=[Section(None, rows)], notes=notes)

    records = []
    for dataset in datasets:
        for variant in variants:
            for metric in metrics:
                row = lookup(summary, dataset=dataset, variant=variant, metric=metric)
                if row is None:
                    continue
                full = mean(dataset, FULL_VARIANT, metric)
                change = ((row["mean"] - full) / full * 100
                          if not math.isnan(full) and full > 0 else math.nan)
                records.append({"dataset": dataset, "variant": variant, "metric": metric,
                                "mean": row["mean"], "std": row["std"],
                                "n_seeds": row["n_seeds"], "change_vs_full_pct": change,
                                "emphasis": emphasis[(dataset, variant, metric)],
                                **paired.get((dataset, variant, metric), {})})
    return table, pd.DataFrame(records, columns=COLUMNS)
