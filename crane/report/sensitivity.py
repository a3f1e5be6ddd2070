"""Sensitivity table: CRANE's test metric at each swept value of one hyper-parameter (the
others at the selected point), each value marked by the paired test against the full model
at its selected point (crane.report.paired_runs); the selected value is named."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from crane import layout
from crane.report.collect import RunCollection, read_run_metrics
from crane.report.naming import ablation_label, metric_label, seeds_spread, test_label
from crane.report.paired_runs import PAIRED_COLUMNS, compare, load_group
from crane.report.plots import SENSITIVITY_COLUMNS
from crane.report.tables import DASH, Cell, Row, Section, Table, format_mean_std

FULL_MODEL = layout.FULL_MODEL_VARIANT  # its final runs are the reference


def sensitivity_table(runs: RunCollection, selected: RunCollection, summary: pd.DataFrame,
                      datasets: Sequence[str], metric: str, seeds: Sequence[int],
                      test: str = "wilcoxon", pairing: str = "user_mean"
                      ) -> tuple[Table, pd.DataFrame]:
    """`summary` is plots.sensitivity_data of `runs`; `selected` holds the final CRANE runs."""
    references, chosen = {}, {}
    for dataset in summary["dataset"].unique():
        references[dataset], _ = load_group(selected, {"dataset": dataset, "model": FULL_MODEL},
                                            [metric])
        chosen[dataset] = selected_point(selected, dataset)
    records = []
    for _, row in summary.iterrows():
        group, _ = load_group(runs, {"dataset": row["dataset"], "param": row["param"],
                                     "param_value": row["param_value"]}, [metric])
        value = chosen[row["dataset"]].get(row["param"])
        records.append({**row.to_dict(),
                        **compare(group, references[row["dataset"]], metric, test, pairing),
                        "selected": value is not None and float(row["x"]) == float(value)})
    data = pd.DataFrame(records, columns=[*SENSITIVITY_COLUMNS, *PAIRED_COLUMNS, "selected"])

    rows = []
    for (param, value), group in data.groupby(["param", "x"], sort=False):
        label = f"{param} = {group['param_value'].iloc[0]}"
        if group["selected"].any():
            label += " (selected)"
        cells = []
        for dataset in datasets:
            found = group[group["dataset"] == dataset]
            if found.empty:
                cells.append(Cell(DASH))
                continue
            hit = found.iloc[0]
            cells.append(Cell(format_mean_std(hit["mean"], hit["std"]), mark=hit["mark"]))
        rows.append(Row(label, cells))
    notes = [f"Test {metric_label(metric)}, {seeds_spread(seeds)}, each value with the other "
             f"hyper-parameters at the selected point; – = no run.",
             f"** p < 0.01, * p < 0.05: "
             f"{test_label(test, pairing, 'that value', ablation_label(FULL_MODEL))}."]
    table = Table(caption="Sensitivity", key="sensitivity", stub_header="Value",
                  columns=[f"{d} {metric_label(metric)}" for d in datasets],
                  sections=[Section(None, rows)], notes=notes)
    return table, data


def selected_point(selected: RunCollection, dataset: str) -> dict[str, Any]:
    """The full model's selected point on `dataset` (its final runs' hparams); {} without one."""
    run_dirs = selected.run_dirs(dataset=dataset, model=FULL_MODEL)
    return (read_run_metrics(run_dirs[0]).get("hparams") or {}) if run_dirs else {}
