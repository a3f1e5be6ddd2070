"""Mean and spread over seeds.

The spread is the *sample* standard deviation (ddof=1): the seeds are a sample of the
possible seeds, and the sample std is what the literature reports. One seed has no std (NaN).
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd


def summarise_over_seeds(frame: pd.DataFrame, by: Sequence[str],
                         value: str = "value") -> pd.DataFrame:
    """One row per `by` group: by..., mean, std (ddof=1), n_seeds; groups sorted by `by`."""
    by = list(by)
    if frame.empty:
        return pd.DataFrame(columns=[*by, "mean", "std", "n_seeds"])
    summary = (frame.groupby(by, sort=True)[value]
               .agg(mean="mean", std=lambda s: s.std(ddof=1), n_seeds="count")
               .reset_index())
    summary["n_seeds"] = summary["n_seeds"].astype(int)
    return summary


def lookup(summary: pd.DataFrame, **where: object) -> pd.Series | None:
    """The single summary row matching `where`, or None."""
    mask = pd.Series(True, index=summary.index)
    for column, value in where.items():
        mask &= summary[column] == value
    rows = summary.loc[mask]
    if rows.empty:
        return None
    if len(rows) > 1:
        raise ValueError(f"more than one summary row for {where}")
    return rows.iloc[0]
