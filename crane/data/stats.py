"""Dataset statistics: computed from the processed split, printed as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crane import files
from crane.data.processed import TEST, TRAIN, VALID, Interactions, load_interactions

TABLE_COLUMNS = [
    ("users", "users"), ("items", "items"), ("interactions", "interactions"),
    ("sparsity", "sparsity"), ("train", "train"), ("valid", "valid"), ("test", "test"),
    ("min_user_degree", "min u-deg"), ("mean_user_degree", "mean u-deg"),
    ("min_item_degree", "min i-deg"),
]


def compute_stats(interactions: Interactions) -> dict[str, Any]:
    """Counts, sparsity, split sizes and degree extremes (all splits together)."""
    n = len(interactions.user)
    user_degree = np.bincount(interactions.user, minlength=interactions.n_users)
    item_degree = np.bincount(interactions.item, minlength=interactions.n_items)
    split_counts = np.bincount(interactions.split.astype(np.int64), minlength=3)
    cells = interactions.n_users * interactions.n_items
    return {
        "users": int(interactions.n_users),
        "items": int(interactions.n_items),
        "interactions": int(n),
        "sparsity": float(1.0 - n / cells) if cells else 1.0,
        "train": int(split_counts[TRAIN]),
        "valid": int(split_counts[VALID]),
        "test": int(split_counts[TEST]),
        "min_user_degree": int(user_degree.min()) if len(user_degree) else 0,
        "mean_user_degree": float(user_degree.mean()) if len(user_degree) else 0.0,
        "max_user_degree": int(user_degree.max()) if len(user_degree) else 0,
        "min_item_degree": int(item_degree.min()) if len(item_degree) else 0,
        "max_item_degree": int(item_degree.max()) if len(item_degree) else 0,
    }


def dataset_stats(data_dir: str | Path) -> dict[str, Any]:
    """stats.json of a processed folder, with the counts recomputed from its interactions."""
    data_dir = Path(data_dir)
    recorded = files.read_json(data_dir / "stats.json") if (data_dir / "stats.json").exists() \
        else {}
    computed = compute_stats(load_interactions(data_dir))
    mismatched = [key for key in ("interactions", "train", "valid", "test")
                  if key in recorded and recorded[key] != computed[key]]
    if mismatched:
        raise ValueError(f"{data_dir / 'stats.json'}: {mismatched} disagree with "
                         f"interactions.parquet: stale or edited folder")
    return {**recorded, **computed}


def format_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """A markdown table, one row per (dataset name, stats)."""
    header = ["dataset"] + [label for _, label in TABLE_COLUMNS]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    for name, stats in rows:
        cells = [name] + [_format_value(key, stats.get(key)) for key, _ in TABLE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _format_value(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key == "sparsity":
        return f"{100 * value:.3f}%"
    if isinstance(value, float):
        return f"{value:.2f}"
    return f"{value:,}"
