"""A group of runs against a reference group on the same users and seeds: an ablation variant
or a sensitivity point against the full model at its selected point.

Two views of the same comparison. The per-user paired test (crane.report.significance, the
main table's test and pairing) asks whether the variant ranks the test users differently;
the seed-paired difference (variant minus reference, per seed, then mean and standard error
over the seeds both ran) is what "within two standard errors" statements use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from crane.report.collect import MissingRun, RunCollection, load_user_metrics
from crane.report.significance import compare_per_user

# The columns `compare` adds to a table's data.
PAIRED_COLUMNS = ["test", "pairing", "n_pairs", "p_value", "mark", "n_seed_pairs",
                  "seed_difference", "seed_difference_se"]


@dataclass(frozen=True)
class RunGroup:
    """The runs of one side, read once: per-user test metrics (None when no run has them)
    and each metric's test value per seed."""

    users: pd.DataFrame | None
    by_seed: dict[str, dict[int, float]]


def load_group(runs: RunCollection, where: Mapping[str, Any], metrics: Sequence[str]
               ) -> tuple[RunGroup, list[MissingRun]]:
    """The runs matching `where`, with the runs whose per-user metrics are missing."""
    users, missing = load_user_metrics(runs, list(metrics), **where)
    scores = runs.scores
    mask = scores["split"] == "test"
    for column, value in where.items():
        mask &= scores[column] == value
    by_seed: dict[str, dict[int, float]] = {m: {} for m in metrics}
    for seed, metric, value in zip(scores.loc[mask, "seed"], scores.loc[mask, "metric"],
                                   scores.loc[mask, "value"]):
        if metric in by_seed:
            by_seed[metric][int(seed)] = float(value)
    return RunGroup(users, by_seed), missing


def compare(group: RunGroup, reference: RunGroup, metric: str, test: str = "wilcoxon",
            pairing: str = "user_mean") -> dict[str, Any]:
    """PAIRED_COLUMNS of `group` against `reference` on the test split's `metric`; NaN where
    a side has no run."""
    record: dict[str, Any] = {"test": test, "pairing": pairing, "n_pairs": 0,
                              "p_value": math.nan, "mark": ""}
    if group.users is not None and reference.users is not None:
        result = compare_per_user(group.users, reference.users, metric, test, pairing)
        record.update(n_pairs=result.n_pairs, p_value=result.p_value, mark=result.mark)
    ours, theirs = group.by_seed[metric], reference.by_seed[metric]
    differences = [ours[seed] - theirs[seed] for seed in sorted(ours) if seed in theirs]
    n = len(differences)
    record.update(n_seed_pairs=n,
                  seed_difference=float(np.mean(differences)) if n else math.nan,
                  seed_difference_se=float(np.std(differences, ddof=1) / math.sqrt(n))
                  if n > 1 else math.nan)
    return record
