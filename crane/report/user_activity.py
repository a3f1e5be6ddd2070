"""Results by user activity: a test metric averaged over the users of each training-activity
bin (number of training interactions), per model, mean ± std over seeds."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from crane.report.aggregate import lookup, summarise_over_seeds
from crane.report.collect import MissingRun, RunCollection, load_user_metrics
from crane.report.naming import DEFAULT_EDGES, group_label, grouped_models, metric_label, model_label
from crane.report.tables import DASH, Cell, Row, Section, Table, format_mean_std, rank_emphasis

COLUMNS = ["dataset", "model", "bin", "users", "mean", "std", "n_seeds"]


def bin_labels(edges: Sequence[int]) -> list[str]:
    """Labels of bins 0..len(edges): below the first edge, [e_i, e_i+1), and the last edge up."""
    edges = validate_edges(edges)
    labels = [f"<{edges[0]}"]
    for low, high in zip(edges[:-1], edges[1:]):
        labels.append(f"{low}-{high - 1}" if high - 1 > low else f"{low}")
    labels.append(f"{edges[-1]}+")
    return labels


def validate_edges(edges: Sequence[int]) -> list[int]:
    edges = [int(e) for e in edges]
    if not edges or any(e < 1 for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"activity bin edges must be increasing positive integers, got {edges}")
    return edges


def assign_bins(n_train: pd.Series, edges: Sequence[int]) -> pd.Series:
    """Bin label of each user's training-interaction count."""
    labels = np.array(bin_labels(edges))
    index = np.searchsorted(np.asarray(edges), n_train.to_numpy(), side="right")
    return pd.Series(labels[index], index=n_train.index)


def user_activity(runs: RunCollection, datasets: Sequence[str], models: Sequence[str],
                  edges: Sequence[int] = DEFAULT_EDGES, metric: str = "recall@20",
                  ours: str = "crane") -> tuple[Table, pd.DataFrame, list[MissingRun]]:
    labels = bin_labels(edges)
    per_seed, users, missing = [], [], []
    for dataset in datasets:
        for model in models:
            frame, absent = load_user_metrics(runs, [metric, "n_train"], dataset=dataset,
                                              model=model)
            missing.extend(absent)
            if frame is None:
                continue
            frame = frame.assign(bin=assign_bins(frame["n_train"], edges))
            per_seed.append(frame.groupby(["dataset", "model", "seed", "bin"], sort=True)[metric]
                            .mean().rename("value").reset_index())
            users.append(frame[["dataset", "bin", "user_id"]])
    if per_seed:
        summary = summarise_over_seeds(pd.concat(per_seed, ignore_index=True),
                                       ["dataset", "model", "bin"])
        counts = (pd.concat(users).drop_duplicates().groupby(["dataset", "bin"]).size()
                  .rename("users").reset_index())
    else:
        summary = summarise_over_seeds(pd.DataFrame(columns=["dataset", "model", "bin", "value"]),
                                       ["dataset", "model", "bin"])
        counts = pd.DataFrame(columns=["dataset", "bin", "users"])
    # The bin below the first edge is shown only when some user falls in it.
    shown = [b for b in labels if b != labels[0] or (counts["bin"] == labels[0]).any()]

    def n_users(dataset: str, label: str) -> int:
        row = lookup(counts, dataset=dataset, bin=label)
        return 0 if row is None else int(row["users"])

    columns = [(d, b) for d in datasets for b in shown]
    emphasis = {}
    for dataset, label in columns:
        means = []
        for model in models:
            row = lookup(summary, dataset=dataset, model=model, bin=label)
            means.append(np.nan if row is None else float(row["mean"]))
        emphasis.update({(dataset, m, label): e for m, e in zip(models, rank_emphasis(means))})
    sections = []
    for group, members in grouped_models(models, ours):
        rows = []
        for model in members:
            cells = []
            for dataset, label in columns:
                row = lookup(summary, dataset=dataset, model=model, bin=label)
                text = DASH if row is None else format_mean_std(row["mean"], row["std"])
                cells.append(Cell(text, emphasis[(dataset, model, label)]))
            rows.append(Row(model_label(model), cells))
        sections.append(Section(group_label(group, ours), rows))
    table = Table(
        caption=f"Test {metric_label(metric)} by user activity (training interactions)",
        key="user_activity", stub_header="Model",
        columns=[f"{label} (n={n_users(d, label):,})" for d, label in columns],
        column_groups=[(d, len(shown)) for d in datasets], sections=sections,
        notes=[f"Users binned by their number of training interactions (n = test users in the "
               f"bin); {metric_label(metric)} averaged over the bin's users per seed, then mean ± "
               f"sample std (ddof=1) over seeds; best per column in bold, second underlined."])
    data = summary.merge(counts, on=["dataset", "bin"], how="left")
    order = {label: i for i, label in enumerate(labels)}
    model_order = {m: i for i, m in enumerate(models)}
    data_order = {d: i for i, d in enumerate(datasets)}
    data = (data.assign(_d=data["dataset"].map(data_order), _m=data["model"].map(model_order),
                        _b=data["bin"].map(order))
            .sort_values(["_d", "_m", "_b"]).reset_index(drop=True))
    return table, data[COLUMNS], missing
