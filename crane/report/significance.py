"""Paired significance tests on per-user metrics (ours vs the best baseline).

Pairing. Users are the unit of the test: the same test users are scored by both models on
every seed. By default (`pairing="user_mean"`) each user's metric is first averaged over the
seeds both models have, which gives one pair per user and keeps pairs independent across
users. `pairing="concat"` instead treats every (seed, user) as a pair; it has more pairs, but
the pairs of one user are not independent, so its p-values come out smaller than they should.

Tests. Two-sided Wilcoxon signed-rank (scipy's default zero handling `wilcox`: zero
differences are dropped) by default, or a paired t-test. When every difference is zero the
models are indistinguishable and p = 1 (scipy would warn and may return NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from crane.report.naming import PAIRINGS, TESTS  # noqa: E402  (re-exported)
# (threshold, mark): the first threshold that p is below gives the mark.
SIGNIFICANCE_LEVELS: tuple[tuple[float, str], ...] = ((0.01, "**"), (0.05, "*"))


@dataclass(frozen=True)
class PairedTestResult:
    test: str
    pairing: str
    n_pairs: int
    mean_difference: float  # mean of ours - baseline over the pairs
    statistic: float
    p_value: float

    @property
    def mark(self) -> str:
        return significance_mark(self.p_value)


def significance_mark(p_value: float) -> str:
    if p_value is None or math.isnan(p_value):
        return ""
    for threshold, mark in SIGNIFICANCE_LEVELS:
        if p_value < threshold:
            return mark
    return ""


def paired_test(ours: np.ndarray, baseline: np.ndarray, test: str = "wilcoxon",
                pairing: str = "user_mean") -> PairedTestResult:
    """Two-sided paired test of `ours` against `baseline` (equal-length arrays of pairs)."""
    if test not in TESTS:
        raise ValueError(f"unknown significance test {test!r}; choose from {', '.join(TESTS)}")
    ours = np.asarray(ours, dtype=np.float64)
    baseline = np.asarray(baseline, dtype=np.float64)
    if ours.shape != baseline.shape or ours.ndim != 1:
        raise ValueError(f"paired test needs two 1-d arrays of equal length, "
                         f"got shapes {ours.shape} and {baseline.shape}")
    n = len(ours)
    if n == 0:
        return PairedTestResult(test, pairing, 0, math.nan, math.nan, math.nan)
    difference = ours - baseline
    mean_difference = float(difference.mean())
    if not np.any(difference):
        return PairedTestResult(test, pairing, n, 0.0, 0.0, 1.0)
    if n < 2:
        return PairedTestResult(test, pairing, n, mean_difference, math.nan, math.nan)
    if test == "wilcoxon":
        result = stats.wilcoxon(ours, baseline, alternative="two-sided")
    else:
        result = stats.ttest_rel(ours, baseline, alternative="two-sided")
    return PairedTestResult(test, pairing, n, mean_difference,
                            float(result.statistic), float(result.pvalue))


def pair_user_metrics(ours: pd.DataFrame, baseline: pd.DataFrame, metric: str,
                      pairing: str = "user_mean") -> tuple[np.ndarray, np.ndarray]:
    """Align two models' per-user metrics (frames with seed, user_id, metric) into pairs.

    Only seeds and users present for both models take part.
    """
    if pairing not in PAIRINGS:
        raise ValueError(f"unknown pairing {pairing!r}; choose from {', '.join(PAIRINGS)}")
    keys = ["seed", "user_id"]
    joined = ours[[*keys, metric]].merge(baseline[[*keys, metric]], on=keys, how="inner",
                                         suffixes=("_ours", "_baseline"))
    if pairing == "user_mean":
        joined = joined.groupby("user_id", sort=True)[[f"{metric}_ours", f"{metric}_baseline"]].mean()
    else:
        joined = joined.sort_values(keys)
    return (joined[f"{metric}_ours"].to_numpy(np.float64),
            joined[f"{metric}_baseline"].to_numpy(np.float64))


def compare_per_user(ours: pd.DataFrame, baseline: pd.DataFrame, metric: str,
                     test: str = "wilcoxon", pairing: str = "user_mean") -> PairedTestResult:
    a, b = pair_user_metrics(ours, baseline, metric, pairing)
    return paired_test(a, b, test=test, pairing=pairing)
