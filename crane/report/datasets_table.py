"""Dataset statistics table from each dataset's data/stats.json."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from crane import files
from crane.report.collect import MissingRun, stats_path
from crane.report.tables import DASH, Cell, Row, Section, Table

COUNT_FIELDS = ("users", "items", "interactions", "train", "valid", "test")
COLUMNS = ["dataset", *COUNT_FIELDS, "sparsity"]


def read_stats(path: Path) -> dict:
    stats = files.read_json(path)
    if not isinstance(stats, dict):
        raise ValueError(f"{path}: expected a JSON object")
    for name in COUNT_FIELDS:
        value = stats.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{path}: field {name!r} must be a non-negative integer, got {value!r}")
    if stats["users"] == 0 or stats["items"] == 0:
        raise ValueError(f"{path}: users and items must be positive")
    return stats


def dataset_statistics(results_dir: Path, datasets: Sequence[str]
                       ) -> tuple[Table, pd.DataFrame, list[MissingRun]]:
    records, missing, rows = [], [], []
    for dataset in datasets:
        path = stats_path(results_dir, dataset)
        if not path.exists():
            missing.append(MissingRun("stats", (("dataset", dataset),), path))
            rows.append(Row(dataset, [Cell(DASH)] * (len(COUNT_FIELDS) + 1)))
            continue
        stats = read_stats(path)
        # Sparsity from the counts (not the stored field) so its definition is fixed here.
        sparsity = 1.0 - stats["interactions"] / (stats["users"] * stats["items"])
        records.append({"dataset": dataset, **{k: stats[k] for k in COUNT_FIELDS},
                        "sparsity": sparsity})
        cells = [Cell(f"{stats[k]:,}") for k in COUNT_FIELDS] + [Cell(f"{sparsity * 100:.2f}%")]
        rows.append(Row(dataset, cells))
    table = Table(
        caption="Dataset statistics after preprocessing",
        key="datasets",
        stub_header="Dataset",
        columns=["Users", "Items", "Interactions", "Train", "Valid", "Test", "Sparsity"],
        sections=[Section(None, rows)],
        notes=["Sparsity = 1 - interactions / (users x items). Train / Valid / Test: "
               "interactions in each split."]
              + ([f"No statistics for: {', '.join(m.key[0][1] for m in missing)}."] if missing else []),
    )
    return table, pd.DataFrame(records, columns=COLUMNS), missing
