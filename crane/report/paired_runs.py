"""A group of runs against a reference group on the same users and seeds: an ablation variant
or a sensitivity point against the full model at its selected point.

Two views of the same comparison. The per-user paired test (crane.report.significance, the
main table's test and pairing) asks whether the variant ranks the test users differently;
the seed-paired difference (variant minus reference, per seed, then mean and standard error
over the seeds both ran) is what "within two standard errors" statements use.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from crane.report.collect import MissingRun, RunCollection, load_user_metrics
from crane.report.significance import compare_per_user

# The columns compare_runs adds to a table's data.
PAIRED_COLUMNS = ["test", "pairing", "n_pairs", "p_value", "mark", "n_seed_pairs",
                  "seed_difference", "seed_difference_se"]


def compare_runs(runs: RunCollection, where: Mapping[str, Any], reference: RunCollection,
                 reference_where: Mapping[str, Any], metric: str, test: str = "wilcoxon",
                 pairing: str = "user_mean") -> tuple[dict[str, Any], list[MissingRun]]:
    """PAIRED_COLUMNS of the runs matching `where` against the reference runs matching
    `reference_where`, on the test split's `metric`; NaN where a side has no run."""
    ours, missing = load_user_metrics(runs, [metric], **where)
    theirs, absent = load_user_metrics(reference, [metric], **reference_where)
    missing += absent
    record: dict[str, Any] = {"test": test, "pairing": pairing, "n_pairs": 0,
                              "p_value": math.nan, "mark": ""}
    if ours is not None and theirs is not None:
        result = compare_per_user(ours, theirs, metric, test, pairing)
        record.update(n_pairs=result.n_pairs, p_value=result.p_value, mark=result.mark)
    differences = _seed_differences(runs, where, reference, reference_where, metric)
    n = len(differences)
    record.update(n_seed_pairs=n,
                  seed_difference=float(np.mean(differences)) if n else math.nan,
                  seed_difference_se=float(np.std(differences, ddof=1) / math.sqrt(n))
                  if n > 1 else math.nan)
    return record, missing


def _seed_differences(runs, where, reference, reference_where, metric) -> list[float]:
    ours = _test_metric_by_seed(runs, where, metric)
    theirs = _test_metric_by_seed(reference, reference_where, metric)
    return [ours[seed] - theirs[seed] for seed in sorted(ours) if seed in theirs]


def _test_metric_by_seed(runs: RunCollection, where: Mapping[str, Any], metric: str
                         ) -> dict[int, float]:
    scores = runs.scores
    mask = (scores["split"] == "test") & (scores["metric"] == metric)
    for column, value in where.items():
        mask &= scores[column] == value
    return {int(seed): float(value) for seed, value in
            zip(scores.loc[mask, "seed"], scores.loc[mask, "value"])}
