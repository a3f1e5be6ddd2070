"""The headline test metrics, one small JSON file per dataset and model, for `dvc metrics`.

`metrics.json` holds every test metric of every model in one nested object, which
`dvc metrics show` flattens into a single row of hundreds of columns. DVC prints one row per
metrics file, so this folder has one file per (dataset, model):

    headline_metrics/<dataset>/<model>.json   {"recall@20": {"mean": .., "std": ..}, ..., "seeds": n}

and `dvc metrics show` reads as a table: one row per model, one column per headline number.
`std` is the sample standard deviation over seeds (null with a single seed, which DVC shows
as an empty cell rather than a misleading 0).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from crane import files, layout

if TYPE_CHECKING:  # pandas only for the annotations: keeps this module light
    import pandas as pd

HEADLINE_METRICS: tuple[str, ...] = ("recall@20", "ndcg@20")
FOLDER = layout.HEADLINE_METRICS_FOLDER
# A model's headline file, relative to the tables folder (the rules and dvc.yaml list each).
file_name = layout.headline_metrics_name


def headline_metrics(scores: pd.DataFrame, metrics: Sequence[str] = HEADLINE_METRICS,
                     decimals: int = 6) -> dict[str, dict[str, dict]]:
    """{dataset: {model: {metric: {"mean", "std"}, "seeds": n}}} over the test split.

    `scores` is the long frame of the final runs (crane.report.collect: dataset, model, seed,
    split, metric, value). A headline metric that a model's runs lack is an error: it means
    the runs were made with other metrics than the report asks for.
    """
    test = scores[scores["split"] == "test"]
    result: dict[str, dict[str, dict]] = {}
    for (dataset, model), runs in test.groupby(["dataset", "model"], sort=True):
        entry: dict = {}
        for metric in metrics:
            values = runs.loc[runs["metric"] == metric, "value"].astype(float)
            if values.empty:
                known = ", ".join(sorted(runs["metric"].unique()))
                raise ValueError(f"headline metrics: the test metrics of {dataset}/{model} have "
                                 f"no {metric!r} (they have: {known}); compute it in training "
                                 "or choose headline metrics among these")
            entry[metric] = {"mean": _rounded(values.mean(), decimals),
                             "std": _rounded(values.std(ddof=1), decimals)}
        entry["seeds"] = int(runs["seed"].nunique())
        result.setdefault(str(dataset), {})[str(model)] = entry
    return result


def write_headline_metrics(scores: pd.DataFrame, out_dir: str | Path,
                           metrics: Sequence[str] = HEADLINE_METRICS) -> dict[str, Path]:
    """Write <out_dir>/headline_metrics/<dataset>/<model>.json; return {relative name: path}.

    The folder is replaced whole, so that a model or dataset dropped from the study leaves no
    stale row behind in `dvc metrics show`.
    """
    out_dir = Path(out_dir)
    table = headline_metrics(scores, metrics)
    written: dict[str, Path] = {}
    with files.atomic_dir(out_dir / FOLDER) as tmp:
        for dataset, models in table.items():
            for model, entry in models.items():
                files.write_json(tmp / dataset / f"{model}.json", entry)
                written[file_name(dataset, model)] = out_dir / file_name(dataset, model)
    return written


def _rounded(value: float, decimals: int) -> float | None:
    return None if math.isnan(value) else round(float(value), decimals)
