"""Modality-ablation table of one dataset: each content model trained on the features of one
modality set (text only, image only, both: results/<dataset>/runs/modality_ablation/), test
Recall@20 and NDCG@20 mean ± std over seeds, and the change against all of the dataset's
modalities (whose runs are the final runs). ID-only baselines, which read no features, sit in
a section of their own for reference.

A model that needs a modality by construction (its `required_modalities`) has no run on a set
without it: its cell says so instead of a number.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from crane import layout
from crane.report.aggregate import lookup, summarise_over_seeds
from crane.report.collect import RunCollection, collect_runs
from crane.report.naming import metric_label, model_label, seeds_spread
from crane.report.tables import DASH, Cell, Row, Section, Table, format_mean_std, write_table

METRICS = ("recall@20", "ndcg@20")
ID_ONLY = "none"  # the column group of the ID-only baselines
COLUMNS = ["dataset", "model", "modalities", "metric", "mean", "std", "n_seeds",
           "change_vs_all_pct", "note"]


def missing_modalities(required: Sequence[str], modalities: str) -> list[str]:
    """The required modalities that the set `modalities` (a set name) lacks."""
    have = set(modalities.split(layout.MODALITY_SET_SEPARATOR))
    return sorted(set(required) - have)


def run_dir(results_dir: Path, dataset: str, model: str, modalities: str, all_set: str,
            seed: int) -> Path:
    """The run of one cell: the final run for the set of all the dataset's modalities."""
    if modalities == all_set:
        return layout.final_run_dir(results_dir, dataset, model, seed)
    return layout.modality_ablation_run_dir(results_dir, dataset, model, modalities, seed)


def collect_modality_runs(results_dir: Path, dataset: str, models: Sequence[str],
                          sets: Sequence[str], all_set: str, seeds: Sequence[int],
                          required: Mapping[str, Sequence[str]] | None = None,
                          baselines: Sequence[str] = ()) -> RunCollection:
    """The runs of every cell that is run (and the baselines' final runs, set `none`)."""
    required = required or {}
    expected = [({"dataset": dataset, "model": m, "modalities": s, "seed": seed},
                 run_dir(results_dir, dataset, m, s, all_set, seed))
                for m in models for s in sets if not missing_modalities(required.get(m, ()), s)
                for seed in seeds]
    expected += [({"dataset": dataset, "model": m, "modalities": ID_ONLY, "seed": seed},
                  layout.final_run_dir(results_dir, dataset, m, seed))
                 for m in baselines for seed in seeds]
    return collect_runs("modality_ablation", ["dataset", "model", "modalities", "seed"], expected)


def set_label(modalities: str) -> str:
    if modalities == ID_ONLY:
        return "ID only"
    return " + ".join(modalities.split(layout.MODALITY_SET_SEPARATOR))


def modality_ablation_table(runs: RunCollection, dataset: str, models: Sequence[str],
                            sets: Sequence[str], all_set: str, seeds: Sequence[int],
                            required: Mapping[str, Sequence[str]] | None = None,
                            baselines: Sequence[str] = (), metrics: Sequence[str] = METRICS
                            ) -> tuple[Table, pd.DataFrame]:
    required = required or {}
    scores = runs.scores
    scores = scores[(scores["split"] == "test") & scores["metric"].isin(list(metrics))]
    summary = summarise_over_seeds(scores, ["dataset", "model", "modalities", "metric"])
    groups = list(sets) + ([ID_ONLY] if baselines else [])

    def row_of(model: str, modalities: str, metric: str):
        return lookup(summary, dataset=dataset, model=model, modalities=modalities,
                      metric=metric)

    def change(model: str, modalities: str, metric: str, mean: float) -> float:
        full = row_of(model, all_set, metric)
        if modalities in (all_set, ID_ONLY) or full is None or not full["mean"] > 0:
            return math.nan
        return (mean - float(full["mean"])) / float(full["mean"]) * 100

    records, marked = [], []

    def cells(model: str, own_groups: Sequence[str]) -> list[Cell]:
        out = []
        for modalities in groups:
            for metric in metrics:
                needs = missing_modalities(required.get(model, ()), modalities) \
                    if modalities != ID_ONLY else []
                row = row_of(model, modalities, metric) if modalities in own_groups else None
                if needs:
                    note = f"needs {' and '.join(needs)}"
                    out.append(Cell(f"n/a ({note})"))
                    marked.append((model, modalities, note))
                    records.append({"dataset": dataset, "model": model, "modalities": modalities,
                                    "metric": metric, "mean": math.nan, "std": math.nan,
                                    "n_seeds": 0, "change_vs_all_pct": math.nan, "note": note})
                    continue
                if row is None:
                    out.append(Cell(DASH))
                    continue
                delta = change(model, modalities, metric, float(row["mean"]))
                text = format_mean_std(row["mean"], row["std"])
                if not math.isnan(delta):
                    text += f" ({delta:+.1f}%)"
                out.append(Cell(text))
                records.append({"dataset": dataset, "model": model, "modalities": modalities,
                                "metric": metric, "mean": row["mean"], "std": row["std"],
                                "n_seeds": row["n_seeds"], "change_vs_all_pct": delta,
                                "note": ""})
        return out

    sections = [Section("Content models", [Row(model_label(m), cells(m, sets)) for m in models])]
    if baselines:
        sections.append(Section("ID-only baselines",
                                [Row(model_label(m), cells(m, [ID_ONLY])) for m in baselines]))
    notes = [f"{dataset}: test metrics, {seeds_spread(seeds)}; in brackets the change against "
             f"all of the dataset's modalities ({set_label(all_set)}, the main table's runs); "
             f"– = no run."]
    if marked:
        notes.append("n/a: the model needs that modality by construction, so it has no run "
                     "without it.")
    absent = sorted(" ".join(f"{k}={v}" for k, v in m.key) for m in runs.missing)
    if absent:
        notes.append("Missing runs: " + "; ".join(absent) + ".")
    table = Table(caption=f"Modality ablation ({dataset})", key=f"modality_ablation_{dataset}",
                  stub_header="Model", columns=[metric_label(m) for _ in groups for m in metrics],
                  column_groups=[(set_label(g), len(metrics)) for g in groups],
                  sections=sections, notes=notes)
    return table, pd.DataFrame(records, columns=COLUMNS)


def write_modality_ablation(results_dir: str | Path, out_dir: str | Path, dataset: str,
                            models: Sequence[str], sets: Sequence[str], all_set: str,
                            seeds: Sequence[int],
                            required: Mapping[str, Sequence[str]] | None = None,
                            baselines: Sequence[str] = ()) -> tuple[dict[str, Path], RunCollection]:
    """<out_dir>/<dataset>.md/.tex/.html/.csv (out_dir: tables/modality_ablation)."""
    if all_set not in sets:
        raise ValueError(f"modality ablation of {dataset}: the set of all its modalities "
                         f"{all_set!r} must be among the sets {list(sets)} (it is the baseline "
                         f"of the change column)")
    runs = collect_modality_runs(Path(results_dir), dataset, models, sets, all_set, seeds,
                                 required, baselines)
    table, data = modality_ablation_table(runs, dataset, models, sets, all_set, seeds,
                                          required, baselines)
    return write_table(table, data, Path(out_dir), dataset), runs
