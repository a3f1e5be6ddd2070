import numpy as np
import pandas as pd
import pytest

from crane.report.significance import (compare_per_user, pair_user_metrics, paired_test,
                                       significance_mark)


def test_better_on_every_user_is_highly_significant():
    rng = np.random.default_rng(1)
    baseline = rng.uniform(0, 0.2, 50)
    result = paired_test(baseline + rng.uniform(0.01, 0.05, 50), baseline)
    assert result.p_value < 0.01
    assert result.mark == "**"
    assert result.mean_difference > 0
    assert result.n_pairs == 50


def test_identical_metrics_are_not_significant():
    values = np.linspace(0, 1, 30)
    for test in ("wilcoxon", "ttest"):
        result = paired_test(values, values.copy(), test=test)
        assert result.p_value == 1.0
        assert result.mark == ""


def test_ttest_matches_scipy_and_symmetric_noise_is_not_significant():
    from scipy import stats

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=40), rng.normal(size=40)
    result = paired_test(a, b, test="ttest")
    assert result.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert result.p_value > 0.05 and result.mark == ""


def test_marks_thresholds():
    assert significance_mark(0.009) == "**"
    assert significance_mark(0.01) == "*"
    assert significance_mark(0.049) == "*"
    assert significance_mark(0.05) == ""
    assert significance_mark(float("nan")) == ""


def test_pairing_by_user_mean_and_concat():
    ours = pd.DataFrame({"seed": [1, 1, 2, 2, 3], "user_id": [0, 1, 0, 1, 0],
                         "recall@20": [0.2, 0.4, 0.4, 0.6, 9.0]})
    base = pd.DataFrame({"seed": [1, 1, 2, 2], "user_id": [0, 1, 0, 1],
                         "recall@20": [0.1, 0.1, 0.1, 0.1]})
    a, b = pair_user_metrics(ours, base, "recall@20", "user_mean")
    # seed 3 is not run by the baseline: left out; users averaged over seeds 1 and 2.
    np.testing.assert_allclose(a, [0.3, 0.5])
    np.testing.assert_allclose(b, [0.1, 0.1])
    a, b = pair_user_metrics(ours, base, "recall@20", "concat")
    np.testing.assert_allclose(a, [0.2, 0.4, 0.4, 0.6])
    assert compare_per_user(ours, base, "recall@20", pairing="concat").n_pairs == 4


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="unknown significance test"):
        paired_test(np.ones(3), np.ones(3), test="sign")
    frame = pd.DataFrame({"seed": [1], "user_id": [0], "recall@20": [0.1]})
    with pytest.raises(ValueError, match="unknown pairing"):
        pair_user_metrics(frame, frame, "recall@20", "pooled")
